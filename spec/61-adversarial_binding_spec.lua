-- The binding under attack from plain Lua: callbacks and finalizers that
-- close or remove what a method is using, events outliving their box,
-- callback storms, misuse of call, borrowed handles closed, and coroutines
-- that yield inside fn, the classifier and on_change.  Several of these
-- were use-after-free: run this file under the ASan build too.
local cb = require("cbreaker")
local fx = require("helpers.fixtures")

local gc_at_every_allocation, trap = fx.gc_at_every_allocation, fx.trap

-- Runs the tasks as coroutines, round robin, until all are done; `tick`
-- (if given) runs between rounds.  Returns each task's results.
local function scheduler(tasks, tick)
  local cos, out = {}, {}
  for i, f in ipairs(tasks) do cos[i] = coroutine.create(f) end
  local alive = true
  while alive do
    alive = false
    for i, co in ipairs(cos) do
      if coroutine.status(co) == "suspended" then
        local r = table.pack(coroutine.resume(co))
        if not r[1] then error(r[2], 0) end
        if coroutine.status(co) == "dead" then
          out[i] = table.pack(table.unpack(r, 2, r.n))
        else
          alive = true
        end
      end
    end
    if tick then tick() end
  end
  return out
end

describe("a callback that closes or removes the breaker inside br:call", function()
  it("closing it from on_change before fn runs: fn runs, nothing is recorded", function()
    local clock = cb.manual_clock()
    local br
    br = cb.new{ clock = clock, failure_threshold = 1, reset_timeout = 1, slow_call_ms = 10,
                 on_change = function(_, _, to) if to == "half-open" then br:close() end end }
    br:failure()
    clock:advance(2)
    assert.same({ true, "ran" }, { br:call(function() return "ran" end) })
    assert.has_error(function() br:state() end, "attempt to use a closed breaker")
  end)

  it("removing it from its registry from on_change before fn runs", function()
    local clock = cb.manual_clock()
    local reg = cb.registry{ clock = clock,
                             defaults = { failure_threshold = 1, reset_timeout = 1, slow_call_ms = 10 } }
    local br = reg:get("t", "k")
    br:on_change(function(_, _, to) if to == "half-open" then reg:remove("t", "k") end end)
    br:failure()
    clock:advance(2)
    assert.same({ true, 7 }, { br:call(function() clock:advance(0.5); return 7 end) })
    assert.equal(0, reg:size())
    assert.equal("closed", reg:get("t", "k"):state())
  end)

  it("an on_change error before fn gives the half-open permit back", function()
    local clock = cb.manual_clock()
    local br = cb.new{ clock = clock, failure_threshold = 1, reset_timeout = 1, success_threshold = 1,
                       on_change = function(_, _, to) if to == "half-open" then error("cb", 0) end end }
    br:failure()
    clock:advance(2)
    local ran = false
    assert.has_error(function() br:call(function() ran = true end) end, "on_change callback failed: cb")
    assert.is_false(ran)
    assert.equal(0, br:stats().permits_out)
    assert.is_true((br:call(function() end)))
    assert.equal("closed", br:state())
  end)

  it("a classifier whose error value's __tostring raises or yields: a failure, the permit back", function()
    for _, tostring_fn in ipairs{ function() error("again", 0) end, function() coroutine.yield() end } do
      local clock = cb.manual_clock()
      local bad = setmetatable({}, { __tostring = tostring_fn })
      local br = cb.new{ clock = clock, failure_threshold = 1, reset_timeout = 1, success_threshold = 1,
                         classify = function() error(bad) end }
      br:failure()
      clock:advance(2)
      local ok, err = coroutine.wrap(function() return pcall(br.call, br, function() return 1 end) end)()
      assert.is_false(ok)
      assert.equal("classify failed: (a table whose __tostring failed)", err)
      assert.equal("open", br:state())  -- the probe was recorded as a failure
      assert.equal(0, br:stats().permits_out)
      local ok2, err2 = cb.classify(function() error(bad) end, true)
      assert.is_false(ok2)
      assert.equal("classify failed: (a table whose __tostring failed)", err2)
    end
  end)
end)

