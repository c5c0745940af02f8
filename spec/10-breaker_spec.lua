local cb = require("cbreaker")
local fx = require("helpers.fixtures")

local breaker, fail = fx.breaker, fx.fail

describe("breaker defaults (pybreaker's: 5 failures, 30 s, 2 successes)", function()
  it("opens after 5 consecutive failures", function()
    local br = breaker()
    fail(br, 4)
    assert.equal("closed", br:state())
    fail(br, 1)
    assert.equal("open", br:state())
    local ok, why = br:allow()
    assert.is_false(ok)
    assert.equal("open", why)
  end)

  it("a success while closed resets the consecutive count", function()
    local br = breaker()
    fail(br, 4)
    br:success()
    fail(br, 4)
    assert.equal("closed", br:state())
    assert.equal(4, br:stats().consecutive_failures)
  end)

  it("is half-open 30 s after opening, and 2 successes close it", function()
    local br, clock = breaker()
    fail(br, 5)
    clock:advance(29.999)
    assert.equal("open", br:state())
    assert.is_false((br:allow()))
    clock:advance(0.001)
    assert.equal("half-open", br:state())
    assert.is_true((br:allow()))
    br:success()
    assert.equal("half-open", br:state())
    assert.is_true((br:allow()))
    br:success()
    assert.equal("closed", br:state())
  end)

  it("a failure while half-open re-opens at once", function()
    local br, clock = breaker()
    fail(br, 5)
    clock:advance(30)
    assert.is_true((br:allow()))
    br:failure()
    assert.equal("open", br:state())
    assert.near(30, br:retry_after(), 1e-9)
  end)

  it("reports its options", function()
    local o = cb.new():options()
    assert.equal(5, o.failure_threshold)
    assert.equal(30, o.reset_timeout)
    assert.equal(2, o.success_threshold)
    assert.equal(1, o.half_open_max_calls)
  end)
end)

describe("half-open probe permits", function()
  it("hands out half_open_max_calls permits at once", function()
    local br, clock = breaker{ half_open_max_calls = 2, success_threshold = 3 }
    fail(br, 5)
    clock:advance(30)
    assert.is_true((br:allow()))
    assert.is_true((br:allow()))
    local ok, why = br:allow()
    assert.is_false(ok)
    assert.equal("half-open", why)
    br:success()               -- a permit comes back
    assert.is_true((br:allow()))
  end)

  it("a permit never reported lapses instead of wedging the breaker", function()
    local br, clock = breaker{ probe_timeout = 5 }
    fail(br, 5)
    clock:advance(30)
    assert.is_true((br:allow()))  -- the probe is lost: never reported
    assert.is_false((br:allow()))
    assert.near(5, br:retry_after(), 1e-9)
    clock:advance(5)
    assert.equal(0, br:retry_after())
    assert.is_true((br:allow()))
    br:success(); assert.is_true((br:allow())); br:success()
    assert.equal("closed", br:state())
  end)

  it("an ignored outcome gives the permit back", function()
    local br, clock = breaker()
    fail(br, 5)
    clock:advance(30)
    assert.is_true((br:allow()))
    br:record("ignore")
    assert.is_true((br:allow()))
  end)
end)

