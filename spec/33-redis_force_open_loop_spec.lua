-- The cross-task force-open loop as a regression test, and the store across
-- two OS processes.  The loop: a transient probe failure force-opened a
-- provider on two tasks; each task's sentinel then saw open breakers, called
-- the provider degraded and forced it open again, and peers re-imported the
-- state faster than a reset on one task could clear it.  A reset must reach
-- every peer ("recovered") and clear the boot entry.
local cb = require("cbreaker")
local helper = require("helpers.redis")

-- The pub/sub manager's health sentinel, its recovery path and override
-- included:
-- a failed probe force-opens; a healthy probe after down/degraded resets;
-- a healthy probe while the breaker is open overrides to degraded and
-- force-opens again (the override that fed the 11-hour loop).
local function sentinel(br)
  local s = { status = "healthy", force_opens = 0 }
  function s.probe(healthy)
    if not healthy then
      s.status = "down"
      br:force_open()
      s.force_opens = s.force_opens + 1
    elseif s.status == "down" or s.status == "degraded" then
      br:reset()  -- the recovery path: healthy again after down/degraded
      s.status = "healthy"
    elseif br:state() ~= "closed" then
      s.status = "degraded"  -- "probe says healthy but circuit breakers are open"
      br:force_open()
      s.force_opens = s.force_opens + 1
    end
  end
  return s
end

describe("#redis force-open loop regression", function()
  local server, stores

  helper.use_server(function(s, list) server, stores = s, list end)

  local function instance(id, clock)
    local s = cb.redis{ url = server:url(), id = id, clock = clock }
    stores[#stores + 1] = s
    local br = cb.new{ name = "deepseek::deepseek-chat", clock = clock, store = s }
    return { store = s, br = br, sentinel = sentinel(br) }
  end

  -- `schedule[i]` = {a_healthy, b_healthy, order} for cycle i.
  local function run(schedule, cycles)
    local clock = cb.manual_clock(0)
    local a, b = instance("task-a", clock), instance("task-b", clock)
    local all = { a.store, b.store }
    local last_bad = 0
    for i = 1, cycles do
      local plan = schedule[i] or { true, true, "ab" }
      if not (plan[1] and plan[2]) then last_bad = i end
      local first, second = a, b
      if plan[3] == "ba" then first, second = b, a end
      first.sentinel.probe(plan[first == a and 1 or 2])
      if plan[4] ~= "racy" then helper.drain(all) end  -- racy: B probes before A's message lands
      second.sentinel.probe(plan[second == a and 1 or 2])
      helper.drain(all)
      clock:advance(60)  -- one probe cycle a minute
    end
    return a, b, last_bad
  end

  local schedules = {
    ["both fail, then both recover"] = { { false, false }, { false, false } },
    ["A recovers first, B's probe still fails once"] = { { false, false }, { true, false } },
    ["B probes first after the outage"] = { { false, false }, { true, true, "ba" } },
    ["racing probes"] = { { false, false }, { true, false, "ab", "racy" }, { true, true, "ba", "racy" } },
    ["only A saw the failure"] = { { false, true } },
  }

  for label, schedule in pairs(schedules) do
    it("ends closed within a few cycles and stays closed: " .. label, function()
      local a, b, last_bad = run(schedule, 6)
      assert.equals("closed", a.br:state())
      assert.equals("closed", b.br:state())
      local opens_a, opens_b = a.sentinel.force_opens, b.sentinel.force_opens
      local pub_a, pub_b = a.store:health().published, b.store:health().published
      -- 30 more healthy cycles: nothing moves any more
      local clock = cb.manual_clock(0)
      for _ = 1, 30 do
        a.sentinel.probe(true)
        b.sentinel.probe(true)
        helper.drain({ a.store, b.store })
        clock:advance(60)
      end
      assert.equals("closed", a.br:state())
      assert.equals("closed", b.br:state())
      assert.equals(opens_a, a.sentinel.force_opens)
      assert.equals(opens_b, b.sentinel.force_opens)
      assert.equals(pub_a, a.store:health().published)
      assert.equals(pub_b, b.store:health().published)
      assert.equals("", server:cli("hget circuit_breaker:states deepseek::deepseek-chat"))
      assert.is_true(last_bad <= 3)
    end)
  end

  it("a restarted task does not re-import a state that was reset", function()
    local clock = cb.manual_clock(0)
    local a, b = instance("task-a", clock), instance("task-b", clock)
    a.sentinel.probe(false)
    b.sentinel.probe(false)
    helper.drain({ a.store, b.store })
    a.sentinel.probe(true)  -- A resets: recovered, boot entry deleted
    helper.drain({ a.store, b.store })
    assert.equals("closed", b.br:state())
    local c = instance("task-c", clock)  -- a cold start
    assert.equals("closed", c.br:state())
  end)
end)

describe("#redis across processes", function()
  local server
  helper.use_server(function(s) server = s end)

  it("shares force-open and recovery with another OS process", function()
    local host = require("helpers.fixtures").host
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
      local cb = require("cbreaker")
      local s = cb.redis{ url = arg[1], id = "child" }
      local br = cb.new{ name = "shared-svc", store = s }
      br:force_open()
      io.write("child forced-open\n")
      local state
      for _ = 1, 500 do  -- at most ~5 s, then report whatever it is
        s:wait(10)
        s:poll()
        state = br:state()
        if state == "closed" then break end
      end
      io.write("child ", state, "\n")
    ]])
    f:close()
    local s = cb.redis{ url = server:url(), id = "parent" }
    local br = cb.new{ name = "shared-svc", store = s }
    local child = io.popen(("'%s' '%s' '%s' 2>&1"):format(host, script, server:url()))
    local ok = helper.eventually(function() return br:state() == "forced-open" end, { s }, 250)
    br:reset()  -- recovered: the child clears its force-open
    local out = child:read("a")
    child:close()
    os.remove(script)
    s:close()
    assert.is_true(ok, "the parent never saw the child's force-open")
    assert.equals("child forced-open\nchild closed\n", out)
  end)
end)
