local cb = require("cbreaker")
local fx = require("helpers.fixtures")
local policy = require("cbreaker.policy")

local source = fx.source

local function err_of(p)
  local ok, e = pcall(policy.load, p)
  assert.is_false(ok)
  return e
end

describe("policy", function()
  it("fills in the defaults and orders the providers", function()
    local p = policy.load({providers = {openai = {}, anthropic = {failure_threshold = 3}}})
    assert.same({"anthropic", "openai"}, p.names)
    assert.equal("thompson", p.selection.strategy)
    assert.same({1, 1}, p.selection.prior)
    assert.equal("fail", p.on_all_open)
    assert.equal(1, p.max_attempts)
    assert.same({defaults = {}}, p.sessions)
    assert.same({failure_threshold = 3}, policy.provider_options(p, "anthropic"))
  end)

  it("merges defaults under each provider's own options", function()
    local p = policy.load({defaults = {failure_threshold = 7, reset_timeout = 10},
                           providers = {a = {reset_timeout = 2}, b = {}}})
    assert.same({failure_threshold = 7, reset_timeout = 2}, policy.provider_options(p, "a"))
    assert.same({failure_threshold = 7, reset_timeout = 10}, policy.provider_options(p, "b"))
  end)

  it("names a misspelt option by its full path with the closest valid name", function()
    local e = err_of({providers = {openai = {failure_treshold = 3}}})
    assert.matches("unknown option 'providers.openai.failure_treshold' (did you mean 'failure_threshold'?)", e, 1, true)
    e = err_of({providers = {a = {}}, sessions = {defaults = {sucess_threshold = 1}}})
    assert.matches("'sessions.defaults.sucess_threshold' (did you mean 'success_threshold'?)", e, 1, true)
    e = err_of({providers = {a = {}}, selection = {stratgy = "thompson"}})
    assert.matches("'selection.stratgy' (did you mean 'strategy'?)", e, 1, true)
    e = err_of({provider = {a = {}}})
    assert.matches("'provider' (did you mean 'providers'?)", e, 1, true)
  end)

  it("gives no suggestion for a word that is not a typo", function()
    local e = err_of({providers = {a = {colour = "red"}}})
    assert.matches("unknown option 'providers.a.colour'$", e)
  end)

  it("quotes provider names that are not identifiers", function()
    local e = err_of({providers = {["gpt-4o"] = {jitter = 2}}})
    assert.matches('\'providers["gpt-4o"].jitter\' must be a number in [0, 1] (got 2)', e, 1, true)
  end)

  it("checks types and ranges with the full path", function()
    local cases = {
      {{providers = {a = {reset_timeout = "30"}}}, "'providers.a.reset_timeout' must be 0 or a number of seconds in [0.001, 1e9] (got string)"},
      {{providers = {a = {reset_timeout = -1}}}, "'providers.a.reset_timeout' must be 0 or a number of seconds in [0.001, 1e9] (got -1)"},
      {{providers = {a = {failure_threshold = 2.5}}}, "'providers.a.failure_threshold' must be a whole number of failures >= 0 (got 2.5)"},
      {{providers = {a = {success_threshold = 0}}}, "'providers.a.success_threshold' must be a whole number >= 1 (got 0)"},
      {{providers = {a = {slow_call_rate = 0}}}, "'providers.a.slow_call_rate' must be a number in (0, 1] (got 0)"},
      {{providers = {a = {window = 0}}}, "'providers.a.window' must be a number of calls in [1, 1000000] (got 0)"},
      {{providers = {a = {backoff_factor = 0.5}}}, "'providers.a.backoff_factor' must be a number in [1, 1000] (got 0.5)"},
      {{providers = {a = {classify = true}}}, "'providers.a.classify' must be a function (got boolean)"},
      {{defaults = {failure_rate = 0 / 0}, providers = {a = {}}}, "'defaults.failure_rate' must be a number in [0, 1] (got"},
      {{providers = {a = {}}, selection = {prior = {0, 1}}}, "'selection.prior[1]' must be a number in [0.001, 1e6] (got 0)"},
      {{providers = {a = {}}, selection = {strategy = "thomson"}}, "'selection.strategy' must be one of 'thompson', 'round_robin' (got 'thomson'; did you mean 'thompson'?)"},
      {{providers = {a = {}}, selection = {decay = 0}}, "'selection.decay' must be a number in (0, 1] (got 0)"},
      {{providers = {a = {}}, sessions = {max_entries = -1}}, "'sessions.max_entries' must be a whole number >= 0 (0: no cap) (got -1)"},
      {{providers = {a = {}}, sessions = {idle_ttl = 0}}, "'sessions.idle_ttl' must be a number of seconds in [0.001, 1e9] (math.huge: never) (got 0)"},
      {{providers = {a = {}}, on_all_open = "retry"}, "'on_all_open' must be one of 'fail', 'wait', 'bypass' (got 'retry')"},
      {{providers = {a = {}}, max_attempts = 0}, "'max_attempts' must be a whole number in [1, 100] (got 0)"},
      {{providers = {a = {}}, clock = 5}, "'clock' must be a cbreaker.manual_clock (got number)"},
      {{providers = {a = {}}, selection = {discount = 1.5}}, "'selection.discount' must be a number in [0, 1] (got 1.5)"},
      {{providers = {a = {}}, redis = {mode = "shard"}}, "'redis.mode' must be one of 'broadcast', 'shared' (got 'shard'; did you mean 'shared'?)"},
      {{providers = {a = {}}, redis = {timeout_ms = "100"}}, "'redis.timeout_ms' must be a number of milliseconds in [1, 60000] (got string)"},
      {{providers = {a = {}}, redis = {timeout_ms = 100000}}, "'redis.timeout_ms' must be a number of milliseconds in [1, 60000] (got 100000)"},
      {{providers = {a = {}}, redis = {replay_window_ms = 5}}, "'redis.replay_window_ms' must be a number of milliseconds in [1000, 86400000] (got 5)"},
      {{providers = {a = {}}, redis = {secret = 42}}, "'redis.secret' must be a string without zero bytes (got number)"},
      {{providers = {a = {window_seconds = 1e-300}}}, "'providers.a.window_seconds' must be 0 (a count window) or a number of seconds in [0.001, 1e6] (got 1e-300)"},
      {{providers = {a = {}}, sessions = {defaults = {classify = 3}}}, "'sessions.defaults.classify' must be a function (got number)"},
      {{providers = {a = {}}, selection = {prior = {1, 2, 3}}}, "'selection.prior' must be {alpha, beta}, two numbers (got table)"},
      {{providers = {a = {}}, sentinel = {force_open_after = -1}}, "'sentinel.force_open_after' must be a whole number of failed probes >= 0 (0: never) (got -1)"},
    }
    for _, c in ipairs(cases) do
      assert.matches(c[2], err_of(c[1]), 1, true)
    end
  end)

  it("keeps what the engine sets itself out of provider options", function()
    assert.matches("'providers.a.name' cannot be set here", err_of({providers = {a = {name = "x"}}}), 1, true)
    assert.matches("'defaults.clock' cannot be set here", err_of({defaults = {clock = cb.manual_clock()}, providers = {a = {}}}), 1, true)
    assert.matches("'providers.a.store' cannot be set here (set 'redis' at the top of the policy)", err_of({providers = {a = {store = true}}}), 1, true)
    assert.matches("'sessions.clock' cannot be set here", err_of({providers = {a = {}}, sessions = {clock = cb.manual_clock()}}), 1, true)
    assert.matches("'selection.arms' cannot be set here (the providers are the arms)", err_of({providers = {a = {}}, selection = {arms = {"a"}}}), 1, true)
  end)

  it("reaches every option of cb.redis", function()
    local p = policy.load({providers = {a = {}}, redis = {
      url = "redis://127.0.0.1:1/0", prefix = "p", channel = "c", password = "pw", id = "me",
      username = "cb", mode = "shared", quorum = 2, timeout_ms = 50, ttl = 60, backoff_min = 0.5, backoff_max = 2,
      secret = "0123456789abcdef", replay_window_ms = 5000}})
    assert.equal("0123456789abcdef", p.redis.secret)
    assert.equal(5000, p.redis.replay_window_ms)
    assert.equal("cb", p.redis.username)
    assert.matches("'redis.username' must be a string (got number)",
      err_of({providers = {a = {}}, redis = {username = 7}}), 1, true)
    assert.matches("unknown option 'redis.replay_windw_ms' (did you mean 'replay_window_ms'?)",
      err_of({providers = {a = {}}, redis = {replay_windw_ms = 1}}), 1, true)
  end)

  it("takes the table forms of Sentinel and Cluster in 'redis', as cb.redis does", function()
    local p = policy.load({providers = {a = {}}, redis = {sentinels = {"s1:26379", "s2:26379"},
      master = "mymaster"}})
    assert.same({"s1:26379", "s2:26379"}, p.redis.sentinels)
    assert.equal("mymaster", p.redis.master)
    p = policy.load({providers = {a = {}}, redis = {cluster = {"n1:6379"}, hash_tag = true}})
    assert.same({"n1:6379"}, p.redis.cluster)
    assert.is_true(p.redis.hash_tag)
    assert.matches("'redis.cluster' must be a list of \"host:port\" (got string)",
      err_of({providers = {a = {}}, redis = {cluster = "n1:6379"}}), 1, true)
    assert.matches("'redis.master' must be the name the sentinels monitor (got number)",
      err_of({providers = {a = {}}, redis = {sentinels = {"s1"}, master = 1}}), 1, true)
    assert.matches("'redis.hash_tag' must be a boolean (got string)",
      err_of({providers = {a = {}}, redis = {hash_tag = "yes"}}), 1, true)
  end)

  it("checks C objects' options with the C schema (core.check_options)", function()
    local core = require("cbreaker.core")
    assert.has_error(function() core.check_options("breaker", { windw = 1 }, "x.y") end,
      "unknown option 'x.y.windw' (did you mean 'window'?)")
    assert.has_error(function() core.check_options("redis", { timeout_ms = 100000 }) end,
      "option 'timeout_ms' must be a number of milliseconds in [1, 60000] (got 100000)")
    assert.has_error(function() core.check_options("registry", { defaults = { jitter = 2 } }, "s") end,
      "option 's.defaults.jitter' must be a number in [0, 1] (got 2)")
    assert.has_error(function() core.check_options("bandit", { own = 1, arms = {} }, "", { own = true, arms = false }) end,
      "unknown option 'arms'")
    local t = { own = 1, decay = 0.5 }
    assert.equal(t, core.check_options("bandit", t, "", { own = true }))
    assert.has_error(function() core.check_options("pool", { strategy = "thomson" }, "p") end,
      "option 'p.strategy' must be one of 'thompson', 'round_robin' (got 'thomson'; did you mean 'thompson'?)")
    assert.has_error(function() core.check_options("pool", { bandit = { decay = 0 } }) end,
      "option 'bandit.decay' must be a number in (0, 1] (got 0)")
    assert.has_error(function() core.check_options("engine", {}) end)
  end)

  it("requires at least one provider", function()
    assert.matches("'providers' is missing", err_of({}), 1, true)
    assert.matches("'providers' must name at least one provider", err_of({providers = {}}), 1, true)
    assert.matches("must be keyed by provider names", err_of({providers = {{}}}), 1, true)
    local many = {}
    for i = 1, 65 do many["p" .. i] = {} end
    assert.matches("'providers' names 65 providers; at most 64", err_of({providers = many}), 1, true)
  end)

  it("asks for a sleep function when on_all_open is 'wait'", function()
    assert.matches("needs 'sleep'", err_of({providers = {a = {}}, on_all_open = "wait"}), 1, true)
    assert.matches("'max_wait' only applies with on_all_open = 'wait'", err_of({providers = {a = {}}, max_wait = 3}), 1, true)
    local p = policy.load({providers = {a = {}}, on_all_open = "wait", sleep = function() end})
    assert.equal(30, p.max_wait)
  end)

  it("accepts sessions = false (no session guardrails)", function()
    assert.is_false(policy.load({providers = {a = {}}, sessions = false}).sessions)
  end)

  it("rejects what is not a policy", function()
    assert.matches("policy must be a table or the path of a Lua file (got number)", err_of(42), 1, true)
  end)

  it("raises at the caller's line", function()
    local ok, e = pcall(function() policy.load({providers = {a = {windw = 3}}}) end)
    assert.is_false(ok)
    assert.matches("50%-policy_spec.lua:%d+: policy: unknown option 'providers.a.windw'", e)
  end)

  it("returns nil and the message from check()", function()
    local p, e = policy.check({providers = {a = {windw = 3}}})
    assert.is_nil(p)
    assert.matches("did you mean 'window'?", e, 1, true)
    assert.is_table((policy.check({providers = {a = {}}})))
  end)

  describe("files", function()
    local dir = os.tmpname()
    os.remove(dir)
    local function write(name, text)
      local path = dir .. "-" .. name
      local f = assert(io.open(path, "w"))
      f:write(text)
      f:close()
      return path
    end

    it("loads a file returning a policy, and names the file in errors", function()
      local good = write("good.lua", "return {providers = {a = {failure_threshold = 2}}}")
      assert.same({"a"}, policy.load(good).names)
      local bad = write("bad.lua", "return {providers = {a = {failure_treshold = 2}}}")
      local _, e = policy.check(bad)
      assert.matches(bad .. ": unknown option 'providers.a.failure_treshold'", e, 1, true)
      local notable = write("num.lua", "return 3")
      _, e = policy.check(notable)
      assert.matches("must return a policy table (got number)", e, 1, true)
      local broken = write("syntax.lua", "return {")
      _, e = policy.check(broken)
      assert.matches("syntax.lua", e, 1, true)
      _, e = policy.check(dir .. "-missing.lua")
      assert.matches("cannot open", e, 1, true)
      for _, n in ipairs({"good.lua", "bad.lua", "num.lua", "syntax.lua"}) do os.remove(dir .. "-" .. n) end
    end)

    it("validates every example policy", function()
      for _, name in ipairs({"policy_sessions.lua", "policy_routing.lua", "policy_pybreaker.lua",
                             "policy_embed.lua"}) do
        local p, e = policy.check(source .. "/examples/" .. name)
        assert(p, e)
      end
    end)
  end)
end)