describe("failure-rate trip", function()
  it("trips over a count window once min_calls are in it", function()
    local br = breaker{ failure_threshold = 0, failure_rate = 0.5, window = 10, min_calls = 4 }
    br:failure(); br:failure(); br:failure()
    assert.equal("closed", br:state())   -- 3 < min_calls
    br:success()
    assert.equal("open", br:state())     -- 3/4 >= 0.5
    assert.equal("failure_rate", (function()
      local reason
      local b2 = breaker{ failure_threshold = 0, failure_rate = 0.5, window = 4, min_calls = 4,
        on_change = function(_, _, _, r) reason = r end }
      b2:success(); b2:success(); b2:failure(); b2:failure()
      return reason
    end)())
  end)

  it("trips when the rate reaches the threshold exactly", function()
    local br = breaker{ failure_threshold = 0, failure_rate = 0.5, window = 4, min_calls = 4 }
    br:success(); br:failure(); br:success(); br:failure()
    assert.equal("open", br:state())
  end)

  it("old outcomes leave a count window", function()
    local br = breaker{ failure_threshold = 0, failure_rate = 0.5, window = 4, min_calls = 4 }
    br:failure(); br:success(); br:success(); br:success()  -- 1/4
    br:failure()                                            -- window: s s s f
    assert.equal("closed", br:state())
    assert.equal(4, br:stats().window_calls)
    assert.equal(1, br:stats().window_failures)
  end)

  it("trips over a time window, and forgets what is older", function()
    local br, clock = breaker{ failure_threshold = 0, failure_rate = 0.5,
                               window_seconds = 10, min_calls = 4 }
    br:failure(); br:failure(); br:failure()
    clock:advance(11)                     -- those three fall out
    br:success(); br:success(); br:success(); br:failure()
    assert.equal("closed", br:state())
    assert.equal(4, br:stats().window_calls)
    br:failure()                          -- 2/5 -> still closed
    assert.equal("closed", br:state())
    br:failure()                          -- 3/6 = 0.5 -> open
    assert.equal("open", br:state())
  end)

  it("counts a time window's buckets across partial expiry", function()
    local br, clock = breaker{ failure_threshold = 0, failure_rate = 0.9,
                               window_seconds = 4, min_calls = 100 }
    for _ = 1, 4 do br:success(); clock:advance(1) end
    assert.equal(3, br:stats().window_calls)   -- the first second has left
    clock:advance(2)
    assert.equal(1, br:stats().window_calls)
  end)
end)

describe("slow-call rate", function()
  it("trips on latency given to success(ms)", function()
    local br = breaker{ failure_threshold = 0, slow_call_ms = 100, slow_call_rate = 0.5,
                        window = 4, min_calls = 4 }
    br:success(10); br:success(150); br:success(20)
    assert.equal("closed", br:state())
    br:success(100)
    assert.equal("open", br:state())
    assert.equal(2, br:stats().slow_calls)
  end)

  it("measures call() latency on the breaker's clock", function()
    local br, clock = breaker{ failure_threshold = 0, slow_call_ms = 100, slow_call_rate = 1,
                               window = 2, min_calls = 2 }
    local function slow() clock:advance(0.2) return "done" end
    assert.same({ true, "done" }, { br:call(slow) })
    assert.same({ true, "done" }, { br:call(slow) })
    assert.equal("open", br:state())
  end)

  it("a slow probe does not close a half-open breaker", function()
    local br, clock = breaker{ slow_call_ms = 100 }
    fail(br, 5)
    clock:advance(30)
    assert.is_true((br:allow()))
    br:success(500)
    assert.equal("open", br:state())
  end)
end)

describe("open timeout back-off and jitter", function()
  it("multiplies the timeout on each re-open, up to the cap", function()
    local br, clock = breaker{ backoff_factor = 2, max_reset_timeout = 100 }
    fail(br, 5)
    local expect = { 30, 60, 100, 100 }
    for i, t in ipairs(expect) do
      assert.near(t, br:retry_after(), 1e-9, "opening " .. i)
      clock:advance(t)
      assert.is_true((br:allow()))
      br:failure()
    end
  end)

  it("closing resets the back-off", function()
    local br, clock = breaker{ backoff_factor = 2 }
    fail(br, 5); clock:advance(30); br:allow(); br:failure()
    assert.near(60, br:retry_after(), 1e-9)
    clock:advance(60)
    br:allow(); br:success(); br:allow(); br:success()
    assert.equal("closed", br:state())
    fail(br, 5)
    assert.near(30, br:retry_after(), 1e-9)
  end)

  it("jitters the timeout downwards, reproducibly for a seed", function()
    local function timeouts(seed)
      local br, clock = breaker{ jitter = 0.5, seed = seed }
      local out = {}
      fail(br, 5)
      for i = 1, 5 do
        local t = br:retry_after()
        assert.is_true(t <= 30 and t >= 15, "timeout " .. t)
        out[i] = t
        clock:advance(t); br:allow(); br:failure()
      end
      return out
    end
    local a, b = timeouts(7), timeouts(7)
    assert.same(a, b)
    assert.are_not.same(a, timeouts(8))
    local distinct = {}
    for _, t in ipairs(a) do distinct[t] = true end
    assert.is_true(next(distinct, next(distinct)) ~= nil, "jitter varies")
  end)
end)