describe("finalizers that run at an allocation inside a method", function()
  it("reg:get: a finalizer that removes the entry being created", function()
    local reg = cb.registry{}
    gc_at_every_allocation(function()
      for i = 1, 20 do
        local key = "k" .. i
        trap(function() reg:remove("t", key) end)
        local br = reg:get("t", key)
        collectgarbage("collect")  -- the finalizer has run now, if not inside get
        -- the entry may be gone: then its box says so
        local ok = pcall(br.state, br)
        assert.equal(ok, reg:peek("t", key) == br)
      end
    end)
  end)

  it("reg:peek and reg:entries(): a finalizer that removes entries or closes the registry", function()
    local reg = cb.registry{}
    for i = 1, 30 do reg:get("t", "k" .. i) end
    gc_at_every_allocation(function()
      for i = 1, 10 do
        trap(function() reg:remove("t", "k" .. i) end)
        local br = reg:peek("t", "k" .. i)
        collectgarbage("collect")
        if br then assert.equal(pcall(br.state, br), reg:peek("t", "k" .. i) == br) end
      end
      for _, k, br in reg:entries() do
        trap(function() reg:remove("t", k) end)
        collectgarbage("collect")
        local live = pcall(br.state, br)
        assert.equal(live, reg:peek("t", k) == br)
      end
    end)
    local reg2 = cb.registry{}
    for i = 1, 30 do reg2:get("t", "k" .. i) end
    local ok, err
    gc_at_every_allocation(function()
      local f = function() for _ in reg2:entries() do end end
      trap(function() reg2:close() end)
      ok, err = pcall(f)
    end)
    assert.is_false(ok)
    assert.matches("attempt to use a closed registry", err)
  end)

  it("reg:get: a finalizer that closes the registry", function()
    for _ = 1, 3 do
      local reg = cb.registry{}
      gc_at_every_allocation(function()
        local opts = { window = 5 }
        trap(function() reg:close() end)
        local ok, r = pcall(reg.get, reg, "t", "k", opts)
        collectgarbage("collect")  -- the finalizer has run now, if not inside get
        assert.equal("cbreaker.Registry (closed)", tostring(reg))
        if ok then
          assert.has_error(function() r:state() end, "attempt to use a removed registry breaker")
        else
          assert.matches("attempt to use a closed registry", r)
        end
      end)
    end
  end)

  it("br:stats(), br:options(), br:configure{}: a finalizer that closes the breaker", function()
    gc_at_every_allocation(function()
      for _ = 1, 5 do
        local br = cb.new{ name = "x" }
        trap(function() br:close() end)
        local ok, st = pcall(br.stats, br)
        if ok then assert.equal("x", st.name) end
        br = cb.new{ name = "y" }
        trap(function() br:close() end)
        local ok2, o = pcall(br.options, br)
        if ok2 then assert.equal("y", o.name) end
        br = cb.new{ name = "z" }
        local ok3, err = pcall(br.configure, br,
          setmetatable({ window = 5 }, { __index = function() br:close() end }))
        assert.is_false(ok3)
        assert.matches("closed breaker", err)
      end
    end)
  end)

  it("pool:stats(), pool:options(), bandit:stats(): a finalizer that closes the object", function()
    gc_at_every_allocation(function()
      for _ = 1, 5 do
        local pool = cb.pool{}
        pool:add{ name = "a" }
        pool:add{ name = "b" }
        trap(function() pool:close() end)
        local ok, st = pcall(pool.stats, pool)
        if ok then assert.equal("b", st[2].name) else assert.matches("closed pool", st) end
        pool = cb.pool{}
        pool:add{ name = "c" }
        trap(function() pool:close() end)
        local ok2, one = pcall(pool.stats, pool, 1)
        if ok2 then assert.equal("c", one.name) end
        pool = cb.pool{}
        trap(function() pool:close() end)
        local ok3, o = pcall(pool.options, pool)
        if ok3 then assert.equal("thompson", o.strategy) end
        local bandit = cb.bandit{ arms = { "x", "y" } }
        trap(function() bandit:close() end)
        local ok4, bs = pcall(bandit.stats, bandit)
        if ok4 then assert.is_table(bs) end
      end
    end)
  end)

  it("br:call's rejection: a finalizer that closes the breaker", function()
    gc_at_every_allocation(function()
      for _ = 1, 5 do
        local br = cb.new{ name = "r" }
        br:force_open()
        local fn = function() end
        trap(function() br:close() end)
        local ok, rej = br:call(fn)
        assert.is_false(ok)
        assert.equal("r", rej.name)
        assert.equal("circuit 'r' is forced-open", rej.message)
      end
    end)
  end)
end)

