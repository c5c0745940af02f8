-- engine:call under an unlucky user: a session removed while fn runs, a
-- provider hook that raises, a session id too long, fn yielding in a
-- coroutine scheduler.
local cb = require("cbreaker")
local fx = require("helpers.fixtures")

local function engine(extra)
  local clock = cb.manual_clock(0)
  local p = fx.with({clock = clock, providers = {a = {}, b = {}}, selection = {seed = 3}}, extra)
  return cb.engine(p), clock
end

local function ok_fn(provider, x) return provider, x end

--- The session breaker of (t, s), or nil, without creating it.
local function session(e, t, s)
  return e.sessions:peek(t, s)
end

--- Every provider's breaker has no permit out.
local function no_permits(e)
  for _, name in ipairs(e:stats().names) do
    assert.equal(0, e:breaker(name):stats().permits_out, name)
  end
end

describe("engine:call", function()
  describe("keeps fn's reply", function()
    it("when fn removes its session's breaker", function()
      local e = engine()
      local ok, p, x = e:call("t", "s", function(provider)
        e.sessions:remove("t", "s")
        return provider, 42
      end)
      assert.is_true(ok)
      assert.is_string(p)
      assert.equal(42, x)
      assert.equal(1, e:stats().requests.ok)
      no_permits(e)
      assert.is_true((e:call("t", "s", ok_fn)))  -- a fresh session breaker
    end)

    it("when fn's error comes back after its session was removed", function()
      local e = engine()
      local ok, err = e:call("t", "s", function()
        e.sessions:remove("t", "s")
        error("boom", 0)
      end)
      assert.is_false(ok)
      assert.equal("boom", err)
      no_permits(e)
    end)

    it("when the registry evicts the session while fn yields", function()
      local e = engine({sessions = {max_entries = 2}})
      local co = coroutine.wrap(function()
        return e:call("t", "victim", function(provider)
          coroutine.yield()
          return provider, "reply"
        end)
      end)
      co()  -- fn is suspended, its session breaker holds a permit
      for k = 1, 4 do  -- other sessions push the victim out of a 2-entry registry
        assert.is_true((e:call("t", "other" .. k, ok_fn)))
      end
      assert.is_nil(session(e, "t", "victim"))
      local ok, _, reply = co()
      assert.is_true(ok)
      assert.equal("reply", reply)
      no_permits(e)
    end)

    it("when fn closes the engine", function()
      local e = engine()
      local ok, x = e:call("t", "s", function() e:close(); return "late" end)
      assert.is_true(ok)
      assert.equal("late", x)
    end)
  end)

  describe("a provider hook that raises", function()
    --- Provider a opens at its first failure; its hook raises on a move
    -- to `when` (default "open").
    local function hooked(session_opts, when)
      return engine({
        providers = {a = {failure_threshold = 1, reset_timeout = 5, on_change = function(_, _, to)
          if to == (when or "open") then error("hook saw " .. to, 0) end
        end}},
        sessions = {defaults = session_opts or {}},
      })
    end

    it("is raised after the provider and the session recorded the call", function()
      local e = hooked()
      local ok, err = pcall(e.call, e, "t", "s", function() error("503", 0) end)
      assert.is_false(ok)
      assert.equal("on_change callback failed: hook saw open", err)
      assert.equal("open", e:breaker("a"):state())
      local sbr = session(e, "t", "s")
      assert.equal(1, sbr:stats().failures)
      assert.equal(0, sbr:stats().permits_out)
      no_permits(e)
    end)

    it("does not leak a half-open session's probe permit", function()
      local e, clock = engine({
        providers = {a = {failure_threshold = 2, reset_timeout = 5, on_change = function(_, _, to)
          if to == "open" then error("hook saw " .. to, 0) end
        end}},
        sessions = {defaults = {failure_threshold = 1, reset_timeout = 1, half_open_max_calls = 1}},
      })
      local fail = function() error("503", 0) end
      assert.is_false((e:call("t", "s", fail)))  -- the session opens; a has one failure
      clock:advance(1)
      local sbr = session(e, "t", "s")
      assert.equal("half-open", sbr:state())
      -- The session's one probe: a fails again and opens, its hook raises.
      assert.has_error(function() e:call("t", "s", fail) end, "on_change callback failed: hook saw open")
      assert.equal(0, sbr:stats().permits_out)  -- the probe was recorded
      clock:advance(5)  -- a half-open, the session half-open again
      local ok = e:call("t", "s", ok_fn)
      assert.is_true(ok)  -- not "session open" for ever
    end)

    it("with an error value whose __tostring raises: still raised once everything is recorded", function()
      local bad = setmetatable({}, {__tostring = function() error("tostring too", 0) end})
      local e = engine({
        providers = {a = {failure_threshold = 1, reset_timeout = 5, on_change = function(_, _, to)
          if to == "open" then error(bad) end
        end}},
      })
      local ok, err = pcall(e.call, e, "t", "s", function() error("503", 0) end)
      assert.is_false(ok)
      assert.equal("on_change callback failed: (a table whose __tostring failed)", err)
      assert.equal("open", e:breaker("a"):state())
      assert.equal(0, session(e, "t", "s"):stats().permits_out)
      no_permits(e)
      assert.has_no_error(function() e:call("t", "s2", ok_fn) end)
    end)

    it("when it runs while choosing (open to half-open) still lets fn's call be recorded", function()
      local e, clock = hooked(nil, "half-open")
      assert.is_false((e:call("t", "s", function() error("503", 0) end)))
      clock:advance(5)
      local ran = false
      local ok, err = pcall(e.call, e, "t", "s", function() ran = true; return "x" end)
      assert.is_false(ok)
      assert.equal("on_change callback failed: hook saw half-open", err)
      assert.is_true(ran)
      assert.equal(1, e:breaker("a"):stats().successes)
      assert.equal(0, session(e, "t", "s"):stats().permits_out)
      no_permits(e)
      assert.has_no_error(function() e:call("t", "s2", ok_fn) end)  -- the error was raised once
    end)
  end)

  describe("an id over 1,024 bytes", function()
    it("is refused with a rejection, not raised", function()
      local e = engine()
      local long = ("x"):rep(1025)
      for _, args in ipairs({{"t", long}, {long, "s"}}) do
        local ok, err = e:call(args[1], args[2], ok_fn)
        assert.is_false(ok)
        assert.is_true(cb.is_rejection(err))
        assert.equal("key too long", err.reason)
        assert.equal(math.huge, err.retry_after)
      end
      assert.equal(2, e:stats().requests.key_too_long)
      assert.is_true((e:call("t", ("x"):rep(1024), ok_fn)))  -- the limit itself is fine
      assert.same({nil, "key too long", math.huge}, {e:pick("t", long)})  -- pick does not raise either
    end)
  end)

  describe("a non-callable fn", function()
    it("raises and leaves no permit out, nor a failure", function()
      local e = engine()
      assert.has_error(function() e:call("t", "s", 42) end,
        "bad argument #3 to 'call' (function expected, got number)")
      assert.has_error(function() e:call("t", "s", {}) end,
        "bad argument #3 to 'call' (function expected, got table)")
      for _, name in ipairs({"a", "b"}) do
        assert.equal(0, e:breaker(name):stats().failures)
      end
      local sbr = session(e, "t", "s")
      if sbr then assert.equal(0, sbr:stats().failures) end
      no_permits(e)
      local callable = setmetatable({}, {__call = function(_, p) return p end})
      assert.is_true((e:call("t", "s", callable)))
    end)
  end)

  describe("with fn yielding", function()
    --- A tiny scheduler: runs each task in its own coroutine, resuming them
    -- in turn until all are done.  Returns their results, in order.
    local function run(tasks)
      local cos, results, live = {}, {}, #tasks
      for k, task in ipairs(tasks) do cos[k] = coroutine.create(task) end
      while live > 0 do
        for k, co in ipairs(cos) do
          if coroutine.status(co) == "suspended" then
            local res = table.pack(coroutine.resume(co))
            assert(res[1], res[2])
            if coroutine.status(co) == "dead" then
              results[k] = table.pack(table.unpack(res, 2, res.n))
              live = live - 1
            end
          end
        end
      end
      return results
    end

    it("interleaves calls on one engine and shared sessions", function()
      local e = engine({max_attempts = 2, defaults = {failure_threshold = 0}})
      local tasks = {}
      for k = 1, 12 do
        tasks[k] = function()
          local out = {}
          for r = 1, 5 do
            out[r] = table.pack(e:call("t", "s" .. (k % 3), function(provider, n)
              coroutine.yield()
              if (n + r) % 4 == 0 then error("flaky " .. provider, 0) end
              coroutine.yield()
              return provider, n * 10 + r
            end, k))
          end
          return out
        end
      end
      local results = run(tasks)
      local ok, err = 0, 0
      for k = 1, 12 do
        for r = 1, 5 do
          local res = results[k][1][r]
          if res[1] then
            ok = ok + 1
            assert.equal(k * 10 + r, res[3])
          else
            err = err + 1
          end
        end
      end
      local st = e:stats()
      assert.equal(60, ok + err)
      assert.equal(ok, st.requests.ok)
      assert.equal(err, st.requests.error)
      no_permits(e)
      for k = 0, 2 do assert.equal(0, session(e, "t", "s" .. k):stats().permits_out) end
    end)

    it("lets classifiers yield too", function()
      local e = engine({
        defaults = {classify = function(ok) coroutine.yield(); return ok and "success" or "failure" end},
        sessions = {defaults = {classify = function(ok) coroutine.yield(); return ok and "success" or "ignore" end}},
      })
      local results = run({
        function() return e:call("t", "s", function(p) coroutine.yield(); return p end) end,
        function() return e:call("t", "s", function() coroutine.yield(); error("x", 0) end) end,
      })
      assert.is_true(results[1][1])
      assert.is_false(results[2][1])
      assert.equal("x", results[2][2])
      assert.equal(1, session(e, "t", "s"):stats().successes)
      assert.equal(1, session(e, "t", "s"):stats().ignored)
      no_permits(e)
    end)

    it("lets a provider's on_change hook yield, and raise after yielding", function()
      local seen = {}
      local e = engine({
        providers = {a = {failure_threshold = 1, reset_timeout = 5, on_change = function(name, _, to)
          coroutine.yield()
          seen[#seen + 1] = name .. ">" .. to
          if to == "open" then error("hook saw open", 0) end
        end}},
      })
      local results = run({
        function() return pcall(e.call, e, "t", "s1", function() coroutine.yield(); error("503", 0) end) end,
        function() return e:call("t", "s2", function(p) coroutine.yield(); return p end) end,
      })
      -- The first call's failure opened a: its hook yielded, then raised;
      -- the call raised it after recording.  The second ran alongside.
      assert.is_false(results[1][1])
      assert.equal("on_change callback failed: hook saw open", results[1][2])
      assert.same({"a>open"}, seen)
      assert.equal(0, session(e, "t", "s1"):stats().permits_out)
      assert.equal(1, session(e, "t", "s1"):stats().failures)
      no_permits(e)
    end)

    it("a call suspended in a hook, or closed there, keeps no other call's hook error", function()
      -- b's hook yields inside a call's fallback acquire (b open -> half-open);
      -- meanwhile, and after that coroutine is closed, an operator's direct
      -- reset of a raises a's hook error itself, as a breaker does.
      local e, clock = engine({
        providers = {
          a = {failure_threshold = 1, reset_timeout = 5, on_change = function(_, _, to)
            if to == "closed" then error("a hook", 0) end
          end},
          b = {failure_threshold = 1, reset_timeout = 5, on_change = function(_, _, to)
            if to == "half-open" then coroutine.yield("in hook") end
          end},
        },
        max_attempts = 2,
      })
      e:breaker("b"):failure()  -- b open
      e:breaker("a"):failure()  -- a open
      clock:advance(6)
      local co = coroutine.create(function()
        return e:call("t", "s", function() return "x" end)
      end)
      local ok, what = coroutine.resume(co)
      assert.is_true(ok)
      assert.equal("in hook", what)  -- suspended inside the pool, b's hook running
      assert.has_error(function() e:breaker("a"):reset() end, "on_change callback failed: a hook")
      coroutine.close(co)
      e:breaker("a"):failure()
      assert.has_error(function() e:breaker("a"):reset() end, "on_change callback failed: a hook")
      assert.has_no_error(function() e:call("t", "s2", function() return "y" end) end)
    end)
  end)
end)

-- Without sessions (and with one attempt, no classifier, no provider hook)
-- engine:call is one C function (pool:caller): the same answers, the same
-- safety.
describe("engine:call in C (no sessions)", function()
  local function fast_engine(extra)
    return engine(fx.with({sessions = false}, extra))
  end

  it("is taken, and answers as pcall does, counted in stats", function()
    local e = fast_engine()
    assert.is_true(e.fast)
    assert.equal("cfunction", debug.getinfo(e.call, "S").what == "C" and "cfunction" or "lua")
    local ok, p, x = e:call("t", "s", ok_fn, 7)
    assert.is_true(ok)
    assert.is_truthy(p == "a" or p == "b")
    assert.equal(7, x)
    local ok2, err = e:call("t", "s", function() error("503", 0) end)
    assert.is_false(ok2)
    assert.equal("503", err)
    local r = e:stats().requests
    assert.equal(1, r.ok)
    assert.equal(1, r.error)
    no_permits(e)
  end)

  it("refuses a bad self, tenant or session as the Lua call does", function()
    local e, other = fast_engine(), fast_engine()
    -- said at the caller's line, as the Lua call says it
    local err = select(2, pcall(e.call, {}, "t", "s", ok_fn))
    assert.matches("engine:call: self must be a cbreaker.Engine (got table)", err, 1, true)
    err = select(2, pcall(function() e.call(nil, "t", "s", ok_fn) end))
    assert.matches("53%-engine_safety_spec%.lua:%d+: engine:call: self must be a cbreaker%.Engine %(got nil%)", err)
    assert.is_true((e.call(other, "t", "s", ok_fn)))  -- another engine: its own call
    err = select(2, pcall(function() e:call(nil, "s", ok_fn) end))
    assert.matches("53%-engine_safety_spec%.lua:%d+: tenant must be a string %(got nil%)", err)
    err = select(2, pcall(function() e:call("t", nil, ok_fn) end))
    assert.matches("53%-engine_safety_spec%.lua:%d+: session must be a string %(got nil%)", err)
    no_permits(e)
    local kept = e.call
    e:close()
    err = select(2, pcall(function() kept(e, "t", "s", ok_fn) end))
    assert.matches("53%-engine_safety_spec%.lua:%d+: engine:call: the engine is closed", err)
  end)

  it("raises a non-callable fn, missing or not, and leaves no permit out, nor a failure", function()
    local e = fast_engine()
    assert.has_error(function() e:call("t", "s") end,
      "bad argument #3 to 'call' (function expected, got nil)")
    assert.has_error(function() e:call("t", "s", 42) end,
      "bad argument #3 to 'call' (function expected, got number)")
    for _, name in ipairs({"a", "b"}) do assert.equal(0, e:breaker(name):stats().failures) end
    no_permits(e)
  end)

  it("answers 'all providers open' or bypasses, as the policy says", function()
    local e = fast_engine({defaults = {failure_threshold = 1, reset_timeout = 10}})
    for _ = 1, 2 do e:call("t", "s", function() error("503", 0) end) end  -- a and b open
    local ok, rej = e:call("t", "s", ok_fn)
    assert.is_false(ok)
    assert.is_true(cb.is_rejection(rej))
    assert.equal("all providers open", rej.reason)
    assert.equal(1, e:stats().requests.all_open)
    local b = fast_engine({defaults = {failure_threshold = 1, reset_timeout = 10}, on_all_open = "bypass"})
    for _ = 1, 2 do b:call("t", "s", function() error("503", 0) end) end
    local ok2, p = b:call("t", "s", ok_fn)
    assert.is_true(ok2)
    assert.is_truthy(p == "a" or p == "b")
  end)

  it("lets fn and the choosing's callbacks yield, and resumes them", function()
    local e, clock = fast_engine({providers = {a = {failure_threshold = 1, reset_timeout = 1,
      success_threshold = 1}}})
    local seen = {}
    e:breaker("a"):on_change(function(_, _, to) seen[#seen + 1] = to; coroutine.yield("cb") end)
    local co = coroutine.wrap(function() return e:call("t", "s", function() error("503", 0) end) end)
    assert.equal("cb", co())  -- closed -> open, in record
    local ok = co()
    assert.is_false(ok)
    clock:advance(1)
    co = coroutine.wrap(function()
      return e:call("t", "s", function(p) coroutine.yield("fn"); return p end)
    end)
    assert.equal("cb", co())  -- open -> half-open, in acquire
    assert.equal("fn", co())
    assert.equal("cb", co())  -- half-open -> closed, in record
    local ok2, p = co()
    assert.is_true(ok2)
    assert.equal("a", p)
    assert.same({"open", "half-open", "closed"}, seen)
    no_permits(e)
  end)

  it("gives the permit back when a callback run by choosing raises", function()
    local e, clock = fast_engine({providers = {a = {failure_threshold = 1, reset_timeout = 1,
      half_open_max_calls = 1}}})
    e:call("t", "s", function() error("503", 0) end)  -- a opens
    e:breaker("a"):on_change(function(_, _, to)
      if to == "half-open" then error("cb saw " .. to, 0) end
    end)
    clock:advance(1)
    local ran = false
    assert.has_error(function() e:call("t", "s", function() ran = true end) end,
      "on_change callback failed: cb saw half-open")
    assert.is_false(ran)
    no_permits(e)  -- the one probe is not lost
    assert.is_true((e:call("t", "s", ok_fn)))
  end)

  it("keeps fn's reply when fn closes the engine", function()
    local e = fast_engine()
    local ok, x = e:call("t", "s", function() e:close(); return "late" end)
    assert.is_true(ok)
    assert.equal("late", x)
    assert.is_false(e.fast)
    assert.has_error(function() e:call("t", "s", ok_fn) end)
  end)

  it("follows a reload that makes calls general, and back", function()
    local e = fast_engine()
    local base = {clock = e.policy.clock, providers = {a = {}, b = {}}, selection = {seed = 3},
      sessions = false}
    e:reload(fx.with(base, {max_attempts = 2}))
    assert.is_false(e.fast)
    assert.equal("Lua", debug.getinfo(e.call, "S").what)  -- Engine.call itself: no C level more
    local tries = 0
    local ok = e:call("t", "s", function() tries = tries + 1; if tries == 1 then error("x", 0) end return "y" end)
    assert.is_true(ok)
    assert.equal(2, tries)  -- a fallback: the Lua call ran it
    e:reload(base)
    assert.is_true(e.fast)
    assert.equal("C", debug.getinfo(e.call, "S").what)
    assert.is_true((e:call("t", "s", ok_fn)))
  end)
end)

describe("engine:call in C with sessions", function()
  local function session_engine(extra)
    return engine(fx.with({sessions = {defaults = {failure_threshold = 2, reset_timeout = 5}}},
      extra))
  end

  it("is taken, and records on the session and the provider", function()
    local e = session_engine()
    assert.is_true(e.fast)
    assert.equal("C", debug.getinfo(e.call, "S").what)
    assert.same({true, "a", 1}, {e:call("t", "s", function(p, x) return p == "b" and "a" or p, x end, 1)})
    assert.is_false((e:call("t", "s", function() error("503", 0) end)))
    local st = session(e, "t", "s"):stats()
    assert.equal(1, st.successes)
    assert.equal(1, st.failures)
    assert.equal(0, st.permits_out)
    local r = e:stats().requests
    assert.equal(1, r.ok)
    assert.equal(1, r.error)
    no_permits(e)
  end)

  it("refuses a call the session's breaker refuses: counted, no provider asked", function()
    local e = session_engine()
    for _ = 1, 2 do e:call("t", "s", function() error("503", 0) end) end  -- the session opens
    local calls = e:breaker("a"):stats().calls + e:breaker("b"):stats().calls
    local ran = false
    local ok, rej = e:call("t", "s", function() ran = true end)
    assert.is_false(ok)
    assert.is_false(ran)
    assert.is_true(cb.is_rejection(rej))
    assert.equal("session open", rej.reason)
    assert.equal("t", rej.tenant)
    assert.equal("s", rej.session)
    assert.is_true(rej.retry_after > 0 and rej.retry_after <= 5)
    assert.equal(1, e:stats().requests.session_open)
    assert.equal(calls, e:breaker("a"):stats().calls + e:breaker("b"):stats().calls)
    assert.is_true((e:call("t", "other", ok_fn)))  -- another session is not stopped
  end)

  it("refuses bad ids at the caller's line; long ones, a full registry with a rejection", function()
    local e = session_engine({sessions = {max_entries = 1,
      defaults = {failure_threshold = 2, reset_timeout = 5}}})
    local err = select(2, pcall(function() e:call(nil, "s", ok_fn) end))
    assert.matches("53%-engine_safety_spec%.lua:%d+: tenant must be a string %(got nil%)", err)
    err = select(2, pcall(function() e:call("t", 7, ok_fn) end))
    assert.matches("53%-engine_safety_spec%.lua:%d+: session must be a string %(got number%)", err)
    local ok, rej = e:call("t", ("x"):rep(1025), ok_fn)
    assert.is_false(ok)
    assert.equal("key too long", rej.reason)
    for _ = 1, 2 do e:call("t", "s", function() error("503", 0) end) end  -- tripped: kept
    ok, rej = e:call("t", "s2", ok_fn)
    assert.is_false(ok)
    assert.equal("registry full", rej.reason)
    assert.equal(1, e:stats().requests.registry_full)
    assert.equal(1, e.sessions:stats().refused_full)  -- asked once, not again by the Lua call
    no_permits(e)
  end)

  it("gives the session's permit back when no provider may take the call", function()
    local e = session_engine({defaults = {failure_threshold = 1, reset_timeout = 10}})
    e:call("t", "x", function() error("503", 0) end)
    e:call("t", "y", function() error("503", 0) end)  -- a and b open
    local ok, rej = e:call("t", "s", ok_fn)
    assert.is_false(ok)
    assert.equal("all providers open", rej.reason)
    local st = session(e, "t", "s"):stats()
    assert.equal(0, st.failures)
    assert.equal(1, st.ignored)
  end)

  it("lets the session's callbacks and fn yield; one that raises gives both permits back", function()
    local e, clock = session_engine({sessions = {defaults = {failure_threshold = 1,
      reset_timeout = 1, half_open_max_calls = 1, success_threshold = 1}}})
    e:call("t", "s", function() error("503", 0) end)  -- the session opens
    local seen = {}
    session(e, "t", "s"):on_change(function(_, _, to)
      seen[#seen + 1] = to
      coroutine.yield("cb")
    end)
    clock:advance(1)
    local co = coroutine.wrap(function()
      return e:call("t", "s", function(p) coroutine.yield("fn"); return p end)
    end)
    assert.equal("cb", co())  -- open -> half-open, in the session's allow
    assert.equal("fn", co())
    assert.equal("cb", co())  -- half-open -> closed, once fn returned
    local ok, p = co()
    assert.is_true(ok)
    assert.is_truthy(p == "a" or p == "b")
    assert.same({"half-open", "closed"}, seen)
    session(e, "t", "s"):on_change(nil)
    e:call("t", "s", function() error("503", 0) end)  -- opens again
    session(e, "t", "s"):on_change(function(_, _, to) error("session saw " .. to, 0) end)
    clock:advance(1)
    local ran = false
    assert.has_error(function() e:call("t", "s", function() ran = true end) end,
      "on_change callback failed: session saw half-open")
    assert.is_false(ran)
    assert.equal(0, session(e, "t", "s"):stats().permits_out)  -- the one probe is not lost
    no_permits(e)
    session(e, "t", "s"):on_change(nil)
    assert.is_true((e:call("t", "s", ok_fn)))
  end)

  it("sweeps idle sessions from inside a cached call: their breakers are closed, not reused", function()
    local e, clock = session_engine({sessions = {idle_ttl = 1, cleanup_every = 1,
      defaults = {failure_threshold = 2, reset_timeout = 5}}})
    for i = 1, 40 do assert.is_true((e:call("t", "s" .. i, ok_fn))) end
    local held = session(e, "t", "s7")  -- a box Lua holds while the sweep removes its entry
    held:failure()
    clock:advance(2)
    for _ = 1, 80 do assert.is_true((e:call("t", "s1", ok_fn))) end  -- cache hits sweep
    assert.equal(1, e.sessions:size())
    assert.has_error(function() held:allow() end, "attempt to use a removed registry breaker")
    assert.is_true((e:call("t", "s7", ok_fn)))  -- a fresh breaker, not the swept one
    assert.equal(0, session(e, "t", "s7"):stats().failures)
    no_permits(e)
  end)

  it("keeps the session it got from its cache on an old registry (a float's step)", function()
    local e, clock = session_engine({sessions = {idle_ttl = 0.01, cleanup_every = 1}})
    assert.is_true((e:call("t", "s", ok_fn)))
    clock:set(2.6e6 + 0.1)
    assert.is_true((e:call("t", "s", ok_fn)))  -- the cached session, touched: not swept
    assert.equal(2, session(e, "t", "s"):stats().successes)
    no_permits(e)
  end)

  for _, path in ipairs({"C", "Lua"}) do
    -- the Lua call: a provider hook makes the engine take Engine.call
    local hook = path == "Lua" and {a = {on_change = function() end}, b = {}} or nil
    local function opened(extra)
      local e, clock = session_engine(fx.with({providers = hook, sessions = {defaults = {
        failure_threshold = 1, reset_timeout = 5, success_threshold = 1}}}, extra))
      assert.equal(path == "C", e.fast)
      e:call("t", "s", function() error("503", 0) end)  -- the session opens
      clock:advance(6)  -- the next call's allow moves it to half-open
      return e, clock
    end

    it("(" .. path .. ") gives both permits back when the session's callback raises", function()
      local e = opened()
      session(e, "t", "s"):on_change(function(_, _, to) error("saw " .. to, 0) end)
      local ran = false
      assert.has_error(function() e:call("t", "s", function() ran = true end) end,
        "on_change callback failed: saw half-open")
      assert.is_false(ran)
      assert.equal(0, session(e, "t", "s"):stats().permits_out)
      no_permits(e)
    end)

    it("(" .. path .. ") runs fn when the session's callback removes the session", function()
      local e = opened()
      session(e, "t", "s"):on_change(function() e.sessions:remove("t", "s") end)
      assert.same({true, "ok", 42}, {e:call("t", "s", function(_, x) return "ok", x end, 42)})
      assert.is_nil(session(e, "t", "s"))
      no_permits(e)
    end)

    it("(" .. path .. ") gives the session's permit back when a provider's callback raises", function()
      local e, clock = opened({defaults = {failure_threshold = 1, reset_timeout = 5}})
      for _, name in ipairs({"a", "b"}) do  -- both providers open, then due with the session
        e:breaker(name):allow()
        e:breaker(name):failure()
        e:breaker(name):on_change(function(_, _, to) error(name .. " saw " .. to, 0) end)
      end
      clock:advance(6)
      local ok, err = pcall(e.call, e, "t", "s", ok_fn)
      assert.is_false(ok)
      assert.matches("on_change callback failed: %a saw half%-open", err)
      assert.equal(0, session(e, "t", "s"):stats().permits_out)
      no_permits(e)
    end)

    it("(" .. path .. ") calls a callable object whose metatable is protected", function()
      local e = engine({providers = hook})
      for _, protect in ipairs({"locked", false}) do
        local obj = setmetatable({}, {__call = function(_, p, x) return p, x end, __metatable = protect})
        local ok, p, x = e:call("t", "s", obj, 1)
        assert.is_true(ok)
        assert.is_truthy(p == "a" or p == "b")
        assert.equal(1, x)
      end
      no_permits(e)
    end)

    it("(" .. path .. ") follows a reload made by the session's callback", function()
      local e = opened()
      local ignore = function() return "ignore" end
      local reloaded = {clock = e.policy.clock, selection = {seed = 3},
        providers = {a = {classify = ignore, on_change = hook and function() end or nil},
          b = {classify = ignore}},
        sessions = {defaults = {failure_threshold = 1, reset_timeout = 5, success_threshold = 1}}}
      session(e, "t", "s"):on_change(function(_, _, to)
        if to == "half-open" then e:reload(reloaded) end
      end)
      local ok, p = e:call("t", "s", ok_fn)
      assert.is_true(ok)
      assert.equal(1, e:breaker(p):stats().ignored)  -- the new classifier's word
      assert.equal(0, e:breaker(p):stats().successes)
      no_permits(e)
    end)

    it("(" .. path .. ") runs the session's callbacks before it chooses a provider", function()
      local e = opened({providers = hook or {a = {}, b = {}}})
      local nested
      session(e, "t", "s"):on_change(function(_, _, to)
        if to == "half-open" then nested = {e:call("t", "s2", ok_fn, 1)} end
      end)
      assert.is_true((e:call("t", "s", ok_fn)))
      assert.is_true(nested[1])  -- a provider was free: the outer call had not taken one
      no_permits(e)
    end)
  end

  it("answers as the Lua call does, call after call", function()
    -- the same policy and seed, one engine forced onto the Lua call by a hook
    local outcomes = {}
    for i = 1, 300 do outcomes[i] = (i * 7919) % 5 end
    local function run(e, clock)
      local log = {}
      for i, o in ipairs(outcomes) do
        local ok, r = e:call("t", "s" .. (i % 7), function(p)
          if o == 0 then error("503 " .. p, 0) end
          return p
        end)
        log[i] = tostring(ok) .. " " .. (cb.is_rejection(r) and r.reason or tostring(r))
        clock:advance(0.4)
      end
      local st = e:stats()
      log[#log + 1] = ("%d %d %d"):format(st.requests.ok, st.requests.error, st.requests.session_open)
      return log
    end
    local p = {sessions = {defaults = {failure_threshold = 2, reset_timeout = 1}},
      defaults = {failure_threshold = 3, reset_timeout = 2}}
    local fast, c1 = session_engine(p)
    local slow, c2 = session_engine(fx.with(p, {providers = {a = {on_change = function() end}, b = {}}}))
    assert.is_true(fast.fast)
    assert.is_false(slow.fast)
    assert.same(run(slow, c2), run(fast, c1))
  end)
end)

describe("engine:call in C under a collector at every allocation", function()
  it("survives a finalizer that closes the engine anywhere in a call", function()
    fx.gc_at_every_allocation(function()
      for i = 1, fx.scaled(30, 3) do
        local e, clock = engine({sessions = i % 2 == 0 and {} or false,
          defaults = {failure_threshold = 1, reset_timeout = 1}})
        fx.trap(function() e:close() end)
        for k = 1, 6 do
          local ok, r = pcall(e.call, e, "t", "s", function(p, x)
            if (i + k) % 3 == 0 then error("503", 0) end
            return p, x
          end, k)
          -- a reply, a rejection, or the closed engine's error: never a crash
          assert.is_truthy(ok or type(r) == "string", tostring(r))
          clock:advance(1)
        end
        collectgarbage("collect")
      end
    end)
  end)
end)