describe("classify and retry_after", function()
  it("classifies results as success, failure or ignore", function()
    local br = breaker{ failure_threshold = 2, classify = function(ok, status)
      if not ok then return "failure" end
      if status == 404 then return "ignore" end
      if status >= 500 then return "failure" end
      return "success"
    end }
    br:call(function() return 404 end)
    br:call(function() return 503 end)
    assert.equal(1, br:stats().ignored)
    assert.equal("closed", br:state())
    local ok, v = br:call(function() return 500 end)
    assert.is_true(ok)      -- fn did not raise: its result is returned as is
    assert.equal(500, v)
    assert.equal("open", br:state())
  end)

  it("a retry_after keeps the breaker open at least that long", function()
    local br, clock = breaker{ classify = function(ok, status, ra)
      if status == 429 then return "failure", ra end
      return ok and "success" or "failure"
    end }
    br:call(function() return 429, 120 end)
    assert.equal("open", br:state())
    assert.near(120, br:retry_after(), 1e-9)
    clock:advance(119)
    assert.is_false((br:allow()))
    clock:advance(1)
    assert.is_true((br:allow()))
  end)

  it("never moves an open deadline earlier", function()
    local br, clock = breaker()
    fail(br, 5)                              -- open until +30
    br:record("failure", nil, 10)            -- a late 429 asking for 10 s
    assert.near(30, br:retry_after(), 1e-9)
    br:record("failure", nil, 90)
    assert.near(90, br:retry_after(), 1e-9)
    clock:advance(90)
    br:allow(); br:record("failure", nil, 5)  -- re-open: back-off 30 beats 5
    assert.near(30, br:retry_after(), 1e-9)
  end)

  it("a classifier that raises records a failure and raises", function()
    local br = breaker{ failure_threshold = 1, classify = function() error("bad classifier") end }
    assert.has_error(function() br:call(function() return 1 end) end)
    assert.equal("open", br:state())
  end)

  it("a classifier answer that is not an outcome is an error", function()
    local br = breaker{ classify = function() return "maybe" end }
    local ok, err = pcall(br.call, br, function() end)
    assert.is_false(ok)
    assert.matches("classify must return", err)
  end)
end)

