-- core.pool: the provider pool's binding (breakers plus a bandit, by index).
local cb = require("cbreaker")
local core = require("cbreaker.core")

local function pool(opts, names)
  local clock = cb.manual_clock(0)
  opts = opts or {}
  opts.bandit = opts.bandit or {seed = 1, clock = clock}
  local p = core.pool(opts)
  local brs = {}
  for k, name in ipairs(names or {"a", "b", "c"}) do
    local i, br = p:add{name = name, clock = clock, failure_threshold = 2, reset_timeout = 5}
    assert.equal(k, i)
    brs[k] = br
  end
  return p, brs, clock
end

describe("core.pool", function()
  it("numbers providers from 1 and hands out their breakers", function()
    local p, brs = pool()
    assert.equal(3, p:size())
    assert.equal(2, p:find("b"))
    assert.is_nil(p:find("zz"))
    assert.equal("b", brs[2]:name())
    assert.equal(brs[2], p:breaker(2))
    assert.equal("cbreaker.Pool (3 providers)", tostring(p))
  end)

  it("gives its breakers cb.new's classify and on_change", function()
    local p = core.pool{}
    local seen = {}
    local _, br = p:add{name = "a", failure_threshold = 1,
                        classify = function(ok) return ok and "failure" or "success" end,
                        on_change = function(_, _, to) seen[#seen + 1] = to end}
    assert.is_true((br:call(function() return 1 end)))  -- classified a failure: opens
    assert.equal("open", br:state())
    assert.same({"open"}, seen)
  end)

  it("acquires a permit by index and records by index", function()
    local p, brs = pool()
    local i, tried = p:acquire()
    assert.is_true(i >= 1 and i <= 3)
    assert.equal(1 << (i - 1), tried)
    p:record(i, true, 12)
    assert.equal(1, brs[i]:stats().successes)
    local st = p:stats(i)
    assert.same({i, 1, 1, 0}, {p:find(st.name), st.picked, st.acquired, st.discounts})
    assert.near(2, st.bandit.alpha, 1e-12)
  end)

  it("leaves out what was tried, and says when none is left", function()
    local p = pool()
    local i, tried = p:acquire(0)
    p:record(i, "ignore")
    local j, tried2 = p:acquire(tried)
    assert.are_not.equal(i, j)
    p:record(j, "ignore")
    local k, tried3 = p:acquire(tried2)
    p:record(k, "ignore")
    assert.equal(7, tried3)
    assert.same({nil, math.huge}, {p:acquire(tried3)})
    assert.same({nil, math.huge}, {p:pick(7)})
  end)

  it("discounts a provider's evidence when its breaker opens, once", function()
    local p, brs, clock = pool({discount = 0.5}, {"a"})
    for _ = 1, 6 do p:record(1, "success") end
    p:record(1, "failure")
    p:record(1, "failure")  -- opens: (7, 3) evidence above the prior (1, 1) halves
    assert.equal("open", brs[1]:state())
    local st = p:stats(1)
    assert.equal(1, st.discounts)
    assert.near(1 + 3, st.bandit.alpha, 1e-12)
    assert.near(1 + 1, st.bandit.beta, 1e-12)
    assert.same({nil, 5}, {p:acquire()})
    clock:advance(5)
    assert.equal(1, (p:acquire()))
  end)

  it("round robin takes turns", function()
    local p = pool({strategy = "round_robin"})
    local seen = {}
    for k = 1, 6 do
      local i = p:acquire()
      seen[k] = i
      p:record(i, true)
    end
    assert.same({1, 2, 3, 1, 2, 3}, seen)
    assert.is_nil(p:stats(1).bandit)
  end)

  it("reconfigures and reports its options", function()
    local p = pool({discount = 0.25})
    p:configure{discount = 0.75, bandit = {decay = 0.5, prior = {2, 3}}}
    local o = p:options()
    assert.equal(0.75, o.discount)
    assert.equal("thompson", o.strategy)
    assert.same({2, 3}, o.bandit.prior)
    assert.equal(0.5, o.bandit.decay)
    assert.has_error(function() p:configure{strategy = "round_robin"} end)
  end)

  it("raises on misuse with clear messages", function()
    local p = pool()
    assert.has_error(function() p:record(4, true) end)
    assert.has_error(function() p:record(1, "maybe") end)
    assert.has_error(function() p:record(1, true, -1) end)
    assert.has_error(function() p:acquire("x") end)
    assert.has_error(function() p:add{name = "a"} end, "pool:add: provider 'a' is added twice")
    assert.has_error(function() p:add{} end, "pool:add: option 'name' must be a non-empty string")
    assert.has_error(function() p:add{name = "d", failure_treshold = 1} end)
    assert.has_error(function() core.pool{discount = 2} end)
    assert.has_error(function() p.acquire({}) end)
  end)

  it("closes its breakers before freeing them, once", function()
    local p, brs = pool()
    p:close()
    p:close()
    assert.has_error(function() brs[1]:allow() end, "attempt to use a closed breaker")
    assert.has_error(function() p:acquire() end, "attempt to use a closed pool")
    assert.equal("cbreaker.Pool (closed)", tostring(p))
    do
      local scoped <close> = pool()
      scoped:acquire()
    end
  end)

  it("keeps itself alive while a breaker is held", function()
    local br
    do
      local p = pool()
      br = p:breaker(1)
    end
    collectgarbage()
    collectgarbage()
    assert.is_true((br:allow()))
  end)

  it("gives the permit back when an on_change callback raises inside acquire", function()
    local p, brs, clock = pool(nil, {"a"})
    p:record(1, false)
    p:record(1, false)  -- open
    clock:advance(5)
    brs[1]:on_change(function(_, _, to) error("saw " .. to, 0) end)
    local ok, err = pcall(p.acquire, p)
    assert.is_false(ok)
    assert.matches("saw half%-open", err)
    assert.equal(0, brs[1]:stats().permits_out)
    assert.equal(1, brs[1]:stats().ignored)
    brs[1]:on_change(nil)
    assert.equal(1, (p:acquire()))  -- the probe permit is free again
  end)

  it("lets on_change callbacks yield inside acquire and record", function()
    local p, brs, clock = pool(nil, {"a"})
    local seen = {}
    brs[1]:on_change(function(_, _, to) coroutine.yield(to); seen[#seen + 1] = to end)
    local co = coroutine.wrap(function()
      p:record(1, false)
      p:record(1, false)  -- opens: the callback yields
      clock:advance(5)
      local i, tried = p:acquire()  -- half-open: yields again
      p:record(i, true)
      return i, tried
    end)
    assert.equal("open", co())
    assert.equal("half-open", co())
    assert.same({1, 1}, {co()})
    assert.same({"open", "half-open"}, seen)
  end)

  it("survives a callback that closes the pool", function()
    local p, brs, clock = pool(nil, {"a"})
    p:record(1, false)
    p:record(1, false)
    clock:advance(5)
    brs[1]:on_change(function() p:close() end)
    assert.same({1, 1}, {p:acquire()})  -- the pool closed under it; nothing freed is touched
    assert.has_error(function() p:record(1, true) end, "attempt to use a closed pool")
  end)

  it("survives finalizers that close it while it allocates", function()
    -- With the collector running at every allocation, a finalizer that
    -- closes the pool runs inside add, stats and options (ASan checks).
    local p = pool()
    local function bomb() setmetatable({}, {__gc = function() p:close() end}) end
    local pause = collectgarbage("setpause", 0)
    local stepmul = collectgarbage("setstepmul", 1000)
    for _ = 1, 50 do
      bomb()
      pcall(p.stats, p)
      pcall(p.options, p)
      pcall(p.add, p, {name = "x" .. _})
      if tostring(p) == "cbreaker.Pool (closed)" then break end
    end
    collectgarbage("setpause", pause)
    collectgarbage("setstepmul", stepmul)
    collectgarbage()
    assert.equal("cbreaker.Pool (closed)", tostring(p))
  end)
end)

describe("pool:run", function()
  local function fn(provider, x) return provider, x end

  it("calls fn(name, ...) and records its outcome on the provider and the session", function()
    local p, brs, clock = pool()
    local reg = cb.registry{clock = clock}
    local sbr = reg:get("t", "s")
    local i = p:acquire()
    assert.same({true, p:breaker(i):name(), 7, n = 3}, table.pack(p:run(i, sbr, fn, 7)))
    assert.equal(1, brs[i]:stats().successes)
    assert.equal(1, sbr:stats().successes)
    i = p:acquire()
    sbr:allow()
    local ok, err = p:run(i, sbr, function() error("503", 0) end)
    assert.is_false(ok)
    assert.equal("503", err)
    assert.equal(1, brs[i]:stats().failures)
    assert.equal(1, sbr:stats().failures)
    assert.same({1, 1}, {p:ran()})
    i = p:acquire()
    assert.is_true((p:run(i, false, fn)))  -- no session
    for _, b in ipairs(brs) do assert.equal(0, b:stats().permits_out) end
  end)

  it("times fn when the breaker tracks slow calls", function()
    for _, seconds in ipairs{0.05, 0.2} do
      local clock = cb.manual_clock(0)
      local p = core.pool{bandit = {seed = 1, clock = clock}}
      local why
      local _, br = p:add{name = "slow", clock = clock, slow_call_ms = 100, slow_call_rate = 0.5,
                          min_calls = 2, window = 10, on_change = function(_, _, _, r) why = r end}
      for _ = 1, 2 do
        local i = p:acquire()
        p:run(i, false, function() clock:advance(seconds) end)
      end
      if seconds > 0.1 then  -- 200 ms calls are slow; 50 ms ones are not
        assert.equal("open", br:state())
        assert.equal("slow_call_rate", why)
      else
        assert.equal("closed", br:state())
      end
    end
  end)

  it("lets fn yield; a session removed meanwhile is not recorded on", function()
    local p, brs, clock = pool(nil, {"a"})
    local reg = cb.registry{clock = clock}
    local sbr = reg:get("t", "s")
    sbr:allow()
    local co = coroutine.wrap(function()
      return p:run(p:acquire(), sbr, function(name) coroutine.yield("waiting"); return name end)
    end)
    assert.equal("waiting", co())
    reg:remove("t", "s")
    assert.same({true, "a"}, {co()})
    assert.equal(1, brs[1]:stats().successes)
    assert.equal(0, brs[1]:stats().permits_out)
  end)

  it("records nothing when fn closes the pool, and returns fn's results", function()
    local p = pool(nil, {"a"})
    assert.same({true, "late"}, {p:run(p:acquire(), false, function() p:close(); return "late" end)})
    assert.equal("cbreaker.Pool (closed)", tostring(p))
  end)

  it("gives both permits back when fn is not callable, and says so", function()
    local p, brs, clock = pool(nil, {"a"})
    local reg = cb.registry{clock = clock, defaults = {failure_threshold = 1, reset_timeout = 1}}
    local sbr = reg:get("t", "s")
    sbr:failure()
    clock:advance(2)
    assert.is_true(sbr:allow())  -- half-open: its one probe permit
    assert.has_error(function() p:run(p:acquire(), sbr, 42) end,
      "bad argument #3 to 'call' (function expected, got number)")
    assert.equal(0, sbr:stats().permits_out)
    assert.equal(0, brs[1]:stats().permits_out)
    assert.equal(0, brs[1]:stats().failures)
  end)

  it("refuses a bad provider or session with a clear error", function()
    local p = pool(nil, {"a"})
    assert.has_error(function() p:run(2, false, fn) end, "bad argument #1 to 'run' (no provider 2 (the pool has 1))")
    assert.has_error(function() p:run(1, {}, fn) end,
      "bad argument #2 to 'run' (cbreaker.Breaker or false expected, got table)")
  end)

  it("runs fn without a session breaker closed since its permit (removed by a callback)", function()
    local p, brs = pool(nil, {"a"})
    local br = cb.new{}
    assert.is_true((br:allow()))
    br:close()
    assert.equal(1, p:acquire())
    local ok = p:run(1, br, function() return "ran" end)
    assert.is_true(ok)
    assert.equal(1, brs[1]:stats().successes)
    assert.equal(0, brs[1]:stats().permits_out)
  end)

  it("runs the callbacks after recording, and raises a callback's error last", function()
    local p, brs = pool(nil, {"a"})
    brs[1]:on_change(function(_, _, to) error("saw " .. to, 0) end)
    p:record(1, false)
    local i = p:acquire()
    assert.has_error(function() p:run(i, false, function() error("down", 0) end) end,
      "on_change callback failed: saw open")
    assert.equal("open", brs[1]:state())
    assert.equal(0, brs[1]:stats().permits_out)
  end)

  it("survives finalizers that close the pool or remove the session while it allocates", function()
    local fx = require("helpers.fixtures")
    fx.gc_at_every_allocation(function()
      for k = 1, 20 do
        local p = pool(nil, {"a"})
        local reg = cb.registry{}
        local sbr = reg:get("t", "s" .. k)
        fx.trap(function() p:close() end)
        fx.trap(function() reg:remove("t", "s" .. k) end)
        local ok, i = pcall(p.acquire, p)
        if ok and i then pcall(p.run, p, i, sbr, function(name, ...) return name, {...} end, 1, 2, 3) end
      end
    end)
  end)
end)

describe("cb.bandit under finalizers", function()
  it("survives finalizers that close it while it allocates", function()
    local b = cb.bandit{arms = {"a", "b", "c"}, seed = 1}
    local function bomb() setmetatable({}, {__gc = function() b:close() end}) end
    local pause = collectgarbage("setpause", 0)
    local stepmul = collectgarbage("setstepmul", 1000)
    for k = 1, 50 do
      bomb()
      pcall(b.stats, b)
      pcall(b.configure, b, {decay = 0.9})
      pcall(b.add_arm, b, "x" .. k)
      if tostring(b) == "cbreaker.Bandit (closed)" then break end
    end
    collectgarbage("setpause", pause)
    collectgarbage("setstepmul", stepmul)
    collectgarbage()
    assert.equal("cbreaker.Bandit (closed)", tostring(b))
  end)
end)
