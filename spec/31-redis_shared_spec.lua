-- cb.redis{mode = "shared"}: the fleet's counts and transitions live in
-- Redis, computed by the store's script on Redis's own clock.
local cb = require("cbreaker")
local fx = require("helpers.fixtures")
local helper = require("helpers.redis")

describe("#redis shared mode", function()
  local server
  local store, new_breaker = helper.fixture({ store = { mode = "shared", timeout_ms = 200 },
    breaker = { reset_timeout = 10 } }, function(s) server = s end)

  -- Each instance has its own clock, far apart: the fleet must not care.
  local function breaker(s, t0, extra)
    local clock = cb.manual_clock(t0)
    return new_breaker(s, nil, fx.with({ clock = clock }, extra)), clock
  end

  it("counts failures fleet-wide and trips the fleet together", function()
    local a, b = store("A"), store("B")
    local ba = breaker(a, 1000)
    local bb = breaker(b, 5e6)
    for _ = 1, 3 do ba:failure() end
    bb:failure()
    assert.equals("4", server:cli("get circuit_breaker:svc:counter"))
    assert.equals("closed", ba:state())
    bb:failure()  -- the fifth failure of the fleet, the second of B
    assert.equals("open", bb:state())
    assert.is_true(helper.eventually(function() return ba:state() == "open" end, { a }))
    assert.equals("open", server:cli("get circuit_breaker:svc:state"))
    -- the deadline is Redis's TIME plus the timeout, not a client's clock
    local t = server:cli("time")
    local secs = tonumber(t:match("^(%d+)"))
    local until_ms = tonumber(server:cli("get circuit_breaker:svc:open_until"))
    assert.is_true(math.abs(until_ms - (secs * 1000 + 10000)) < 2000)
    for _, k in ipairs({ "state", "opened_at", "open_until" }) do
      assert.is_true(tonumber(server:cli("pttl circuit_breaker:svc:" .. k)) > 0)
    end
    assert.is_true(tonumber(server:cli("pttl circuit_breaker:states")) > 0)
  end)

  it("a success anywhere resets the fleet's consecutive count", function()
    local a, b = store("A"), store("B")
    local ba, bb = breaker(a, 0), breaker(b, 0)
    for _ = 1, 3 do ba:failure() end
    bb:success()
    assert.equals("", server:cli("get circuit_breaker:svc:counter"))
    ba:failure()
    assert.equals("closed", ba:state())
    assert.equals("1", server:cli("get circuit_breaker:svc:counter"))
    assert.is_true(tonumber(server:cli("pttl circuit_breaker:svc:counter")) > 0)
  end)

  it("admits one probe fleet-wide through an expiring lease", function()
    local a, b = store("A"), store("B")
    local ba, ca = breaker(a, 0, { probe_timeout = 3 })
    local bb, cbk = breaker(b, 0, { probe_timeout = 3 })
    for _ = 1, 5 do ba:failure() end
    assert.is_true(helper.eventually(function() return bb:state() == "open" end, { b }))
    ca:advance(11); cbk:advance(11)
    -- the fleet's timeout is over (opened_at too: a later one is a peer's open)
    server:cli("mset circuit_breaker:svc:open_until 0 circuit_breaker:svc:opened_at 0")
    assert.is_true(ba:allow())
    local pttl = tonumber(server:cli("pttl circuit_breaker:svc:lease"))
    assert.is_true(pttl > 0 and pttl <= 3000)
    assert.equals("A", server:cli("get circuit_breaker:svc:lease"))
    local ok, why = bb:allow()
    assert.is_false(ok)
    assert.equals("half-open", why)
    ba:success()  -- 1 of 2: the lease is handed back
    assert.equals("half-open", bb:state())
    assert.is_true(bb:allow())  -- now B holds it
    assert.is_false(ba:allow())
    bb:success()
    assert.equals("closed", bb:state())
    assert.is_true(helper.eventually(function() return ba:state() == "closed" end, { a }))
    assert.equals("closed", server:cli("get circuit_breaker:svc:state"))
    assert.equals("", server:cli("hget circuit_breaker:states svc"))
  end)

  it("a failed probe re-opens the whole fleet", function()
    local a, b = store("A"), store("B")
    local ba, ca = breaker(a, 0)
    local bb, cbk = breaker(b, 0)
    for _ = 1, 5 do bb:failure() end
    assert.is_true(helper.eventually(function() return ba:state() == "open" end, { a }))
    ca:advance(11); cbk:advance(11)
    server:cli("mset circuit_breaker:svc:open_until 0 circuit_breaker:svc:opened_at 0")
    assert.is_true(ba:allow())
    ba:failure()
    assert.equals("open", ba:state())
    assert.equals("open", server:cli("get circuit_breaker:svc:state"))
    assert.equals("half-open", bb:state())
    assert.is_true(helper.eventually(function() return bb:state() == "open" end, { b }))
  end)

  it("quorum: one bad node protects itself but does not open the fleet", function()
    local a, b, c = store("A", { quorum = 2 }), store("B", { quorum = 2 }), store("C", { quorum = 2 })
    local ba, bb, bc = breaker(a, 0), breaker(b, 0), breaker(c, 0)
    for _ = 1, 5 do ba:failure() end
    assert.equals("open", ba:state())  -- A protects itself
    helper.drain({ b, c })
    assert.equals("closed", bb:state())
    assert.equals("closed", bc:state())
    assert.equals("closed", server:cli("get circuit_breaker:svc:state") == "" and "closed" or "?")
    for _ = 1, 5 do bb:failure() end  -- a second instance: the fleet opens
    assert.equals("open", server:cli("get circuit_breaker:svc:state"))
    assert.is_true(helper.eventually(function() return bc:state() == "open" end, { c }))
    assert.is_true(tonumber(server:cli("pttl circuit_breaker:svc:state")) > 0)
  end)

  it("force_open and reset act on the fleet", function()
    local a, b = store("A"), store("B")
    local ba, bb = breaker(a, 0), breaker(b, 0)
    ba:force_open()
    assert.equals("open", server:cli("get circuit_breaker:svc:state"))
    assert.equals("1", server:cli("get circuit_breaker:svc:forced"))
    bb:success()  -- the fleet answers: forced open
    assert.equals("forced-open", bb:state())
    bb:reset()
    assert.equals("", server:cli("get circuit_breaker:svc:state"))
    assert.is_true(helper.eventually(function() return ba:state() == "closed" end, { a }))
  end)

  it("a Retry-After on one instance pauses the fleet for as long", function()
    local a, b = store("A"), store("B")
    local ba = breaker(a, 0)
    local bb = breaker(b, 0)
    ba:record("failure", nil, 120)
    assert.equals("open", ba:state())
    assert.equals("open", server:cli("get circuit_breaker:svc:state"))
    assert.is_true(helper.eventually(function() return bb:state() == "open" end, { b }))
    assert.near(120, bb:retry_after(), 1)
  end)

  it("never holds a lock across the protected call", function()
    local a, b = store("A"), store("B")
    local ba, bb = breaker(a, 0), breaker(b, 0)
    local inside
    assert.is_true(ba:call(function()
      -- while A's call runs, B works unhindered and no lock key exists
      for _ = 1, 3 do assert.is_true(bb:call(function() return true end)) end
      inside = server:cli("--scan --pattern 'circuit_breaker:*'")
      return true
    end))
    assert.is_nil(inside:find("lock", 1, true))
    assert.is_nil(inside:find("lease", 1, true))
  end)
end)