describe("call", function()
  it("is pcall-shaped and records errors as failures", function()
    local br = breaker{ failure_threshold = 1 }
    assert.same({ true, 1, nil, 3 }, { br:call(function(a, b, c) return a, b, c end, 1, nil, 3) })
    local ok, err = br:call(function() error({ code = 7 }) end)
    assert.is_false(ok)
    assert.same({ code = 7 }, err)
    assert.is_false(cb.is_rejection(err))
    assert.equal("open", br:state())
  end)

  it("rejections carry the name, state and seconds until retry", function()
    local br, clock = breaker{ failure_threshold = 1 }
    br:call(error)
    clock:advance(10)
    local ok, rej = br:call(function() error("must not run") end)
    assert.is_false(ok)
    assert.is_true(cb.is_rejection(rej))
    assert.equal("svc", rej.name)
    assert.equal("open", rej.state)
    assert.near(20, rej.retry_after, 1e-9)
    assert.matches("circuit 'svc' is open", tostring(rej))
    assert.is_false(cb.is_rejection("circuit 'svc' is open"))
    assert.is_false(cb.is_rejection({ name = "svc" }))
    assert.equal("open", rej.reason)
  end)

  it("a refused call allocates nothing: the same rejection while the refusal is the same", function()
    local br, clock = breaker{ failure_threshold = 1, reset_timeout = 30 }
    br:failure()
    local _, a = br:call(error)
    clock:advance(10)
    local _, b = br:call(error)
    assert.is_true(rawequal(a, b))
    -- read later, it counts down to the end of its own refusal
    assert.near(20, a.retry_after, 1e-9)
    assert.equal("circuit 'svc' is open (retry in 20.000s)", tostring(a))
    assert.equal(tostring(a), a.message)
    collectgarbage("collect")
    local before = collectgarbage("count")
    for _ = 1, 1000 do br:call(error) end
    assert.is_true(collectgarbage("count") - before < 1, "refusals allocated")
    clock:advance(25)  -- past its end: half-open now, the old one says 0
    assert.equal(0, a.retry_after)
    assert.equal("open", a.state)
  end)

  it("a kept rejection shows its own refusal, never a later state or another breaker", function()
    local br, clock = breaker{ failure_threshold = 1, reset_timeout = 30, half_open_max_calls = 1 }
    local other = breaker{ name = "other", failure_threshold = 1 }
    other:failure()
    br:failure()
    local _, open = br:call(error)
    local _, theirs = other:call(error)
    assert.is_false(rawequal(open, theirs))
    assert.equal("other", theirs.name)
    -- a late outcome's retry_after moves the deadline: a new rejection
    br:record("ignore", nil, 100)
    local _, later = br:call(error)
    assert.is_false(rawequal(open, later))
    assert.near(100, later.retry_after, 1e-9)
    assert.near(30, open.retry_after, 1e-9)
    br:force_open()
    local _, forced = br:call(error)
    assert.equal("forced-open", forced.state)
    assert.equal(math.huge, forced.retry_after)
    assert.equal("circuit 'svc' is forced-open", tostring(forced))
    assert.equal("open", open.state)
    assert.equal("open", open.reason)
    br:reset()
    fail(br, 1)
    clock:advance(100)
    assert.is_true(br:allow())  -- half-open, its one permit out
    local _, half = br:call(error)
    assert.equal("half-open", half.state)
    assert.equal("half-open", half.reason)
    assert.equal("svc", half.name)
    assert.equal("forced-open", forced.state)
    assert.is_true(cb.is_rejection(half) and cb.is_rejection(open))
    assert.has_error(function() open.state = "closed" end)
    assert.is_nil(open.nope)
    assert.is_nil(open[1])
  end)

  it("a rejection outlives its breaker and its clock's other holders", function()
    local clock = cb.manual_clock(0)
    local reg = cb.registry{ clock = clock, defaults = { failure_threshold = 1, reset_timeout = 5 } }
    local br = reg:get("t", "k")
    br:failure()
    local _, rej = br:call(error)
    clock:advance(2)
    reg:remove("t", "k")
    reg:close()
    br, reg, clock = nil, nil, nil  -- the rejection alone keeps the clock it reads
    collectgarbage("collect")
    collectgarbage("collect")
    assert.near(3, rej.retry_after, 1e-9)
    assert.equal("circuit 'k' is open (retry in 3.000s)", tostring(rej))
  end)

  it("one rejection type: cb.rejection builds what the engine refuses with", function()
    local rej = cb.rejection{ reason = "all providers open", retry_after = 1.5, tenant = "t" }
    assert.is_true(cb.is_rejection(rej))
    assert.equal("all providers open (retry in 1.500s)", tostring(rej))
    assert.equal("t", rej.tenant)
    assert.equal("registry full", tostring(cb.rejection{ reason = "registry full", retry_after = math.huge }))
    assert.has_error(function() cb.rejection{ retry_after = 1 } end,
      "rejection: field 'reason' must be a string (got nil)")
    assert.has_error(function() cb.rejection{ reason = "x", retry_after = -1 } end)
  end)
end)

describe("classify, the classifier contract", function()
  it("answers an outcome and a retry-after, or false and what went wrong", function()
    assert.same({ "success" }, { cb.classify(nil, true) })
    assert.same({ "failure" }, { cb.classify(nil, false, "boom") })
    assert.same({ "ignore", 3 }, { cb.classify(function(ok, e) return "ignore", 3 end, false, "x") })
    assert.same({ false, 'classify must return "success", "failure" or "ignore" (got maybe)' },
      { cb.classify(function() return "maybe" end, true) })
    assert.same({ false, "classify: retry_after must be a number of seconds >= 0" },
      { cb.classify(function() return "failure", -1 end, true) })
    local ok, msg = cb.classify(function() error("oops", 0) end, true)
    assert.is_false(ok)
    assert.equal("classify failed: oops", msg)
  end)

  it("lets the classifier yield", function()
    local co = coroutine.wrap(function()
      return cb.classify(function(ok) coroutine.yield("paused"); return ok and "success" or "failure" end, true)
    end)
    assert.equal("paused", co())
    assert.equal("success", co())
  end)
end)

describe("operator controls", function()
  it("force_open rejects until reset; reset clears everything", function()
    local br = breaker()
    br:force_open()
    assert.equal("forced-open", br:state())
    local ok, why = br:allow()
    assert.is_false(ok); assert.equal("forced-open", why)
    assert.equal(math.huge, br:retry_after())
    br:reset()
    assert.equal("closed", br:state())
    assert.is_true((br:allow()))
  end)

  it("disable allows everything and records nothing", function()
    local br = breaker()
    br:disable()
    fail(br, 50)
    assert.equal("disabled", br:state())
    br:reset()
    fail(br, 4)
    assert.equal("closed", br:state())
  end)

  it("reset on a closed breaker forgets the failures so far", function()
    local br = breaker()
    fail(br, 4); br:reset(); fail(br, 4)
    assert.equal("closed", br:state())
  end)
end)

