-- cb.redis in broadcast mode (the Redis pub/sub manager's messages and the
-- circuit_breaker:{name}:{field} key layout): two or more stores per test,
-- one private redis-server for the file.
local cb = require("cbreaker")
local helper = require("helpers.redis")

describe("cb.redis options", function()
  it("rejects bad URLs with a clear message and never shows the password", function()
    local ok, err = pcall(cb.redis, { url = "http://127.0.0.1:6379" })
    assert.is_false(ok)
    assert.matches("unsupported scheme 'http'", err)
    ok, err = pcall(cb.redis, { url = "redis://:hunter2@127.0.0.1:99999/0" })
    assert.is_false(ok)
    assert.matches("bad port '99999'", err)
    assert.is_nil(err:find("hunter2", 1, true))
    ok, err = pcall(cb.redis, { url = "redis://127.0.0.1:6379/x" })
    assert.matches("bad database 'x'", err)
    ok, err = pcall(cb.redis, { url = "unix://relative.sock" })
    assert.matches("absolute", err)
  end)

  it("rejects unknown and mistyped options by name", function()
    local ok, err = pcall(cb.redis, { timout_ms = 5 })
    assert.matches("unknown option 'timout_ms' %(did you mean 'timeout_ms'%?%)", err)
    ok, err = pcall(cb.redis, { mode = "fleet" })
    assert.matches("option 'mode' must be one of 'broadcast', 'shared'", err)
    ok, err = pcall(cb.redis, { quorum = 2 })
    assert.matches("quorum needs mode \"shared\"", err)
    ok, err = pcall(cb.redis, { timeout_ms = "fast" })
    assert.matches("option 'timeout_ms' must be a number", err)
    ok, err = pcall(cb.new, { store = {} })
    assert.matches("option 'store' must be a cbreaker.Store", err)
  end)
end)

