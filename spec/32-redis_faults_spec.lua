-- Redis unreachable, killed, restarted, hung: breakers keep working on local
-- state, no call blocks longer than timeout_ms, reconnects back off, state
-- is reconciled afterwards.
local helper = require("helpers.redis")

local TIMEOUT_MS, SLACK_MS, MARGIN_MS = helper.TIMEOUT_MS, helper.SLACK_MS, helper.MARGIN_MS
local timed = helper.timed

describe("#redis faults", function()
  local server, clock
  -- Every test starts from a live, empty server: restarted after each.
  local store, breaker = helper.fixture({ clock = 0, store = helper.FAULT_STORE, restart = true },
    function(s, _, c) server, clock = s, c end)

  local function reconnect(list, cond)
    return helper.reconnect(list, clock, 8, cond)
  end

  it("starts without Redis, works locally, connects after the back-off", function()
    server:kill()
    local a = store("A")
    local h = a:health()
    assert.is_false(h.connected)
    assert.matches("connect 127.0.0.1:%d+: .*refused", h.last_error)
    assert.equals(1, h.backoff)
    local ba = breaker(a)
    for _ = 1, 5 do ba:failure() end
    assert.equals("open", ba:state())  -- local state works
    server:restart()
    local n, err = a:poll()
    assert.is_nil(n)
    assert.matches("not connected", err)
    assert.equals(1, a:health().failures)  -- no attempt inside the back-off
    clock:advance(1)
    assert.is_true(reconnect({ a }))
    assert.equals(0, a:health().reconnects)
    -- reconciled: our open state reached Redis, a new peer imports it
    local b = store("B")
    assert.equals("open", breaker(b):state())
  end)

  it("backs off exponentially while Redis stays down", function()
    local a = store("A")
    local ba = breaker(a)
    server:kill()
    ba:force_open()  -- the write finds the server gone
    a:poll()
    assert.is_false(a:health().connected)
    local failures = a:health().failures
    for _, wait in ipairs({ 1, 2, 4, 8, 8 }) do
      assert.equals(wait, a:health().backoff)
      clock:advance(wait - 0.01)
      assert.is_nil(a:poll())
      assert.equals(failures, a:health().failures)  -- not yet
      clock:advance(0.01)
      assert.is_nil(a:poll())
      failures = failures + 1
      assert.equals(failures, a:health().failures)  -- one more attempt, failed
    end
  end)

  it("survives kill -9 and restart mid-run: bounded calls, state reconciled", function()
    local a, b = store("A"), store("B")
    local ba, bb = breaker(a), breaker(b)
    local other = breaker(b, "other")
    local slowest = 0
    local function step(i)
      local ms = timed(function()
        ba:allow(); ba:success()
        bb:allow(); bb:failure(); bb:success()
        if i % 97 == 0 and i < 600 then ba:force_open(); ba:reset() end
        a:poll(); b:poll()
      end)
      if ms > slowest then slowest = ms end
    end
    for i = 1, 300 do step(i) end
    server:kill()
    for i = 301, 600 do step(i) end
    ba:force_open()  -- while Redis is down: must reach B once it is back
    for _ = 1, 5 do other:failure() end
    assert.is_false(a:health().connected)
    server:restart()
    for i = 601, 900 do step(i) end
    assert.is_true(slowest < TIMEOUT_MS + MARGIN_MS, "a call took " .. slowest .. " ms")
    clock:advance(8)
    assert.is_true(reconnect({ a, b }, function() return bb:state() == "forced-open" end))
    assert.is_true(a:health().reconnects >= 1 and b:health().reconnects >= 1)
    assert.matches('"forcedOpen":true', server:cli("hget circuit_breaker:states svc"))
    assert.matches('"state":"open"', server:cli("hget circuit_breaker:states other"))
    -- and a reset made while Redis was down clears the peer afterwards
    server:kill()
    ba:reset()
    a:poll(); b:poll()
    server:restart()
    clock:advance(16)
    assert.is_true(reconnect({ a }))  -- A publishes `recovered`: B is not listening
    assert.equals("forced-open", bb:state())
    assert.is_true(reconnect({ b }))  -- the boot hash no longer has it: B drops it
    assert.equals("closed", bb:state())
  end)

  it("sends again a `recovered` whose server died before answering", function()
    local a, b = store("A"), store("B")
    local ba, bb = breaker(a), breaker(b)
    ba:force_open()
    assert.is_true(helper.eventually(function() return bb:state() == "forced-open" end, { b }))
    local saved = server:cli("hget circuit_breaker:states svc")
    assert.matches('"forcedOpen":true', saved)
    server:pause()  -- the write lands in the socket; no reply will come
    ba:reset()
    server:kill()   -- dies with the reset unexecuted
    a:poll(); b:poll()
    assert.is_false(a:health().connected)
    server:restart()  -- as a persistent server would come back:
    server:cli("hset circuit_breaker:states svc '" .. saved .. "'")
    clock:advance(1)
    assert.is_true(reconnect({ a }))  -- A sends its `recovered` again
    assert.equals("", server:cli("hget circuit_breaker:states svc"))
    assert.is_true(reconnect({ b }))
    assert.equals("closed", bb:state())
  end)

  it("a hung server costs one timeout, then nothing until the back-off", function()
    local a = store("A", { mode = "shared" })
    local ba = breaker(a)
    ba:success()
    assert.is_true(a:health().connected)
    server:pause()
    local ok, err = pcall(function()
      local first = timed(ba.success, ba)
      assert.is_true(first >= TIMEOUT_MS * 0.9 and first < TIMEOUT_MS + MARGIN_MS,
        "first call took " .. first .. " ms")
      assert.is_false(a:health().connected)
      assert.matches("no reply within 100 ms", a:health().last_error)
      for _ = 1, 200 do  -- inside the back-off: no I/O at all
        local ms = timed(function() ba:allow(); ba:failure() end)
        assert.is_true(ms < 20 + SLACK_MS, "call took " .. ms .. " ms during the back-off")
      end
      assert.equals("open", ba:state())  -- counted locally meanwhile
      clock:advance(1)
      local again = timed(a.poll, a)  -- one attempt, bounded
      assert.is_true(again < TIMEOUT_MS + MARGIN_MS, "reconnect took " .. again .. " ms")
    end)
    server:resume()
    assert(ok, err)
    clock:advance(2)
    assert.is_true(reconnect({ a }))
  end)

  it("survives the script being flushed", function()
    local a = store("A", { mode = "shared" })
    local ba = breaker(a)
    server:cli("script flush")
    ba:failure()  -- NOSCRIPT: dropped, reloaded on reconnect
    assert.is_false(a:health().connected)
    assert.matches("NOSCRIPT", a:health().last_error)
    clock:advance(1)
    assert.is_true(reconnect({ a }))
    ba:failure()
    assert.equals("1", server:cli("get circuit_breaker:svc:counter"))
  end)
end)
