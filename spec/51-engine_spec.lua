local cb = require("cbreaker")
local fx = require("helpers.fixtures")

local source = fx.source

-- A deterministic coin for simulated providers (never math.random: specs
-- must not depend on the interpreter's seed).
local function coin(seed)
  local x = seed
  return function(p)
    x = (x * 1103515245 + 12345) % 2147483648
    return x / 2147483648 < p
  end
end

local function engine(extra, clock)
  local p = fx.with({clock = clock or cb.manual_clock(0), providers = {a = {}, b = {}, c = {}},
                     selection = {seed = 7}}, extra)
  return cb.engine(p), p.clock
end

local function ok_fn(provider, x) return provider, x end

local trip = fx.trip

describe("engine", function()
  describe("construction", function()
    it("builds one breaker per provider, named after it, with merged options", function()
      local e = cb.engine{defaults = {failure_threshold = 4, reset_timeout = 9},
                          providers = {a = {reset_timeout = 3}, b = {}}}
      assert.equal("a", e:breaker("a"):name())
      assert.equal(3, e:breaker("a"):options().reset_timeout)
      assert.equal(4, e:breaker("a"):options().failure_threshold)
      assert.equal(9, e:breaker("b"):options().reset_timeout)
      assert.matches("cbreaker.Engine", tostring(e))
    end)

    it("raises at the caller's line, naming the option", function()
      local ok, err = pcall(function() cb.engine{providers = {openai = {failure_treshold = 3}}} end)
      assert.is_false(ok)
      assert.matches("51%-engine_spec.lua:%d+: policy: unknown option 'providers.openai.failure_treshold' %(did you mean 'failure_threshold'%?%)", err)
    end)

    it("names an unknown provider with the closest one", function()
      local e = engine()
      local ok, err = pcall(e.breaker, e, "bb")
      assert.is_false(ok)
      assert.matches("unknown provider 'bb' (did you mean 'b'?)", err, 1, true)
    end)

    it("loads a policy file", function()
      local e = cb.engine(source .. "/examples/policy_routing.lua")
      assert.same({"anthropic", "deepseek-chat", "deepseek-reasoner", "openai"}, e:stats().names)
      assert.equal(3, e:breaker("anthropic"):options().failure_threshold)
    end)
  end)

  describe("pick", function()
    it("skips open providers and says when the soonest is back", function()
      local e, clock = engine({defaults = {reset_timeout = 10}})
      trip(e:breaker("a"))
      clock:advance(4)
      trip(e:breaker("b"))
      for _ = 1, 50 do assert.equal("c", e:pick("t", "s")) end
      clock:advance(1)
      trip(e:breaker("c"))
      local p, why, ra = e:pick("t", "s")
      assert.is_nil(p)
      assert.equal("all providers open", why)
      assert.near(5, ra, 1e-9)  -- a opened at 0 with a 10 s timeout; now is 5
    end)

    it("takes no permit, and offers a half-open provider only while it has one", function()
      local e, clock = engine({defaults = {reset_timeout = 10, half_open_max_calls = 1},
                               providers = {a = {}}})
      local br = e:breaker("a")
      trip(br)
      clock:advance(10)
      for _ = 1, 5 do assert.equal("a", e:pick("t", "s")) end
      assert.equal("half-open", br:state())
      assert.equal(0, br:stats().permits_out)
      assert.is_true(br:allow())  -- someone holds the only permit now
      local p, why = e:pick("t", "s")
      assert.is_nil(p)
      assert.equal("all providers open", why)
      br:success()
      assert.equal("a", e:pick("t", "s"))
    end)

    it("answers 'session open' for a session stopped by its guardrail", function()
      local e = engine({sessions = {defaults = {failure_threshold = 2, reset_timeout = 60}}})
      for _ = 1, 2 do e:call("t", "loop", function() error("bad") end) end
      local p, why, ra = e:pick("t", "loop")
      assert.is_nil(p)
      assert.equal("session open", why)
      assert.near(60, ra, 1e-9)
      assert.is_string((e:pick("t", "other")))
    end)
  end)

  describe("call", function()
    it("runs fn with the provider and returns its results, pcall-shaped", function()
      local e = engine()
      local ok, provider, x = e:call("t", "s", ok_fn, 42)
      assert.is_true(ok)
      assert.is_truthy(({a = 1, b = 1, c = 1})[provider])
      assert.equal(42, x)
      local st = e:stats()
      assert.equal(1, st.providers[provider].successes)
      assert.equal(1, st.providers[provider].selected)
      assert.equal(1, st.requests.ok)
    end)

    it("returns fn's error and records it on the provider and the session", function()
      local e = engine({providers = {a = {}}, sessions = {defaults = {failure_threshold = 3}}})
      local ok, err = e:call("t", "s", function() error({code = 500}) end)
      assert.is_false(ok)
      assert.same({code = 500}, err)
      assert.is_false(cb.is_rejection(err))
      assert.equal(1, e:breaker("a"):stats().failures)
      assert.equal(1, e:stats().requests.error)
    end)

    it("falls back to another provider up to max_attempts", function()
      local e = engine({max_attempts = 3})
      local seen = {}
      local ok, got = e:call("t", "s", function(p)
        seen[#seen + 1] = p
        if #seen < 3 then error("down: " .. p) end
        return p
      end)
      assert.is_true(ok)
      assert.equal(3, #seen)
      assert.equal(seen[3], got)
      assert.are_not.equal(seen[1], seen[2])
      assert.are_not.equal(seen[2], seen[3])
      assert.equal(1, e:breaker(seen[1]):stats().failures)
      assert.equal(1, e:breaker(seen[3]):stats().successes)
    end)

    it("keeps its fallback order when fn routes a nested call", function()
      local e = engine({max_attempts = 3, sessions = false})
      local outer = {}
      local ok = e:call("t", "s", function(p)
        outer[#outer + 1] = p
        e:call("t", "inner", ok_fn)  -- a sub-request through the same engine
        error("down: " .. p)
      end)
      assert.is_false(ok)
      assert.equal(3, #outer)
      table.sort(outer)
      assert.same({"a", "b", "c"}, outer)  -- each provider tried once
    end)

    it("routes over 64 providers", function()
      local providers = {}
      for k = 1, 64 do providers["p" .. k] = {} end
      local e = cb.engine{providers = providers, max_attempts = 64, sessions = false,
                          selection = {seed = 3}}
      local seen, n = {}, 0
      local ok = e:call("t", "s", function(p)
        assert.is_nil(seen[p])
        seen[p] = true
        n = n + 1
        error("x")
      end)
      assert.is_false(ok)
      assert.equal(64, n)
    end)

    it("lets fn yield (an event loop's coroutine), fallback included", function()
      local e = engine({max_attempts = 2})
      local first
      local co = coroutine.wrap(function()
        return e:call("t", "s", function(p)
          local reply = coroutine.yield(p)  -- waits for the network
          if p == first then error("timeout") end
          return reply
        end)
      end)
      first = co()
      local second = co("ignored")
      assert.are_not.equal(first, second)
      local ok, reply = co("hello")
      assert.is_true(ok)
      assert.equal("hello", reply)
      assert.equal(1, e:breaker(first):stats().failures)
    end)

    it("does not retry what the provider's classifier ignores", function()
      local calls = 0
      local e = engine({max_attempts = 3, defaults = {classify = function(ok) return ok and "success" or "ignore" end}})
      local ok = e:call("t", "s", function() calls = calls + 1; error("400 bad request") end)
      assert.is_false(ok)
      assert.equal(1, calls)
    end)

    it("moves traffic off a failing provider and back after it recovers", function()
      local e, clock = engine({defaults = {reset_timeout = 5, failure_threshold = 0}, max_attempts = 2,
                               selection = {seed = 7, decay = 0.99}})
      local flip, rate = coin(5), {a = 0.98, b = 0.9, c = 0.9}
      local down = false
      local function fn(p)
        if (down and p == "a") or not flip(rate[p]) then error("503") end
        return p
      end
      for _ = 1, 300 do e:call("t", "s", fn) end
      down = true
      local before = e:stats().providers.a.selected
      for _ = 1, 300 do e:call("t", "s", fn) end
      local during = e:stats().providers.a.selected - before
      assert.is_true(during < 30, "a still got " .. during .. " calls during its outage")
      down = false
      clock:advance(5)
      for _ = 1, 300 do e:call("t", "s", fn) end
      local mid = e:stats().providers.a.selected
      for _ = 1, 300 do e:call("t", "s", fn) end
      local back = e:stats().providers.a.selected - mid
      assert.is_true(back > 150, "a got only " .. back .. " of the last 300 calls")
    end)

    it("sends most traffic to the most reliable provider", function()
      local e = engine({defaults = {failure_threshold = 0}})
      local flip = coin(11)
      local rate = {a = 0.95, b = 0.6, c = 0.3}
      for _ = 1, 2000 do
        e:call("t", "s", function(p) if not flip(rate[p]) then error("fail") end end)
      end
      local st = e:stats().providers
      assert.is_true(st.a.share > 0.8, "a's share is " .. st.a.share)
      assert.near(1, st.a.share + st.b.share + st.c.share, 1e-9)
    end)

    it("discounts a provider's statistics when its breaker opens", function()
      local e = engine({providers = {a = {failure_threshold = 2}}, selection = {seed = 1, discount = 0.5}})
      local function fail() error("503") end
      for _ = 1, 20 do e:call("t", "s", ok_fn) end
      e:call("t", "s", fail)
      local before = e:stats().providers.a.selector
      assert.near(21, before.alpha, 1e-9)
      assert.near(2, before.beta, 1e-9)
      e:call("t", "s", fail)  -- opens: 20 wins and 2 failures, halved
      local after = e:stats().providers.a.selector
      assert.equal("open", e:breaker("a"):state())
      assert.near(11, after.alpha, 1e-9)
      assert.near(2, after.beta, 1e-9)
    end)

    it("is reproducible with the same seed", function()
      local function run()
        local e = engine({defaults = {failure_threshold = 0}})
        local flip, picks = coin(3), {}
        for i = 1, 200 do
          e:call("t", "s", function(p) picks[i] = p; if not flip(0.7) then error("x") end end)
        end
        return picks
      end
      assert.same(run(), run())
    end)

    it("round_robin spreads calls evenly over the providers", function()
      local e = engine({selection = {strategy = "round_robin"}})
      for _ = 1, 30 do e:call("t", "s", ok_fn) end
      local st = e:stats().providers
      assert.same({10, 10, 10}, {st.a.selected, st.b.selected, st.c.selected})
      assert.equal(10, st.a.selector.selections)
    end)

    it("raises on misuse", function()
      local e = engine()
      assert.has_error(function() e:call("t", "s", 42) end, "bad argument #3 to 'call' (function expected, got number)")
      assert.has_error(function() e:call(nil, "s", ok_fn) end, "tenant must be a string (got nil)")
      assert.has_error(function() e:call("t", {}, ok_fn) end, "session must be a string (got table)")
    end)

    it("records a failure, then raises, when a classifier misbehaves", function()
      local e = engine({providers = {a = {classify = function() return "maybe" end}}})
      local ok, err = pcall(e.call, e, "t", "s", ok_fn)
      assert.is_false(ok)
      assert.matches('classify must return "success", "failure" or "ignore" (got maybe)', err, 1, true)
      assert.equal(1, e:breaker("a"):stats().failures)
      assert.equal(0, e:breaker("a"):stats().permits_out)
    end)

    it("times calls on the policy's clock for slow-call tracking", function()
      local clock = cb.manual_clock(0)
      local e = engine({providers = {a = {slow_call_ms = 100, slow_call_rate = 0.5, min_calls = 2,
                                          window = 4, failure_threshold = 0}}}, clock)
      for _ = 1, 2 do
        assert.is_true((e:call("t", "s", function() clock:advance(0.25) end)))
      end
      local st = e:breaker("a"):stats()
      assert.equal(2, st.slow_calls)
      assert.equal("open", st.state)
    end)

    it("calls a provider's on_change hook", function()
      local seen = {}
      local e = engine({defaults = {failure_threshold = 1,
        on_change = function(name, from, to) seen[#seen + 1] = name .. ":" .. from .. ">" .. to end},
        providers = {a = {}}})
      e:call("t", "s", function() error("x") end)
      assert.same({"a:closed>open"}, seen)
    end)
  end)

  describe("session guardrails", function()
    local function client_error(ok, err)
      if ok then return "success" end
      return type(err) == "table" and err.client and "ignore" or "failure"
    end

    it("stops a runaway session without touching other sessions or providers", function()
      local e = engine({
        defaults = {classify = client_error},
        sessions = {defaults = {failure_threshold = 5, reset_timeout = 60}},
      })
      local ran = 0
      local function bad() ran = ran + 1; error({client = true}) end
      for _ = 1, 20 do e:call("t1", "runaway", bad) end
      assert.equal(5, ran)  -- stopped after five errors in a row
      local ok, err = e:call("t1", "runaway", bad)
      assert.is_false(ok)
      assert.is_true(cb.is_rejection(err))
      assert.equal("session open", err.reason)
      assert.near(60, err.retry_after, 1e-9)
      for i = 1, 20 do
        assert.is_true((e:call("t1", "s" .. i, ok_fn)))  -- same tenant, other sessions
      end
      for _, p in ipairs({"a", "b", "c"}) do
        assert.equal("closed", e:breaker(p):state())
        assert.equal(0, e:breaker(p):stats().failures)
      end
      assert.equal(16, e:stats().requests.session_open)
    end)

    it("gives a session's probe permit back when no provider can take the call", function()
      local e, clock = engine({providers = {a = {reset_timeout = 100}},
                               sessions = {defaults = {failure_threshold = 1, reset_timeout = 10,
                                                       half_open_max_calls = 1}}})
      e:call("t", "s", function() error("x") end)  -- opens the session and trips nothing else
      trip(e:breaker("a"))
      clock:advance(10)
      local ok, err = e:call("t", "s", ok_fn)
      assert.is_false(ok)
      assert.equal("all providers open", err.reason)
      local _, why = e:pick("t", "s")
      assert.equal("all providers open", why)  -- not "session open": the permit is back
    end)

    it("answers 'registry full' when no session breaker can be made", function()
      local e = engine({sessions = {max_entries = 2, defaults = {failure_threshold = 1}}})
      e:call("t", "s1", function() error("x") end)
      e:call("t", "s2", function() error("x") end)  -- two open breakers, never evicted
      local ok, err = e:call("t", "s3", ok_fn)
      assert.is_false(ok)
      assert.is_true(cb.is_rejection(err))
      assert.equal("registry full", err.reason)
      assert.equal(1, e:stats().requests.registry_full)
    end)

    it("runs without guardrails when sessions = false", function()
      local e = engine({sessions = false, providers = {a = {failure_threshold = 0}}})
      for _ = 1, 50 do e:call("t", "s", function() error("x") end) end
      assert.is_true((e:call("t", "s", ok_fn)))
      assert.is_nil(e:stats().sessions)
    end)
  end)

  describe("on_all_open", function()
    local function all_open(e)
      for _, p in ipairs({"a", "b", "c"}) do trip(e:breaker(p)) end
    end

    it("'fail' returns a rejection with the seconds until the soonest provider", function()
      local e, clock = engine({defaults = {reset_timeout = 20}})
      all_open(e)
      clock:advance(5)
      local ran = false
      local ok, err = e:call("t", "s", function() ran = true end)
      assert.is_false(ok)
      assert.is_false(ran)
      assert.is_true(cb.is_rejection(err))
      assert.equal("all providers open", err.reason)
      assert.near(15, err.retry_after, 1e-9)
      assert.matches("all providers open (retry in 15.000s)", tostring(err), 1, true)
      assert.equal(1, e:stats().requests.all_open)
    end)

    it("'wait' sleeps until a provider is back, within max_wait", function()
      local clock = cb.manual_clock(0)
      local slept = {}
      local e = engine({defaults = {reset_timeout = 20}, on_all_open = "wait", max_wait = 30,
                        sleep = function(s) slept[#slept + 1] = s; clock:advance(s) end}, clock)
      all_open(e)
      local ok, p = e:call("t", "s", ok_fn)
      assert.is_true(ok)
      assert.is_string(p)
      assert.same({20}, slept)
      all_open(e)
      e:breaker("a"):force_open()
      e:breaker("b"):force_open()
      e:breaker("c"):force_open()
      local ok2, err = e:call("t", "s", ok_fn)  -- forced open: nothing to wait for
      assert.is_false(ok2)
      assert.equal("all providers open", err.reason)
      assert.same({20}, slept)
    end)

    it("'wait' gives the session's permit back when sleep raises", function()
      local e = engine({defaults = {reset_timeout = 20}, on_all_open = "wait",
                        sleep = function() error("interrupted") end,
                        sessions = {defaults = {half_open_max_calls = 1}}})
      all_open(e)
      assert.has_error(function() e:call("t", "s", ok_fn) end, "interrupted")
      local sbr = e.sessions:get("t", "s")
      assert.equal(0, sbr:stats().permits_out)
      assert.equal(1, sbr:stats().ignored)
    end)

    it("'wait' gives up beyond max_wait", function()
      local clock = cb.manual_clock(0)
      local e = engine({defaults = {reset_timeout = 60}, on_all_open = "wait", max_wait = 10,
                        sleep = function(s) clock:advance(s) end}, clock)
      all_open(e)
      local ok, err = e:call("t", "s", ok_fn)
      assert.is_false(ok)
      assert.near(60, err.retry_after, 1e-9)
    end)

    it("'bypass' calls the provider due back first, never a forced-open one", function()
      local e, clock = engine({defaults = {reset_timeout = 20}, on_all_open = "bypass"})
      trip(e:breaker("a"))
      clock:advance(5)
      trip(e:breaker("b"))
      e:breaker("c"):force_open()
      local ok, p = e:call("t", "s", ok_fn)
      assert.is_true(ok)
      assert.equal("a", p)
      assert.equal(1, e:stats().providers.a.bypassed)
      assert.equal("open", e:breaker("a"):state())
      e:breaker("a"):force_open()
      e:breaker("b"):force_open()
      local ok2, err = e:call("t", "s", ok_fn)
      assert.is_false(ok2)
      assert.equal("all providers open", err.reason)
    end)
  end)

  describe("probe (the health sentinel)", function()
    it("resets a forced-open provider on a healthy probe", function()
      local e = engine()
      local br = e:breaker("a")
      br:force_open()
      assert.equal("recovered", e:probe("a", true))
      assert.equal("closed", br:state())
      assert.equal("healthy", e:probe("a", true))
    end)

    it("forces a provider open after force_open_after failed probes in a row", function()
      local e = engine({sentinel = {force_open_after = 3}})
      assert.equal("unhealthy", e:probe("a", false))
      assert.equal("unhealthy", e:probe("a", false))
      assert.equal("healthy", e:probe("a", true))  -- the count starts again
      assert.equal("unhealthy", e:probe("a", false))
      assert.equal("unhealthy", e:probe("a", false))
      assert.equal("forced-open", e:probe("a", false))
      assert.equal("forced-open", e:breaker("a"):state())
      for _ = 1, 20 do assert.are_not.equal("a", e:pick()) end
      assert.equal("recovered", e:probe("a", true))
    end)

    it("cannot keep a provider down through its own open breakers", function()
      -- The force-open loop: breakers open, no traffic, so no evidence; the
      -- probe is healthy.  The first healthy probe ends it.
      local e, clock = engine({defaults = {reset_timeout = 30}, sentinel = {force_open_after = 1}})
      e:probe("a", false)
      assert.equal("forced-open", e:breaker("a"):state())
      for _ = 1, 10 do
        clock:advance(60)
        for _ = 1, 20 do e:call("t", "s", ok_fn) end  -- the bandit avoids a: no failures recorded
        assert.equal(0, e:breaker("a"):stats().failures)
        if e:probe("a", true) == "recovered" then break end
      end
      assert.equal("closed", e:breaker("a"):state())
    end)

    it("leaves a breaker opened by real traffic to its own half-open probing", function()
      local e = engine()
      trip(e:breaker("a"))
      assert.equal("healthy", e:probe("a", true))
      assert.equal("open", e:breaker("a"):state())
    end)

    it("never force-opens with force_open_after = 0", function()
      local e = engine({sentinel = {force_open_after = 0}})
      for _ = 1, 10 do assert.equal("unhealthy", e:probe("a", false)) end
      assert.equal("closed", e:breaker("a"):state())
    end)

    it("raises on misuse", function()
      local e = engine()
      assert.has_error(function() e:probe("zz", true) end, "unknown provider 'zz'")
      assert.has_error(function() e:probe("a", "yes") end, "bad argument #2 to 'probe' (boolean expected, got string)")
    end)
  end)

  describe("reload", function()
    local function policy(threshold)
      return {providers = {a = {failure_threshold = threshold, reset_timeout = 10}, b = {}},
              selection = {seed = 1}}
    end

    it("changes thresholds and keeps states and statistics", function()
      local clock = cb.manual_clock(0)
      local p = policy(5); p.clock = clock
      local e = cb.engine(p)
      for _ = 1, 40 do e:call("t", "s", ok_fn) end
      local before = e:stats()
      trip(e:breaker("b"))
      local p2 = policy(2); p2.clock = clock
      p2.selection = {seed = 1, decay = 0.9, prior = {2, 1}}
      assert.is_true(e:reload(p2))
      assert.near(0.9, e.pool:options().bandit.decay, 1e-12)
      assert.same({2, 1}, e.pool:options().bandit.prior)
      assert.equal(2, e:breaker("a"):options().failure_threshold)
      assert.equal("open", e:breaker("b"):state())
      local after = e:stats()
      assert.equal(before.providers.a.selected, after.providers.a.selected)
      assert.equal(before.providers.a.successes, after.providers.a.successes)
      local br = e:breaker("a")
      br:allow(); br:failure()
      br:allow(); br:failure()
      assert.equal("open", br:state())  -- two failures now trip it
    end)

    it("puts an option the new policy leaves out back to its default", function()
      local clock = cb.manual_clock(0)
      local e = cb.engine{clock = clock, providers = {a = {failure_rate = 0.5, reset_timeout = 3}}}
      e:reload{clock = clock, providers = {a = {}}}
      local o = e:breaker("a"):options()
      assert.equal(0, o.failure_rate)
      assert.equal(30, o.reset_timeout)
    end)

    it("refuses what cannot change, and changes nothing on an invalid policy", function()
      local clock = cb.manual_clock(0)
      local p = policy(5); p.clock = clock
      local e = cb.engine(p)
      local bad = policy(5); bad.clock = clock; bad.providers.c = {}
      assert.has_error(function() e:reload(bad) end)
      local ok, err = pcall(e.reload, e, {clock = clock, providers = {a = {failure_treshold = 1}, b = {}}})
      assert.is_false(ok)
      assert.matches("'providers.a.failure_treshold' (did you mean 'failure_threshold'?)", err, 1, true)
      assert.equal(5, e:breaker("a"):options().failure_threshold)
      local other = policy(5); other.clock = cb.manual_clock(0)
      assert.has_error(function() e:reload(other) end, "reload: 'clock' cannot change")
      local sel = policy(5); sel.clock = clock; sel.selection = {seed = 2}
      assert.has_error(function() e:reload(sel) end, "reload: 'selection.strategy' and 'selection.seed' cannot change")
    end)
  end)

  describe("close", function()
    it("releases its breakers, sessions and selector, once", function()
      local e = engine()
      local br = e:breaker("a")
      e:call("t", "s", ok_fn)
      e:close()
      e:close()
      assert.has_error(function() br:allow() end, "attempt to use a closed breaker")
      for _, m in ipairs{ "call", "pick", "stats", "metrics", "breaker", "probe", "reload" } do
        local ok, err = pcall(e[m], e, "t", "s", ok_fn)
        assert.is_false(ok)
        assert.equal(("engine:%s: the engine is closed"):format(m), err:gsub("^[^:]+:%d+: ", ""))
      end
      do
        local scoped <close> = engine()
        scoped:call("t", "s", ok_fn)
      end
    end)
  end)

  describe("reporting", function()
    it("exposes Prometheus text", function()
      local e = engine({providers = {a = {failure_threshold = 1}, ['we"ird'] = {}}})
      e:call("t", "s", function(p) if p == "a" then error("x") end end)
      e:call("t", "s", ok_fn)
      local text = e:metrics()
      assert.matches("# TYPE cbreaker_provider_state gauge\n", text, 1, true)
      assert.matches('cbreaker_provider_state{provider="we\\"ird",state="closed"} 1\n', text, 1, true)
      assert.matches("# TYPE cbreaker_provider_calls_total counter\n", text, 1, true)
      assert.matches("# TYPE cbreaker_provider_transitions_total counter\n", text, 1, true)
      assert.matches("# TYPE cbreaker_provider_selections_total counter\n", text, 1, true)
      assert.matches("# TYPE cbreaker_provider_rejections_total counter\n", text, 1, true)
      assert.matches('cbreaker_requests_total{result="ok"} ', text, 1, true)
      local st = e:stats()
      assert.matches(('cbreaker_provider_selections_total{provider="a"} %d\n'):format(st.providers.a.selected), text, 1, true)
      if st.providers.a.failures > 0 then
        assert.matches('cbreaker_provider_state{provider="a",state="open"} 1\n', text, 1, true)
        assert.matches('cbreaker_provider_transitions_total{provider="a",to="open"} 1\n', text, 1, true)
      end
      for line in text:gmatch("[^\n]+") do
        assert.is_truthy(line:match("^# HELP %S+ .+$") or line:match("^# TYPE %S+ %a+$")
          or line:match("^[%a_:][%w_:]*{.-} %S+$") or line:match("^[%a_:][%w_:]* %S+$"), line)
      end
    end)

    it("renders a stats snapshot alone (cbreaker.metrics)", function()
      local e = engine({sessions = {}})
      e:call("t", "s", ok_fn)
      local st = e:stats()
      e:close()  -- the text needs nothing but the table
      local text = require("cbreaker.metrics").text(st)
      assert.matches('cbreaker_requests_total{result="ok"} 1\n', text, 1, true)
      assert.matches("cbreaker_sessions 1\n", text, 1, true)
      st.providers.a.state, st.providers.a.slow_calls = "forced-open", 2.5
      text = require("cbreaker.metrics").text(st)
      assert.matches('cbreaker_provider_state{provider="a",state="forced-open"} 1\n', text, 1, true)
      assert.matches('cbreaker_provider_slow_calls_total{provider="a"} 2.5\n', text, 1, true)
    end)
  end)

  describe("example policies", function()
    local function load(name, clock)
      local p = dofile(source .. "/examples/" .. name)
      p.clock = clock
      return cb.engine(p)
    end

    it("policy_sessions: a runaway session is stopped, its neighbours are not", function()
      local e = load("policy_sessions.lua", cb.manual_clock(0))
      for _ = 1, 10 do e:call("acme", "runaway", function() error("tool loop") end) end
      assert.equal("session open", select(2, e:call("acme", "runaway", ok_fn)).reason)
      assert.is_true((e:call("acme", "other", ok_fn)))
    end)

    it("policy_routing: routes around an outage and recovers through the sentinel", function()
      local clock = cb.manual_clock(0)
      local e = load("policy_routing.lua", clock)
      local function fn(p) if p == "openai" then error({status = 503}) end return p end
      for _ = 1, 200 do assert.is_true((e:call("t", "s", fn))) end
      assert.is_true(e:stats().providers.openai.selected < 20)
      for _ = 1, 3 do e:probe("openai", false) end
      assert.equal("forced-open", e:breaker("openai"):state())
      assert.equal("recovered", e:probe("openai", true))
      local ok, err = e:call("t", "s", function() error({status = 400}) end)
      assert.is_false(ok)
      assert.same({status = 400}, err)
    end)

    it("policy_pybreaker: 5 failures open, 30 s to half-open, 2 successes close", function()
      local clock = cb.manual_clock(0)
      local e = load("policy_pybreaker.lua", clock)
      for _ = 1, 5 do e:call("t", "s", function() error("x") end) end
      assert.equal("open", e:breaker("llm"):state())
      clock:advance(30)
      assert.equal("half-open", e:breaker("llm"):state())
      e:call("t", "s", ok_fn)
      assert.equal("half-open", e:breaker("llm"):state())
      e:call("t", "s", ok_fn)
      assert.equal("closed", e:breaker("llm"):state())
    end)
  end)
end)