describe("#redis broadcast mode", function()
  local server, clock
  local store, breaker = helper.fixture({ clock = 1000, store = { timeout_ms = 200 } },
    function(s, _, c) server, clock = s, c end)

  it("connects, and reports health without I/O on the hot path", function()
    local a = store("A")
    local h = a:health()
    assert.is_true(h.connected)
    assert.equals("", h.last_error)
    assert.equals("A", h.id)
    assert.is_number(a:fd())
    assert.equals(0, a:poll())
    local br = breaker(a)
    for _ = 1, 1000 do
      assert.is_true(br:allow())
      br:success()
    end
    assert.equals(0, a:health().published)  -- no transition, no message
    assert.equals(1, a:health().attached)
  end)

  it("publishes a trip; the peer opens for the time left, reason 'peer'", function()
    local a, b = store("A"), store("B")
    local ba = breaker(a, "svc", { reset_timeout = 30 })
    local changes = {}
    local bb = breaker(b, "svc", { reset_timeout = 5, on_change = function(name, from, to, why)
      changes[#changes + 1] = table.concat({ name, from, to, why }, " ")
    end })
    for _ = 1, 5 do ba:failure() end
    assert.equals("open", ba:state())
    assert.is_true(helper.eventually(function() return bb:state() == "open" end, { b }))
    assert.same({ "svc closed open peer" }, changes)
    -- the peer's deadline (30 s) wins over the local timeout (5 s)
    assert.near(30, bb:retry_after(), 0.5)
    assert.equals(1, a:health().published)
    assert.equals(1, b:health().applied)
    -- the receiver never echoes a peer's state
    helper.drain({ a, b })
    assert.equals(0, b:health().published)
    assert.equals(1, a:health().own)
  end)

  it("skips its own messages but applies other services' (no origin)", function()
    local a, b = store("A"), store("B")
    local ba, bb = breaker(a), breaker(b)
    ba:force_open()
    helper.drain({ a, b })
    assert.equals(1, a:health().own)
    assert.equals(0, a:health().applied)
    -- a service speaking the pub/sub manager's format, publishing without an origin
    server:cli([[publish circuit_breaker:events '{"serviceId":"svc","state":"closed","ts":1,"forcedOpen":false,"recovered":true}']])
    assert.is_true(helper.eventually(function()
      return ba:state() == "closed" and bb:state() == "closed"
    end, { a, b }))
  end)

  it("a plain closed never clears a forced-open; recovered does", function()
    local a, b, c = store("A"), store("B"), store("C")
    local ba, bb, bc = breaker(a), breaker(b), breaker(c)
    ba:force_open()
    assert.is_true(helper.eventually(function()
      return bb:state() == "forced-open" and bc:state() == "forced-open"
    end, { b, c }))
    server:cli([[publish circuit_breaker:events '{"serviceId":"svc","state":"closed","ts":1,"forcedOpen":false,"recovered":false,"origin":"X"}']])
    helper.drain({ a, b, c })
    assert.equals("forced-open", bb:state())
    assert.equals("forced-open", bc:state())
    bb:reset()  -- any instance's reset clears the fleet, the origin's too
    assert.is_true(helper.eventually(function()
      return ba:state() == "closed" and bc:state() == "closed"
    end, { a, c }))
  end)

  it("a plain closed from a peer's probe closes a peer's open", function()
    local a, b = store("A"), store("B")
    local ba, bb = breaker(a, "svc", { reset_timeout = 10 }), breaker(b, "svc", { reset_timeout = 10 })
    for _ = 1, 5 do ba:failure() end
    assert.is_true(helper.eventually(function() return bb:state() == "open" end, { b }))
    clock:advance(10)
    assert.equals("half-open", ba:state())
    assert.is_true(ba:allow()); ba:success()
    assert.is_true(ba:allow()); ba:success()
    assert.equals("closed", ba:state())
    assert.is_true(helper.eventually(function() return bb:state() == "closed" end, { b }))
  end)

  it("reset() publishes recovered and clears the boot entry even when closed", function()
    local a, b = store("A"), store("B")
    local ba, bb = breaker(a), breaker(b)
    -- another service forced it open on B only (B missed nothing, A did)
    server:cli(([[hset circuit_breaker:states svc '{"serviceId":"svc","state":"open","ts":%d,"forcedOpen":true,"recovered":false}']]):format(os.time() * 1000))
    server:cli([[publish circuit_breaker:events '{"serviceId":"svc","state":"open","ts":1,"forcedOpen":true,"recovered":false}']])
    assert.is_true(helper.eventually(function() return bb:state() == "forced-open" end, { b }))
    helper.drain({ a })
    ba:close()  -- A restarts its breaker: imports it
    ba = breaker(a)
    assert.equals("forced-open", ba:state())
    ba:reset()
    ba:reset()  -- already closed: announced again all the same
    assert.equals("", server:cli("hget circuit_breaker:states svc"))
    assert.is_true(helper.eventually(function() return bb:state() == "closed" end, { b }))
    assert.equals(2, a:health().published)
  end)

  it("a starting process imports open and forced-open states, not stale ones", function()
    local a = store("A")
    local x, y = breaker(a, "x"), breaker(a, "y", { reset_timeout = 60 })
    x:force_open()
    for _ = 1, 5 do y:failure() end
    helper.drain({ a })
    local raw = server:cli("hget circuit_breaker:states x")
    assert.matches('"forcedOpen":true', raw)
    assert.matches('"origin":"A"', raw)
    local b = store("B")
    local bx, by, bz = breaker(b, "x"), breaker(b, "y"), breaker(b, "z")
    assert.equals("forced-open", bx:state())
    assert.equals("open", by:state())
    assert.near(60, by:retry_after(), 1)
    assert.equals("closed", bz:state())
    -- an open whose time is over is not imported
    server:cli([[hset circuit_breaker:states old '{"serviceId":"old","state":"open","ts":1000,"forcedOpen":false,"recovered":false,"retryAfterMs":5000}']])
    assert.equals("closed", breaker(b, "old"):state())
    -- nor an open older than the TTL (the hash's own TTL is refreshed by
    -- every write, so its entries are aged by their ts); a forced-open
    -- lasts until a reset, whatever its age
    server:cli([[hset circuit_breaker:states stale '{"serviceId":"stale","state":"open","ts":1000,"forcedOpen":false,"recovered":false}']])
    assert.equals("closed", breaker(b, "stale"):state())
    server:cli([[hset circuit_breaker:states aged '{"serviceId":"aged","state":"open","ts":1000,"forcedOpen":true,"recovered":false}']])
    assert.equals("forced-open", breaker(b, "aged"):state())
    local fresh = ('{"serviceId":"fresh","state":"open","ts":%d,"forcedOpen":true,"recovered":false}')
      :format(os.time() * 1000)
    server:cli("hset circuit_breaker:states fresh '" .. fresh .. "'")
    assert.equals("forced-open", breaker(b, "fresh"):state())
    -- a process restarted under the same id imports its own earlier states
    local again = store("A")
    assert.equals("forced-open", breaker(again, "x"):state())
  end)

  it("gives every key it writes a TTL but a force's (circuit_breaker:{name}:{field})", function()
    local a, b = store("A", { ttl = 120 }), store("B", { ttl = 120 })
    local ba = breaker(a, "svc")
    breaker(b, "svc")
    for _ = 1, 5 do ba:failure() end
    ba:force_open()
    helper.drain({ a, b })
    local keys = {}
    for k in server:cli("--scan --pattern 'circuit_breaker:*'"):gmatch("[^\n]+") do keys[#keys + 1] = k end
    table.sort(keys)
    assert.same({ "circuit_breaker:forced", "circuit_breaker:states", "circuit_breaker:svc:forced",
      "circuit_breaker:svc:opened_at", "circuit_breaker:svc:state" }, keys)
    -- a force is `open` plus a marker: a pybreaker peer knows only three states
    assert.equals("open", server:cli("get circuit_breaker:svc:state"))
    assert.equals("1", server:cli("get circuit_breaker:svc:forced"))
    -- a force lasts until a reset: none of its keys expires, nor the boot
    -- hash while it holds one; everything else does
    for _, k in ipairs(keys) do
      assert.equals("-1", server:cli("ttl " .. k), k)
    end
    ba:reset()
    for _ = 1, 5 do ba:failure() end
    helper.drain({ a, b })
    keys = {}
    for k in server:cli("--scan --pattern 'circuit_breaker:*'"):gmatch("[^\n]+") do keys[#keys + 1] = k end
    assert.is_true(#keys >= 3)
    for _, k in ipairs(keys) do
      local ttl = tonumber(server:cli("ttl " .. k))
      assert.is_true(ttl > 0 and ttl <= 120, k .. " has TTL " .. ttl)
    end
  end)

  it("ignores and counts malformed and oversized messages", function()
    local a, b = store("A"), store("B")
    local bb = breaker(b)
    breaker(a)
    server:cli("publish circuit_breaker:events 'not json'")
    server:cli([[publish circuit_breaker:events '{"serviceId":7,"state":"open"}']])
    server:cli([[publish circuit_breaker:events '{"serviceId":"svc","state":"ajar"}']])
    server:cli([[publish circuit_breaker:events '{"serviceId":"svc","state":"open","forcedOpen":"yes"}']])
    local big = '{"serviceId":"svc","state":"open","pad":"' .. ("x"):rep(5000) .. '"}'
    server:cli("publish circuit_breaker:events '" .. big .. "'")
    assert.is_true(helper.eventually(function() return b:health().malformed == 5 end, { b }))
    assert.equals(5, b:health().received)
    assert.equals("closed", bb:state())
    assert.is_true(b:health().connected)
  end)

  it("keeps prefixes and channels apart", function()
    local a = store("A", { prefix = "p1", channel = "p1:events" })
    local b = store("B", { prefix = "p2", channel = "p2:events" })
    local ba, bb = breaker(a), breaker(b)
    ba:force_open()
    helper.drain({ a, b })
    assert.equals("closed", bb:state())
    assert.matches("forcedOpen", server:cli("hget p1:states svc"))
    assert.equals("", server:cli("hget p2:states svc"))
  end)

  it("polls by itself from breaker calls at a bounded cadence", function()
    local a, b = store("A"), store("B")
    local ba, bb = breaker(a), breaker(b)
    ba:force_open()
    assert.is_true(b:wait(500))
    for _ = 1, 200 do bb:allow() end  -- the clock has not moved: no poll yet
    assert.equals("closed", bb:state())
    clock:advance(0.06)
    local n = 0
    while bb:state() == "closed" and n < 200 do
      bb:allow()
      n = n + 1
    end
    assert.equals("forced-open", bb:state())
    assert.is_true(n <= 64)
  end)

  it("applies a peer's state to every breaker of that name, detaches on close", function()
    local a, b = store("A"), store("B")
    local ba = breaker(a)
    local b1, b2 = breaker(b), breaker(b)
    ba:force_open()
    assert.is_true(helper.eventually(function()
      return b1:state() == "forced-open" and b2:state() == "forced-open"
    end, { b }))
    b1:close()
    assert.equals(1, b:health().attached)
    b:close()
    assert.equals("forced-open", b2:state())  -- detached, still usable
    b2:reset()
    assert.equals("closed", b2:state())
    local ok, err = pcall(b.poll, b)
    assert.is_false(ok)
    assert.matches("closed store", err)
  end)

  it("attaches with store:attach and refuses a second store", function()
    local a, b = store("A"), store("B")
    local br = cb.new{ name = "svc", clock = clock }
    assert.equals(br, a:attach(br))
    local ok, err = pcall(b.attach, b, br)
    assert.is_false(ok)
    assert.matches("cannot attach breaker 'svc'", err)
    a:detach(br)
    b:attach(br)
    assert.equals(0, a:health().attached)
    assert.equals(1, b:health().attached)
  end)
end)

describe("#redis authentication and sockets", function()
  local server

  setup(function() server = helper.start{ password = "s3cr3t-pw" } end)
  teardown(function() if server then server:stop() end end)

  it("authenticates from the URL or the option, never shows the password", function()
    local clock = cb.manual_clock(0)
    local a = cb.redis{ url = ("redis://:s3cr3t-pw@127.0.0.1:%d/1"):format(server.port), id = "A" }
    local b = cb.redis{ url = ("redis://127.0.0.1:%d/1"):format(server.port), id = "B",
      password = "s3cr3t-pw" }
    assert.is_true(a:health().connected)
    assert.is_true(b:health().connected)
    local ba = cb.new{ name = "svc", store = a, clock = clock }
    local bb = cb.new{ name = "svc", store = b, clock = clock }
    ba:force_open()
    assert.is_true(helper.eventually(function() return bb:state() == "forced-open" end, { b }))
    assert.equals("", server:cli("-n 0 hget circuit_breaker:states svc"))
    assert.matches("forcedOpen", server:cli("-n 1 hget circuit_breaker:states svc"))
    local bad = cb.redis{ url = ("redis://:wrong-pw-123@127.0.0.1:%d/0"):format(server.port) }
    local h = bad:health()
    assert.is_false(h.connected)
    assert.matches("WRONGPASS", h.last_error)
    assert.is_nil(h.last_error:find("wrong-pw-123", 1, true))
    local _, err = bad:poll()
    assert.is_nil(err:find("wrong-pw-123", 1, true))
    assert.is_nil(tostring(bad):find("wrong-pw-123", 1, true))
    a:close(); b:close(); bad:close()
  end)

  it("connects over a unix socket", function()
    local clock = cb.manual_clock(0)
    local a = cb.redis{ url = "unix://" .. server.dir .. "/redis.sock?db=2", password = "s3cr3t-pw", id = "A" }
    local b = cb.redis{ url = ("unix://:s3cr3t-pw@%s/redis.sock?db=2"):format(server.dir), id = "B" }
    assert.is_true(a:health().connected)
    local ba = cb.new{ name = "u", store = a, clock = clock }
    local bb = cb.new{ name = "u", store = b, clock = clock }
    ba:force_open()
    assert.is_true(helper.eventually(function() return bb:state() == "forced-open" end, { b }))
    a:close(); b:close()
  end)
end)
