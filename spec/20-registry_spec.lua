local cb = require("cbreaker")
local fx = require("helpers.fixtures")

local registry, fail, succeed = fx.registry, fx.fail, fx.succeed

describe("registry isolation (one session's errors never trip another's)", function()
  it("session A trips, session B still works", function()
    local reg = registry()
    local a = reg:get("tenant1", "session-A")
    for _ = 1, 10 do
      if a:allow() then a:failure() end
    end
    assert.equal("open", a:state())
    local b = reg:get("tenant1", "session-B")
    assert.is_true((b:allow()))
    b:success()
    assert.equal("closed", b:state())
    assert.equal("open", reg:get("tenant1", "session-A"):state())
  end)

  it("the same (tenant, key) is the same breaker; tenants do not share keys", function()
    local reg = registry()
    local x = reg:get("t1", "s")
    assert.equal(x, reg:get("t1", "s"))
    local y = reg:get("t2", "s")
    assert.are_not.equal(x, y)
    fail(x, 5)
    assert.equal("closed", y:state())
    assert.equal(2, reg:size())
    assert.equal(2, #reg)
    assert.equal("s", x:name())
  end)

  it("creates breakers from the defaults, or per-key options when given", function()
    local reg = registry{ defaults = { failure_threshold = 2 } }
    local d = reg:get("t", "default")
    fail(d, 2)
    assert.equal("open", d:state())
    local k = reg:get("t", "fragile", { failure_threshold = 1 })
    fail(k, 1)
    assert.equal("open", k:state())
    assert.equal(1, k:options().failure_threshold)
    assert.equal(2, k:options().success_threshold)  -- the rest from the defaults
    -- options only count at creation
    assert.equal(k, reg:get("t", "fragile", { failure_threshold = 9 }))
    assert.equal(1, k:options().failure_threshold)
  end)

  it("a dropped handle does not free its breaker", function()
    local reg = registry()
    do
      local br = reg:get("t", "k")
      fail(br, 5)
    end
    collectgarbage()
    collectgarbage()
    assert.equal("open", reg:get("t", "k"):state())
  end)

  it("peek finds without creating", function()
    local reg = registry()
    assert.is_nil(reg:peek("t", "k"))
    local br = reg:get("t", "k")
    assert.equal(br, reg:peek("t", "k"))
    assert.equal(1, reg:size())
  end)
end)

describe("registry keys", function()
  it("are binary-safe", function()
    local reg = registry()
    local a = reg:get("t", "k\0a")
    local b = reg:get("t", "k\0b")
    assert.are_not.equal(a, b)
    assert.equal(a, reg:get("t", "k\0a"))
    assert.are_not.equal(reg:get("ab", "c"), reg:get("a", "bc"))
    assert.are_not.equal(reg:get("\0", ""), reg:get("", "\0"))
    assert.equal(6, reg:size())
    local seen = {}
    for t, k in reg:entries() do seen[#seen + 1] = t .. "|" .. k end
    local want = { "\0|", "|\0", "a|bc", "ab|c", "t|k\0a", "t|k\0b" }
    table.sort(seen)
    table.sort(want)
    assert.same(want, seen)
  end)

  it("have a bounded length with a clear error", function()
    local reg = registry()
    assert.truthy(reg:get("t", string.rep("x", 1024)))
    assert.has_error(function() reg:get("t", string.rep("x", 1025)) end,
      "bad argument #2 to 'get' (key is 1025 bytes long, more than 1024)")
    assert.has_error(function() reg:get(string.rep("x", 2000), "k") end,
      "bad argument #1 to 'get' (tenant is 2000 bytes long, more than 1024)")
    assert.has_error(function() reg:get("t", {}) end)
    assert.has_error(function() reg:get("t") end)
    assert.equal(1, reg:size())
  end)

  it("no quadratic behaviour on many keys of one shape", function()
    local reg = registry{ max_entries = 0 }
    local n = fx.scaled(20000)
    for i = 1, n do reg:get("t", string.format("%08d", i)) end
    assert.equal(n, reg:size())
    for i = 1, n, 97 do
      assert.truthy(reg:peek("t", string.format("%08d", i)))
    end
  end)
end)

describe("registry lookup cache", function()
  it("long keys (not interned) and number keys find the same breaker", function()
    local reg = registry()
    local long = string.rep("k", 60)
    local a = reg:get("t", long)
    assert.equal(a, reg:get("t", string.rep("k", 30) .. string.rep("k", 30)))
    local n = reg:get("t", 123)
    assert.equal(n, reg:get("t", "123"))
    assert.equal(n, reg:get("t", 123))
    assert.equal(2, reg:size())
  end)

  it("a breaker moved to another slot leaves none behind for its removal", function()
    local reg = registry()
    local k1 = string.rep("k", 60)  -- long: two equal strings are two objects, two slots
    local k2 = string.rep("k", 30) .. string.rep("k", 30)
    local a = reg:get("t", k1)
    assert.equal(a, reg:get("t", k2))  -- the same breaker, now cached under k2
    assert.equal(a, reg:get("t", k1))  -- and back under k1
    assert.is_true(reg:remove("t", k2))
    local b = reg:get("t", k1)  -- neither slot still names the removed breaker
    assert.are_not.equal(a, b)
    assert.equal(b, reg:get("t", k2))
    assert.equal(1, reg:size())
    assert.has_error(function() a:state() end, "attempt to use a removed registry breaker")
  end)

  it("a removed key's next get makes a new breaker", function()
    local reg = registry()
    local t, k = "tenant", "session"
    local first = reg:get(t, k)
    assert.equal(first, reg:get(t, k))  -- cached
    fail(first, 5)
    reg:remove(t, k)
    local second = reg:get(t, k)
    assert.are_not.equal(first, second)
    assert.equal("closed", second:state())
    assert.has_error(function() first:state() end, "attempt to use a removed registry breaker")
  end)

  it("agrees with a plain table through random gets, removes, evictions and sweeps", function()
    local reg, clock = registry{ max_entries = 40, idle_ttl = 3, cleanup_every = 7 }
    local rng = 12345
    local function rand(n)
      rng = (rng * 1103515245 + 12345) % 2147483648
      return rng % n + 1
    end
    local last = {}  -- key -> the handle last returned
    for _ = 1, fx.scaled(20000, 2000) do
      local k = "s" .. rand(120)
      local op = rand(10)
      if op == 1 then
        reg:remove("t", k)
        if last[k] then assert.has_error(function() last[k]:state() end) end
        last[k] = nil
      elseif op == 2 then
        clock:advance(0.5)
      else
        local br = assert(reg:get("t", k))
        assert.equal(k, br:name())
        if last[k] and last[k] ~= br then  -- evicted or swept since: dead
          assert.has_error(function() last[k]:state() end)
        end
        last[k] = br
        if op == 3 then fail(br, 5) elseif op == 4 then br:reset() end
      end
    end
    local live = 0
    for k, br in pairs(last) do
      if pcall(br.state, br) then
        live = live + 1
        assert.equal(br, reg:peek("t", k))
      end
    end
    assert.equal(reg:size(), live)
  end)
end)

describe("registry hard cap", function()
  it("evicts the least recently used closed breaker", function()
    local reg, clock = registry{ max_entries = 3 }
    reg:get("t", "a"); clock:advance(1)
    reg:get("t", "b"); clock:advance(1)
    reg:get("t", "c"); clock:advance(1)
    reg:get("t", "a"); clock:advance(1)   -- a is the newest now
    local order = {}
    for _, k in reg:entries() do order[#order + 1] = k end
    assert.same({ "b", "c", "a" }, order)  -- least recently used first
    assert.truthy(reg:get("t", "d"))
    assert.is_nil(reg:peek("t", "b"))
    assert.truthy(reg:peek("t", "a") and reg:peek("t", "c") and reg:peek("t", "d"))
    assert.equal(1, reg:stats().evicted)
  end)

  it("never evicts open, half-open or forced-open breakers: nil, 'registry full'", function()
    local reg, clock = registry{ max_entries = 3 }
    local a, b, c = reg:get("t", "a"), reg:get("t", "b"), reg:get("t", "c")
    fail(a, 5)
    fail(b, 5)
    clock:advance(31)
    assert.equal("half-open", b:state())
    c:force_open()
    local br, err = reg:get("t", "d")
    assert.is_nil(br)
    assert.equal("registry full", err)
    assert.equal("half-open", a:state())
    assert.equal("half-open", b:state())
    assert.equal("forced-open", c:state())
    assert.equal(1, reg:stats().refused_full)
    c:reset()  -- closed again: evictable
    assert.truthy(reg:get("t", "d"))
    assert.is_nil(reg:peek("t", "c"))
  end)

  it("a flood of 100k new sessions keeps another tenant's tripped and half-open breakers", function()
    local reg, clock = registry{ max_entries = 1000 }
    local tripped = reg:get("victim", "tripped")
    local half = reg:get("victim", "half")
    fail(tripped, 5)
    fail(half, 5)
    clock:advance(31)
    succeed(half, 1)  -- one of the two successes that would close it
    assert.is_true((tripped:allow()))
    tripped:failure()  -- the probe fails: open again
    assert.equal("open", tripped:state())
    local refused = 0
    for i = 1, fx.scaled(100000, 5000) do
      local br = reg:get("attacker", "flood-" .. i)
      if br then br:allow(); br:success() else refused = refused + 1 end
    end
    assert.equal(0, refused)
    assert.equal(1000, reg:size())
    assert.equal(tripped, reg:peek("victim", "tripped"))
    assert.equal("open", tripped:state())
    assert.equal(half, reg:peek("victim", "half"))
    local st = half:stats()
    assert.equal("half-open", st.state)
    assert.equal(1, st.half_open_successes)
  end)
end)

describe("registry per-tenant cap", function()
  it("recycles the tenant's own least recently used closed breaker", function()
    local reg, clock = registry{ max_per_tenant = 2 }
    local x1 = reg:get("X", "1"); clock:advance(1)
    reg:get("X", "2"); clock:advance(1)
    local y1 = reg:get("Y", "1"); clock:advance(1)
    assert.truthy(reg:get("X", "3"))
    assert.is_nil(reg:peek("X", "1"))
    assert.has_error(function() x1:state() end, "attempt to use a removed registry breaker")
    assert.equal(y1, reg:peek("Y", "1"))
  end)

  it("refuses the tenant when all its breakers are tripped, never pushing out others", function()
    local reg = registry{ max_per_tenant = 2, max_entries = 5 }
    local others = {}
    others[1], others[2], others[3] = reg:get("Y", "y1"), reg:get("Y", "y2"), reg:get("Z", "z1")
    fail(reg:get("X", "1"), 5)
    fail(reg:get("X", "2"), 5)
    local br, err = reg:get("X", "3")
    assert.is_nil(br)
    assert.equal("tenant full", err)
    assert.equal(others[1], reg:peek("Y", "y1"))
    assert.equal(others[2], reg:peek("Y", "y2"))
    assert.equal(others[3], reg:peek("Z", "z1"))
    assert.equal(1, reg:stats().refused_tenant)
    assert.equal(3, reg:stats().tenants)
    assert.equal(0, reg:stats().evicted)
  end)

  it("an attacker's flood stays within its cap and others keep their breakers", function()
    local reg = registry{ max_per_tenant = 100, max_entries = 1000 }
    local mine = {}
    for i = 1, 50 do mine[i] = reg:get("good", "s" .. i); succeed(mine[i]) end
    for i = 1, fx.scaled(20000, 2000) do
      local br = reg:get("evil", "s" .. i)
      if br and i % 2 == 0 then fail(br, 5) end  -- trips half of them
    end
    for i = 1, 50 do assert.equal(mine[i], reg:peek("good", "s" .. i)) end
    assert.equal(150, reg:size())
  end)
end)

describe("registry cleanup", function()
  it("removes inactive sessions of 150, unused ones first", function()
    local reg, clock = registry{ idle_ttl = 60, unused_ttl = 5, cleanup_every = 0 }
    for i = 1, 150 do
      local br = reg:get("tenant1", "session-" .. i)
      if i <= 100 then succeed(br) end  -- 50 were created and never used
    end
    fail(reg:get("tenant1", "session-1"), 5)
    assert.equal(0, reg:cleanup())
    clock:advance(6)
    assert.equal(50, reg:cleanup())
    assert.is_true(reg:size() < 150)
    clock:advance(60)
    assert.equal(99, reg:cleanup())  -- the open one stays
    assert.equal(1, reg:size())
    assert.equal("half-open", reg:peek("tenant1", "session-1"):state())  -- 66 s after opening
    assert.equal(149, reg:stats().swept)
  end)

  it("a get on an old registry never sweeps the session it returns (last_used is a float)", function()
    -- a month after the registry's start a float's step is 0.25 s: rounded down, a
    -- session used now would look idle for part of it, past a small idle_ttl
    local reg, clock = registry{ idle_ttl = 0.01, cleanup_every = 1 }
    local long = ("x"):rep(50)  -- long strings: no lookup cache, the core's own get
    reg:get("t" .. long, "s" .. long)
    collectgarbage()
    clock:set(2.6e6 + 0.1)
    local br = reg:get("t" .. long, "s" .. long)
    assert.is_true((br:allow()))  -- alive: the sweep of its own get did not free it
    br:success()
    assert.equal(1, reg:size())
  end)

  it("a get keeps a session alive", function()
    local reg, clock = registry{ idle_ttl = 10, cleanup_every = 0 }
    local br = reg:get("t", "s")
    succeed(br)
    for _ = 1, 5 do
      clock:advance(9)
      assert.equal(br, reg:get("t", "s"))
      assert.equal(0, reg:cleanup())
    end
    clock:advance(10)
    assert.equal(1, reg:cleanup())
  end)

  it("runs a bounded sweep step every cleanup_every calls", function()
    local reg, clock = registry{ idle_ttl = 10, cleanup_every = 10, max_entries = 0 }
    for i = 1, 200 do reg:get("t", "s" .. i) end
    assert.equal(200, reg:size())
    local sweeps = reg:stats().sweeps
    assert.equal(20, sweeps)
    clock:advance(11)
    for _ = 1, 9 do reg:get("t", "hot") end
    assert.equal(201, reg:size())  -- the 10th call sweeps, not before
    reg:get("t", "hot")
    assert.equal(sweeps + 1, reg:stats().sweeps)
    local after = reg:size()
    assert.is_true(after < 201 and after > 1)  -- bounded: part of the idle ones
    for _ = 1, 200 do reg:get("t", "hot") end  -- at most 16 a step
    assert.equal(1, reg:size())
  end)

  it("cleanup_every = 0 never sweeps on its own", function()
    local reg, clock = registry{ idle_ttl = 1, cleanup_every = 0 }
    for i = 1, 50 do reg:get("t", "s" .. i) end
    clock:advance(5)
    for _ = 1, 500 do reg:get("t", "s1") end
    assert.equal(50, reg:size())
    assert.equal(49, reg:cleanup())
  end)

  it("leaves memory flat over 200k sessions created and dropped", function()
    local reg = registry{ max_entries = 1000 }
    local function churn(from, to)
      for i = from, to do
        local br = reg:get("t", "s" .. i)
        br:allow()
        br:success()
      end
    end
    churn(1, 20000)
    collectgarbage()
    collectgarbage()
    local before = collectgarbage("count")
    churn(20001, 20000 + fx.scaled(200000, 10000))
    collectgarbage()
    collectgarbage()
    local grown = collectgarbage("count") - before
    assert.equal(1000, reg:size())
    assert.is_true(grown < 256, "Lua memory grew by " .. grown .. " KB")
  end)
end)

describe("registry handles", function()
  it("a stale handle raises a clear error, whatever removed it", function()
    local reg, clock = registry{ max_entries = 2, idle_ttl = 5, cleanup_every = 0 }
    local removed = reg:get("t", "removed")
    assert.is_true(reg:remove("t", "removed"))
    assert.is_false(reg:remove("t", "removed"))
    assert.has_error(function() removed:allow() end, "attempt to use a removed registry breaker")
    local evicted = reg:get("t", "a")
    clock:advance(1)
    reg:get("t", "b")
    reg:get("t", "c")
    assert.has_error(function() evicted:success() end, "attempt to use a removed registry breaker")
    clock:advance(10)
    local swept = reg:peek("t", "b")
    reg:cleanup()
    assert.has_error(function() swept:state() end, "attempt to use a removed registry breaker")
    assert.matches("removed registry", tostring(swept))
    local last = reg:get("t", "last")
    reg:close()
    reg:close()  -- idempotent
    assert.has_error(function() last:allow() end, "attempt to use a removed registry breaker")
    assert.has_error(function() reg:get("t", "x") end, "attempt to use a closed registry")
    assert.equal("cbreaker.Registry (closed)", tostring(reg))
  end)

  it("a to-be-closed registry closes its handles", function()
    local br
    do
      local reg <close> = registry()
      br = reg:get("t", "k")
    end
    assert.has_error(function() br:allow() end, "attempt to use a removed registry breaker")
  end)

  it("a handle keeps its registry alive", function()
    local br = registry():get("t", "k")
    collectgarbage()
    collectgarbage()
    fail(br, 5)
    assert.equal("open", br:state())
  end)

  it("on_change works on a registry breaker, and stops with its removal", function()
    local reg = registry()
    local seen = {}
    local br = reg:get("t", "k")
    br:on_change(function(name, from, to) seen[#seen + 1] = name .. ":" .. from .. ">" .. to end)
    fail(br, 5)
    assert.same({ "k:closed>open" }, seen)
    reg:remove("t", "k")
    local again = reg:get("t", "k")
    fail(again, 5)
    assert.equal(1, #seen)
  end)

  it("entries() iterates a snapshot the loop may change", function()
    local reg = registry()
    for i = 1, 10 do reg:get("t", "s" .. i) end
    local n = 0
    for t, k, br in reg:entries() do
      n = n + 1
      assert.equal("t", t)
      assert.equal(k, br:name())
      reg:remove("t", "s10")  -- removed before it is reached: skipped
    end
    assert.equal(9, n)
  end)

  it("stats() reports the counters", function()
    local reg = registry()
    reg:get("t", "a")
    reg:get("t", "a")
    reg:get("u", "b")
    local st = reg:stats()
    assert.equal(2, st.size)
    assert.equal(2, st.tenants)
    assert.equal(2, st.created)
    assert.equal(1, st.hits)
    assert.equal(0, st.evicted)
    assert.is_true(st.buckets >= 16)
  end)
end)

describe("registry options", function()
  it("reject unknown names with the closest one", function()
    assert.has_error(function() cb.registry{ max_entrys = 1 } end,
      "cbreaker.registry: unknown option 'max_entrys' (did you mean 'max_entries'?)")
    assert.has_error(function() cb.registry{ defaults = { failure_treshold = 2 } } end,
      "cbreaker.registry: unknown option 'defaults.failure_treshold' (did you mean 'failure_threshold'?)")
    assert.has_error(function() registry():get("t", "k", { reset_timout = 1 }) end,
      "registry:get: unknown option 'reset_timout' (did you mean 'reset_timeout'?)")
  end)

  it("reject bad values, naming the option", function()
    assert.has_error(function() cb.registry{ idle_ttl = 0 } end,
      "cbreaker.registry: option 'idle_ttl' must be a number of seconds in [0.001, 1e9] (math.huge: never) (got 0)")
    assert.has_error(function() cb.registry{ max_entries = -1 } end)
    assert.has_error(function() cb.registry{ max_entries = 1.5 } end,
      "cbreaker.registry: option 'max_entries' must be a whole number >= 0 (0: no cap) (got 1.5)")
    assert.has_error(function() cb.registry{ cleanup_every = "often" } end,
      "cbreaker.registry: option 'cleanup_every' must be a whole number >= 0 (0: only on request) (got string)")
    assert.has_error(function() cb.registry{ clock = os.clock } end)
    assert.has_error(function() cb.registry{ defaults = 5 } end,
      "cbreaker.registry: option 'defaults' must be a table (got number)")
    assert.has_error(function() cb.registry{ defaults = { name = "x" } } end,
      "cbreaker.registry: option 'defaults.name' cannot be set here: a registry breaker is named by its key and uses the registry's clock")
    assert.has_error(function() cb.registry{ defaults = { failure_rate = 2 } } end,
      "cbreaker.registry: option 'defaults.failure_rate' must be a number in [0, 1] (got 2)")
    assert.has_error(function() cb.registry(5) end)
  end)

  it("idle_ttl may be infinite", function()
    local reg, clock = registry{ idle_ttl = math.huge }
    reg:get("t", "k")
    clock:advance(1e9)
    assert.equal(0, reg:cleanup())
  end)
end)

describe("registry per-tenant cap behind other tenants' older sessions", function()
  it("recycles the tenant's own oldest closed breaker, never its open ones", function()
    local clock = cb.manual_clock(1000)
    local reg = cb.registry{ max_per_tenant = 300, max_entries = 0, clock = clock, seed = 7 }
    for i = 1, 300 do  -- all older than B's
      reg:get("A", "a" .. i)
      clock:advance(0.001)
    end
    local b1 = reg:get("B", "b1")
    fail(b1, 5)
    local b2 = reg:get("B", "b2")
    b2:force_open()
    local b3 = reg:get("B", "b3")
    for i = 4, 300 do
      clock:advance(0.001)
      reg:get("B", "b" .. i)
    end
    clock:advance(1)
    local br, err = reg:get("B", "new1")
    assert.is_nil(err)
    assert.truthy(br)
    assert.is_nil(reg:peek("B", "b3"))  -- its oldest closed one
    assert.has_error(function() b3:state() end, "attempt to use a removed registry breaker")
    assert.truthy(reg:get("B", "new2"))
    assert.is_nil(reg:peek("B", "b4"))
    assert.equal(b1, reg:peek("B", "b1"))
    assert.equal("open", b1:state())
    assert.equal(b2, reg:peek("B", "b2"))
    assert.equal("forced-open", b2:state())
    for i = 1, 300 do assert.truthy(reg:peek("A", "a" .. i)) end
    assert.equal(2, reg:stats().evicted)

    for i = 5, 300 do fail(reg:get("B", "b" .. i), 5) end
    fail(reg:get("B", "new1"), 5)
    fail(reg:get("B", "new2"), 5)
    for i = 3, 12 do  -- each refusal looks at a bounded number of B's own
      br, err = reg:get("B", "new" .. i)
      assert.is_nil(br)
      assert.equal("tenant full", err)
    end
    assert.equal(600, reg:size())
    assert.equal(b1, reg:peek("B", "b1"))
    assert.equal(0, reg:stats().refused_full)
    assert.equal(10, reg:stats().refused_tenant)
  end)
end)

describe("registry memory: no Lua object per entry unless Lua holds its breaker", function()
  it("dropped boxes are collected; the entries and their state stay", function()
    local reg = registry{ max_entries = 0, defaults = { failure_threshold = 1 } }
    local N = 20000
    collectgarbage("collect")
    local before = collectgarbage("count")
    for i = 1, N do
      local br = reg:get("t", "s" .. i)
      if i % 2 == 0 then br:failure() end
    end
    collectgarbage("collect")
    collectgarbage("collect")
    local per = (collectgarbage("count") - before) * 1024 / N
    assert.equal(N, reg:size())
    -- a box kept per entry would cost over 250 bytes; what is left is the
    -- room tables keep after boxes the collector took
    assert.is_true(per < 100, ("%.1f bytes of Lua heap a session"):format(per))
    assert.equal("open", reg:get("t", "s2"):state())
    assert.equal("closed", reg:get("t", "s3"):state())
  end)

  it("a box held is handed out again; a new one once it was collected", function()
    local reg = registry{ max_entries = 0 }
    local held = reg:get("t", "k")
    for i = 1, 3000 do reg:get("t", "other" .. i) end  -- pushes k out of the lookup cache
    collectgarbage("collect")
    assert.equal(held, reg:get("t", "k"))
    assert.equal(held, reg:peek("t", "k"))
    held:failure()
    held = nil
    for i = 1, 5000 do reg:get("t", "again" .. i) end
    collectgarbage("collect")
    collectgarbage("collect")
    local again = reg:get("t", "k")
    assert.equal("k", again:name())
    assert.equal(1, again:stats().failures)  -- a new box, the same breaker
  end)

  it("on_change and classify outlive the box they were set on", function()
    local reg, clock = registry{ max_entries = 0,
                                 defaults = { failure_threshold = 1, reset_timeout = 1 } }
    local seen = {}
    do
      local br = reg:get("t", "k")
      br:on_change(function(name, from, to) seen[#seen + 1] = name .. ":" .. from .. ">" .. to end)
      br:configure{ classify = function(ok, v) return v == "bad" and "failure" or "success" end }
    end
    for i = 1, 3000 do reg:get("t", "other" .. i) end
    collectgarbage("collect")
    collectgarbage("collect")
    local br = reg:get("t", "k")
    br:call(function() return "bad" end)  -- a failure only by the classifier
    assert.same({ "k:closed>open" }, seen)
    clock:advance(2)
    assert.equal("half-open", reg:get("t", "k"):state())
    assert.same({ "k:closed>open", "k:open>half-open" }, seen)
  end)

  it("an evicted or removed breaker's held box says so, whichever box Lua kept", function()
    local reg = registry{ max_entries = 2 }
    local a = reg:get("t", "a")
    reg:get("t", "b")
    reg:get("t", "c")  -- evicts a, the least recently used
    assert.has_error(function() a:allow() end, "attempt to use a removed registry breaker")
    local b = reg:get("t", "b")
    reg:remove("t", "b")
    assert.has_error(function() b:allow() end, "attempt to use a removed registry breaker")
    reg:close()
    assert.has_error(function() reg:get("t", "c") end, "attempt to use a closed registry")
  end)

  it("a box a finalizer brings back learns its entry was removed", function()
    local reg = registry{ max_entries = 0 }
    local kept
    for round = 1, fx.scaled(20, 3) do
      do
        local br = reg:get("t", "k" .. round)
        setmetatable({}, { __gc = function()
          reg:remove("t", "k" .. round)  -- the box is off the weak table by now
          kept = br
          local ok, err = pcall(br.allow, br)
          assert(not ok and err:find("removed registry", 1, true), err)
        end })
      end
      for i = 1, 5000 do reg:get("t", "x" .. i) end  -- out of the lookup cache
      collectgarbage("collect")
      collectgarbage("collect")
      assert.is_not_nil(kept)
      assert.has_error(function() kept:allow() end)
      kept = nil
    end
  end)
end)

describe("registry memory and Lua's collector", function()
  it("stats().bytes counts the sessions' C memory and gives it back", function()
    local reg = registry{ max_entries = 0 }
    local empty = reg:stats().bytes
    for i = 1, 500 do reg:get("t", ("k"):rep(100) .. (i)) end
    local grown = reg:stats().bytes - empty
    assert.is_true(grown >= 500 * 100, "each session counts its key: " .. grown)
    for i = 1, 500 do reg:remove("t", ("k"):rep(100) .. (i)) end
    assert.is_true(reg:stats().bytes - empty < grown / 4, "given back")
  end)

  -- New sessions report their C memory as collector steps (about a step
  -- per KB): never when the collector is stopped.
  it("a stopped collector stays stopped while sessions are made", function()
    local reg = registry{ max_entries = 0 }
    collectgarbage("collect")
    local weak = setmetatable({}, { __mode = "v" })
    collectgarbage("stop")
    weak[1] = {}  -- garbage: only a collection takes it
    for i = 1, 5000 do reg:get("t", ("k"):rep(200) .. (i)) end  -- about 2 MB in C
    local running, kept = collectgarbage("isrunning"), weak[1] ~= nil
    collectgarbage("restart")
    assert.is_false(running)
    assert.is_true(kept, "nothing was collected")
  end)

  it("a finalizer that closes the registry mid-run gets a clean error", function()
    local reg = registry{ max_entries = 0 }
    collectgarbage("collect")
    setmetatable({}, { __gc = function() reg:close() end })  -- garbage at once
    local ok, err = pcall(function()
      for i = 1, 50000 do reg:get("t", ("k"):rep(200) .. (i)) end
    end)
    assert.is_false(ok, "the finalizer ran: new sessions pace the collector")
    assert.matches("attempt to use a closed registry", err)
  end)

  it("sessions made inside a finalizer", function()
    local reg = registry{ max_entries = 0 }
    local made = 0
    local function arm()
      setmetatable({}, { __gc = function()
        for i = 1, 20 do reg:get("gc", ("k"):rep(200) .. (made + i)) end
        made = made + 20
        if made < 200 then arm() end
      end })
    end
    arm()
    for i = 1, 20000 do reg:get("t", ("k"):rep(200) .. (i)) end
    collectgarbage("collect")
    assert.is_true(made >= 20)
    assert.equal(20000 + made, reg:size())
  end)
end)
