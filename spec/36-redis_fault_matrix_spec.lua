-- The fault matrix, beyond spec 32 (unreachable, kill -9 and restart, a
-- hung server in shared mode, a flushed script): a full memory (writes
-- refused with OOM), connections killed from the server side (CLIENT KILL),
-- a hung server in broadcast mode, a restart with an empty dataset seen by
-- a newcomer.  For each: no call slower than timeout_ms plus a margin,
-- breakers keep working locally, state reconciled afterwards.
-- docs/faults.md has the table.
local helper = require("helpers.redis")

local TIMEOUT_MS, SLACK_MS, MARGIN_MS = helper.TIMEOUT_MS, helper.SLACK_MS, helper.MARGIN_MS

describe("#redis fault matrix", function()
  local server, clock, slowest
  -- Every test starts from a live, empty server: restarted after each.
  local store, new_breaker = helper.fixture({ clock = 0, store = helper.FAULT_STORE,
    breaker = { reset_timeout = 5 }, restart = true }, function(s, _, c) server, clock = s, c end)

  local function breaker(s, name, reset_timeout)
    return new_breaker(s, name, { reset_timeout = reset_timeout })
  end

  -- Runs fn and keeps the slowest duration (ms, real time).
  local function timed(fn, ...)
    local ms = helper.timed(fn, ...)
    if ms > slowest then slowest = ms end
    return ms
  end

  -- Traffic on every breaker, polls on every store: one step of a run.
  local function traffic(brs, list, n)
    for i = 1, n do
      for _, b in ipairs(brs) do
        timed(function()
          if b:allow() then
            if i % 3 == 0 then b:failure() else b:success() end
          end
        end)
      end
      for _, s in ipairs(list) do timed(s.poll, s) end
    end
  end

  local function reconnect(list, cond)
    return helper.reconnect(list, clock, 8, cond, function(s) timed(s.poll, s) end)
  end

  local function bounded()
    if os.getenv("CB_FAULT_REPORT") then  -- the figures of docs/faults.md
      io.stderr:write(("slowest call %.1f ms\n"):format(slowest))
    end
    assert.is_true(slowest < TIMEOUT_MS + MARGIN_MS, ("a call took %.1f ms"):format(slowest))
  end

  before_each(function() slowest = 0 end)

  it("maxmemory: writes refused with OOM, then sent again once memory is back", function()
    local a, b = store("A"), store("B")
    local ba, bb = breaker(a), breaker(b)
    local other = breaker(b, "other")
    server:cli("config set maxmemory-policy noeviction")
    server:cli("config set maxmemory 1")  -- every write is refused now
    assert.matches("OOM", server:cli("set probe 1"))
    ba:force_open()
    traffic({ ba, other }, { a, b }, 100)
    for _ = 1, 100 do  -- the refusal comes back in a later poll
      if a:health().last_error:find("OOM") then break end
      a:wait(5)
      traffic({ ba, other }, { a, b }, 1)
    end
    assert.equals("forced-open", ba:state())  -- local state holds whatever Redis says
    assert.matches("OOM", a:health().last_error)
    assert.equals("closed", bb:state())     -- nothing reached B
    server:cli("config set maxmemory 0")
    clock:advance(8)
    assert.is_true(reconnect({ a, b }, function() return bb:state() == "forced-open" end))
    assert.matches('"forcedOpen":true', server:cli("hget circuit_breaker:states svc"))
    bounded()
  end)

  it("maxmemory in shared mode: records fall back to local counting", function()
    local a = store("A", { mode = "shared" })
    local ba = breaker(a)
    ba:success()
    server:cli("config set maxmemory-policy noeviction")
    server:cli("config set maxmemory 1")
    for _ = 1, 5 do timed(ba.failure, ba) end
    assert.equals("open", ba:state())  -- the fleet could not count: this instance did
    server:cli("config set maxmemory 0")
    clock:advance(8)
    assert.is_true(reconnect({ a }))
    bounded()
  end)

  it("CLIENT KILL of the subscriptions: missed messages reconciled on reconnect", function()
    local a, b = store("A"), store("B")
    local ba, bb = breaker(a), breaker(b)
    traffic({ ba, bb }, { a, b }, 20)
    assert.is_true(tonumber(server:cli("client kill type pubsub")) >= 2)
    traffic({ ba, bb }, { a, b }, 20)  -- both notice the closed subscription
    assert.is_false(a:health().connected)
    bb:force_open()  -- cannot be published: B is down too, sent on reconnect
    traffic({ ba }, { a }, 20)
    clock:advance(8)
    assert.is_true(reconnect({ b, a }, function() return ba:state() == "forced-open" end))
    bb:reset()
    assert.is_true(helper.eventually(function() return ba:state() == "closed" end, { a }))
    bounded()
  end)

  it("CLIENT KILL of the command connections: the next write notices, nothing lost", function()
    local a, b = store("A"), store("B")
    local ba, bb = breaker(a), breaker(b)
    traffic({ ba, bb }, { a, b }, 20)
    assert.is_true(tonumber(server:cli("client kill type normal")) >= 2)
    ba:force_open()  -- written to a dead socket, or found dead first: sent again
    traffic({ ba, bb }, { a, b }, 50)
    clock:advance(8)
    assert.is_true(reconnect({ a, b }, function() return bb:state() == "forced-open" end))
    assert.is_true(a:health().reconnects >= 1)
    assert.matches('"forcedOpen":true', server:cli("hget circuit_breaker:states svc"))
    bounded()
  end)

  it("a hung server in broadcast mode blocks no call; peers converge once it resumes", function()
    local a, b = store("A"), store("B")
    local ba, bb = breaker(a), breaker(b)
    server:pause()
    local ok, err = pcall(function()
      ba:force_open()
      for i = 1, 200 do
        local ms = timed(function()
          bb:allow(); bb:success()
          if i % 50 == 0 then ba:reset(); ba:force_open() end
          a:poll(); b:poll()
        end)
        assert.is_true(ms < 20 + SLACK_MS, "a call took " .. ms .. " ms with the server hung")
      end
      assert.equals("forced-open", ba:state())
    end)
    server:resume()
    assert(ok, err)
    assert.is_true(reconnect({ a, b }, function() return bb:state() == "forced-open" end))
    bounded()
  end)

  it("a restart with an empty dataset: own states written again, a newcomer imports them", function()
    local a = store("A")
    local ba = breaker(a)
    local slow = breaker(a, "slow", 600)
    ba:force_open()
    for _ = 1, 5 do slow:failure() end
    assert.equals("open", slow:state())
    traffic({}, { a }, 5)
    server:kill()
    server:restart()  -- no persistence: an empty dataset
    assert.equals("", server:cli("hget circuit_breaker:states svc"))
    traffic({ ba, slow }, { a }, 10)
    clock:advance(8)
    assert.is_true(reconnect({ a }))
    assert.matches('"forcedOpen":true', server:cli("hget circuit_breaker:states svc"))
    local c = store("C")
    assert.equals("forced-open", breaker(c):state())
    assert.equals("open", breaker(c, "slow", 600):state())
    bounded()
  end)
end)