describe("events", function()
  it("an event never reaches a later box at the same address", function()
    local clock = cb.manual_clock()
    local function queue_and_drop()  -- nothing of it stays on this stack
      local old = cb.new{ name = "old", clock = clock, failure_threshold = 1, reset_timeout = 1,
                          on_change = function() end }
      old:failure()
      clock:advance(2)
      assert.truthy(tostring(old):find("half-open", 1, true))  -- queued, not dispatched
      return string.format("%p", old)
    end
    local addr = queue_and_drop()
    collectgarbage("collect")
    collectgarbage("collect")
    local heard, keep, reused = {}, {}, false
    for i = 1, 5000 do  -- malloc hands the old box's memory out again (not under ASan)
      keep[i] = cb.new{ name = "new" .. i,
                        on_change = function(name, from, to) heard[#heard + 1] = name .. from .. to end }
      reused = reused or string.format("%p", keep[i]) == addr
    end
    keep[1]:state()  -- any dispatch
    assert.same({}, heard)
    if not reused then print("(no address reused: this run proves less)") end
  end)

  it("no transition is lost: one cleanup over 100 open breakers runs 100 callbacks", function()
    local clock = cb.manual_clock()
    local reg = cb.registry{ clock = clock, idle_ttl = 1.5, cleanup_every = 0,
                             defaults = { failure_threshold = 1, reset_timeout = 1 } }
    local heard = 0
    for i = 1, 100 do
      local br = reg:get("t", "k" .. i)
      br:on_change(function(_, _, to) if to == "half-open" then heard = heard + 1 end end)
      br:failure()
    end
    clock:advance(2)
    assert.equal(0, reg:cleanup())  -- all idle, none closed: half-open, kept
    assert.equal(100, heard)
  end)

  it("a storm of 5000 transitions in one core call loses none", function()
    local clock = cb.manual_clock()
    local reg = cb.registry{ clock = clock, idle_ttl = 1.5, cleanup_every = 0, max_entries = 5000,
                             defaults = { failure_threshold = 1, reset_timeout = 1 } }
    local heard = 0
    for i = 1, 5000 do
      local br = reg:get("t", "k" .. i)
      br:on_change(function(_, _, to) if to == "half-open" then heard = heard + 1 end end)
      br:failure()
    end
    clock:advance(2)
    reg:cleanup()
    assert.equal(5000, heard)
  end)
end)

describe("br:call misuse", function()
  it("a non-callable fn is a bad argument: raised, nothing recorded", function()
    local br = cb.new{ failure_threshold = 2 }
    for _, v in ipairs({ 42, "fn", true, {} }) do
      assert.has_error(function() br:call(v) end,
        "bad argument #1 to 'call' (function expected, got " .. type(v) .. ")")
    end
    assert.has_error(function() br:call(nil) end, "bad argument #1 to 'call' (function expected, got nil)")
    assert.has_error(function() br:call() end, "bad argument #1 to 'call' (function expected, got no value)")
    local st = br:stats()
    assert.equal(0, st.calls)
    assert.equal(0, st.failures)
    assert.equal("closed", br:state())
  end)

  it("callable tables and userdata stay accepted", function()
    local br = cb.new{}
    local t = setmetatable({}, { __call = function(self, a) return a * 2 end })
    assert.same({ true, 6 }, { br:call(t, 3) })
    assert.equal(1, br:stats().successes)
  end)
end)

describe("closing a registry's breaker", function()
  it("is refused, and the registry keeps a live breaker with its state", function()
    local reg = cb.registry{ defaults = { failure_threshold = 1 } }
    local br = reg:get("t", "k")
    br:failure()
    assert.has_error(function() br:close() end,
      "cannot close a registry breaker: it belongs to its registry (reg:remove(tenant, key) drops it)")
    local ok, err = pcall(function()
      local b <close> = reg:get("t", "k")  -- luacheck: ignore
    end)
    assert.is_false(ok)
    assert.matches("cannot close a registry breaker", err)
    assert.equal("open", reg:get("t", "k"):state())
    reg:remove("t", "k")
    br:close()  -- a removed one is closed already: a no-op
  end)
end)

describe("coroutines", function()
  it("fn yields; calls interleave on one breaker and on registry breakers", function()
    local clock = cb.manual_clock()
    local br = cb.new{ clock = clock, failure_threshold = 10, slow_call_ms = 150 }
    local reg = cb.registry{ clock = clock, defaults = { failure_threshold = 2 } }
    local tasks = {}
    for i = 1, 6 do
      tasks[#tasks + 1] = function()
        return br:call(function(x)
          for _ = 1, i do coroutine.yield() end
          if x % 3 == 0 then error("e" .. x, 0) end
          return x, "r" .. x
        end, i)
      end
      tasks[#tasks + 1] = function()
        local s = reg:get("t", "s" .. (i % 2))
        return s:call(function() coroutine.yield(); coroutine.yield(); return "s" .. i end)
      end
    end
    local out = scheduler(tasks, function() clock:advance(0.1) end)
    for i = 1, 6 do
      local r = out[2 * i - 1]
      if i % 3 == 0 then
        assert.same({ false, "e" .. i, n = 2 }, r)
      else
        assert.same({ true, i, "r" .. i, n = 3 }, r)
      end
      assert.same({ true, "s" .. i, n = 2 }, out[2 * i])
    end
    local st = br:stats()
    assert.equal(6, st.calls)
    assert.equal(2, st.failures)
    assert.equal(5, st.slow_calls)  -- i >= 2 yields at least twice: >= 0.2 s
    assert.equal(3, reg:get("t", "s0"):stats().successes)
  end)

  it("a breaker removed while fn is suspended: fn's reply is returned, nothing recorded", function()
    local reg = cb.registry{ defaults = { failure_threshold = 1 } }
    local out = scheduler({
      function()
        return reg:get("t", "k"):call(function() coroutine.yield(); error("late", 0) end)
      end,
      function()
        reg:remove("t", "k")
        return reg:get("t", "k"):call(function() coroutine.yield(); return "new" end)
      end,
    })
    assert.same({ false, "late", n = 2 }, out[1])
    assert.same({ true, "new", n = 2 }, out[2])
    assert.equal("closed", reg:get("t", "k"):state())
    assert.equal(1, reg:get("t", "k"):stats().calls)
  end)

  it("the classifier and on_change callbacks may yield", function()
    local clock = cb.manual_clock()
    local heard = {}
    local br = cb.new{ clock = clock, failure_threshold = 1, reset_timeout = 1,
      classify = function(ok, v)
        coroutine.yield("classify")
        return (ok and v ~= "bad") and "success" or "failure"
      end,
      on_change = function(_, from, to)
        coroutine.yield("on_change")
        heard[#heard + 1] = from .. ">" .. to
      end }
    local co = coroutine.wrap(function()
      local r1 = table.pack(br:call(function() return "bad" end))
      clock:advance(2)
      local r2 = table.pack(br:call(function() return "good" end))
      br:force_open()
      return r1, r2
    end)
    local yields = {}
    local r1, r2
    while true do
      local a, b = co()
      if type(a) == "table" then r1, r2 = a, b break end
      yields[#yields + 1] = a
    end
    assert.same({ true, "bad", n = 2 }, r1)
    assert.same({ true, "good", n = 2 }, r2)
    -- a success in half-open (success_threshold > 1) closes nothing yet
    assert.same({ "classify", "on_change", "on_change", "classify", "on_change" }, yields)
    assert.same({ "closed>open", "open>half-open", "half-open>forced-open" }, heard)
  end)

  it("a callback error after a yield is raised once the others ran", function()
    local clock = cb.manual_clock()
    local reg = cb.registry{ clock = clock, cleanup_every = 0, idle_ttl = 1.5,
                             defaults = { failure_threshold = 1, reset_timeout = 1 } }
    local heard = 0
    for i = 1, 3 do
      local br = reg:get("t", "k" .. i)
      br:on_change(function(_, _, to)
        if to ~= "half-open" then return end
        coroutine.yield()
        heard = heard + 1
        if i == 2 then error("two", 0) end
      end)
      br:failure()
    end
    clock:advance(2)
    local out = scheduler({ function() return pcall(reg.cleanup, reg) end })
    assert.same({ false, "on_change callback failed: two", n = 2 }, out[1])
    assert.equal(3, heard)
  end)
end)

describe("a finalized object brought back to life", function()
  it("is never taken for a proved self again", function()
    local saved
    local holder = setmetatable({}, { __gc = function(h) saved = h.br end })
    holder.br = cb.new{ name = "ghost" }  -- made later: finalized first
    holder = nil  -- luacheck: ignore
    collectgarbage("collect")
    collectgarbage("collect")
    assert.is_not_nil(saved)
    local state = getmetatable(cb.new{}).__index.state
    for _ = 1, 3 do
      assert.has_error(function() state(saved) end,
        "bad argument #1 to 'state' (cbreaker.Breaker expected, got userdata)")
    end
  end)

  it("a bandit too", function()
    local saved
    local holder = setmetatable({}, { __gc = function(h) saved = h.bandit end })
    holder.bandit = cb.bandit{ arms = { "a" } }  -- made later: finalized first
    holder = nil  -- luacheck: ignore
    collectgarbage("collect")
    collectgarbage("collect")
    assert.is_not_nil(saved)
    local select_fn = getmetatable(cb.bandit{ arms = { "b" } }).__index.select
    local ok, err = pcall(select_fn, saved)
    assert.is_false(ok)
    assert.matches("cbreaker.Bandit expected, got userdata", err, 1, true)
  end)

  it("no script can take a class's __gc away", function()
    for _, obj in ipairs{ cb.new{}, cb.bandit{ arms = { "a" } }, cb.registry{}, cb.pool{},
                          cb.manual_clock() } do
      local mt = getmetatable(obj)  -- what Lua code reads: the name and the methods
      assert.is_string(mt.__name)
      assert.is_table(mt.__index)
      assert.is_nil(rawget(mt, "__gc"))  -- the real one is out of reach
      mt.__gc = nil
    end
    collectgarbage("collect")
  end)
end)

describe("durations and names", function()
  it("a retry_after of 1e308 or inf, recorded or classified, is capped like every duration", function()
    local clock = cb.manual_clock()
    local function check(br)
      assert.equal("open", br:state())
      local ra = br:retry_after()
      assert.is_true(ra > 1e8 and ra <= 1e9, "retry_after " .. ra)
      clock:advance(1e9 + 1)
      assert.equal("half-open", br:state())
    end
    for _, ra in ipairs({ 1e308, math.huge }) do
      local br = cb.new{ clock = clock, reset_timeout = 1 }
      br:record("failure", nil, ra)
      check(br)
      br = cb.new{ clock = clock, reset_timeout = 1, classify = function() return "failure", ra end }
      assert.is_true((br:call(function() end)))
      check(br)
      assert.equal("failure", (cb.classify(function() return "failure", ra end, true)))
    end
    assert.has_error(function() cb.new{}:record("failure", nil, 0 / 0) end)
    assert.has_error(function() cb.new{}:record("failure", nil, -1) end)
  end)

  it("a name with a zero byte is refused, not cut", function()
    assert.has_error(function() cb.new{ name = "a\0b" } end,
      "cbreaker.new: option 'name' must be a string without zero bytes (got string)")
    assert.equal("a", cb.new{ name = "a" }:name())
  end)
end)