describe("on_change", function()
  it("reports every transition with its reason", function()
    local seen = {}
    local br, clock = breaker{ on_change = function(name, from, to, why)
      seen[#seen + 1] = table.concat({ name, from, to, why }, " ")
    end }
    fail(br, 5); clock:advance(30); br:allow(); br:success(); br:allow(); br:success()
    br:force_open(); br:reset(); br:disable()
    assert.same({
      "svc closed open failures", "svc open half-open timeout",
      "svc half-open closed probe_success", "svc closed forced-open force_open",
      "svc forced-open closed reset", "svc closed disabled disable",
    }, seen)
  end)

  it("an error in a callback is raised after the breaker is consistent", function()
    local br = breaker{ failure_threshold = 1 }
    br:on_change(function() error("callback broke") end)
    local ok, err = pcall(br.failure, br)
    assert.is_false(ok)
    assert.matches("callback broke", err)
    assert.equal("open", br:state())
    assert.is_false((br:allow()))
    br:on_change(nil)
    br:reset()
    assert.equal("closed", br:state())
  end)

  it("a callback that raises inside allow gives the permit it took back", function()
    local br, clock = breaker{ failure_threshold = 1, reset_timeout = 1, half_open_max_calls = 1 }
    br:failure()
    br:on_change(function(_, _, to) error("callback saw " .. to, 0) end)
    clock:advance(1)
    assert.has_error(function() br:allow() end, "on_change callback failed: callback saw half-open")
    assert.equal("half-open", br:state())
    assert.equal(0, br:stats().permits_out)  -- the caller saw an error: it owes no record
    br:on_change(nil)
    assert.is_true((br:allow()))  -- the one probe is not lost
  end)

  it("a callback may drive the breaker it reports on", function()
    local br = breaker{ failure_threshold = 1 }
    br:on_change(function(_, _, to) if to == "open" then br:reset() end end)
    br:failure()
    assert.equal("closed", br:state())
  end)
end)

describe("configure (hot reload)", function()
  it("changes thresholds and keeps state", function()
    local br = breaker()
    fail(br, 3)
    br:configure{ failure_threshold = 4 }
    assert.equal(3, br:stats().consecutive_failures)
    fail(br, 1)
    assert.equal("open", br:state())
    assert.has_error(function() br:configure{ failure_treshold = 1 } end,
      "configure: unknown option 'failure_treshold' (did you mean 'failure_threshold'?)")
    assert.has_error(function() br:configure{ name = "other" } end)
  end)
end)

describe("stats", function()
  it("counts calls, outcomes and rejections", function()
    local br = breaker{ failure_threshold = 2 }
    br:success(); br:failure(); br:failure(); br:allow(); br:allow()
    local st = br:stats()
    assert.equal(3, st.calls)
    assert.equal(1, st.successes)
    assert.equal(2, st.failures)
    assert.equal(2, st.rejections)
    assert.equal(1, st.opens)
    assert.equal("open", st.state)
    assert.equal("svc", st.name)
  end)
end)

describe("manual clock", function()
  it("moves only forward", function()
    local c = cb.manual_clock(5)
    assert.equal(5, c:now())
    assert.equal(7.5, c:advance(2.5))
    assert.has_error(function() c:advance(-1) end)
    assert.has_error(function() c:advance(0 / 0) end)
    assert.has_error(function() cb.manual_clock(math.huge) end)
  end)

  it("never reaches infinity by steps (a registry's idleness would be NaN)", function()
    local c = cb.manual_clock(0)
    c:advance(1.7e308)
    assert.has_error(function() c:advance(1.7e308) end,
      "bad argument #1 to 'advance' (the clock would pass the largest finite time)")
    assert.equal(1.7e308, c:now())
  end)

  it("the default clock is monotonic with sub-millisecond steps", function()
    local a = cb.now()
    local b = cb.now()
    assert.is_true(b >= a)
    local t = cb.now()
    repeat b = cb.now() until b ~= t
    assert.is_true(b - t < 0.001)
  end)
end)
