-- The channel and the keys as an attack surface (the adversarial review's
-- channel items): a replayed signed message, an oversized message, a trip
-- racing an operator's force-open, a force outliving the keys' TTL, an odd
-- name in the boot hash, and durations past the core's cap on the wire.
local cb = require("cbreaker")
local helper = require("helpers.redis")
local fixtures = require("helpers.fixtures")

local SECRET = "0123456789abcdef-shared"
local CHANNEL = "circuit_breaker:events"
local MAX_TIMEOUT = 1e9  -- the core's cap on every duration, seconds

local shq = fixtures.shq

-- `body` (a JSON object) with its "sig": HMAC-SHA256 by the openssl command
-- line, apart from the store's code.
local function signed(key, body)
  return body:sub(1, -2) .. ',"sig":"' .. fixtures.hmac(key, body) .. '"}'
end

local function wall_ms()
  local p = io.popen("date +%s%3N")
  local ms = tonumber(p:read("l"))
  p:close()
  return ms
end

describe("#redis durations on the wire", function()
  local server
  local store, breaker = helper.fixture({ store = { timeout_ms = 200 } },
    function(s) server = s end)

  it("a huge retry_after is published capped, never as null", function()
    local a, b = store("A"), store("B")
    local ba = breaker(a, "svc", { clock = cb.manual_clock(0) })
    local bb = breaker(b, "svc", { clock = cb.manual_clock(0), reset_timeout = 30 })
    ba:record("failure", 0, 1e308)
    assert.equals("open", ba:state())
    assert.is_true(helper.eventually(function() return bb:state() == "open" end, { a, b }))
    local entry = server:cli("hget circuit_breaker:states svc")
    assert.is_nil(entry:find("null", 1, true), entry)
    local ms = tonumber(entry:match('"retryAfterMs":([%d.e+]+)'))
    assert.is_number(ms, entry)
    assert.is_true(ms <= MAX_TIMEOUT * 1000, entry)
    -- the peer follows the sender's deadline, not its own 30 s
    assert.is_true(bb:retry_after() > 1e8, tostring(bb:retry_after()))
  end)
end)

local run_host = fixtures.run_host

describe("#redis cbreaker status with odd names in the boot hash", function()
  local server
  helper.use_server(function(s) server = s end)

  it("lists the others and shows an odd name escaped or skipped with a note", function()
    assert.equals(0, (run_host("force-open good --redis " .. server:url())))
    -- names no breaker can have, as anyone with HSET could write them
    server:cli(("eval %s 0 %s"):format(shq(
      "redis.call('hset', 'circuit_breaker:states', ARGV[1], '{}') "
      .. "redis.call('hset', 'circuit_breaker:states', 'esc\\27[2J\\nline\\255', '{}') "
      .. "redis.call('hset', 'circuit_breaker:states', 'bin\\0zero', '{}')"), ("x"):rep(300)))
    local code, out, err = run_host("status --redis " .. server:url())
    assert.equals(0, code, out .. err)
    assert.matches("\ngood%s+forced%-open%s+until reset", out)
    assert.matches("\nesc\\x1b%[2J\\x0aline\\xff%s+closed", out)  -- escaped, listed
    assert.matches("\nx+%.%.%.%s+%?%s+%-%s+skipped: a name of 300 bytes", out)
    assert.matches("1 name skipped", err)
    assert.is_nil(out:find("\27", 1, true))  -- no raw terminal escape reaches the screen
    assert.is_nil(out:find("traceback", 1, true))
  end)
end)

describe("#redis operators' commands sign with the fleet's secret", function()
  local server
  local store = helper.fixture({ store = { timeout_ms = 200 } }, function(s) server = s end)

  local function secret_file(content)
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(content)
    f:close()
    return path
  end

  it("--secret-file and CBREAKER_SECRET: a peer with the secret accepts force-open and reset", function()
    local peer = store("P", { secret = SECRET })
    local br = cb.new{ name = "ops", store = peer, clock = cb.manual_clock(0) }
    local path = secret_file(SECRET .. "\n")
    local code, out, err = run_host(("force-open ops --redis %s --secret-file %s"):format(
      server:url(), path))
    os.remove(path)
    assert.equals(0, code, out .. err)
    assert.is_true(helper.eventually(function() return br:state() == "forced-open" end, { peer }))
    assert.matches(',"sig":"%x+"}$', server:cli("hget circuit_breaker:states ops"))
    -- status checks the signed boot entry with the same secret
    code, out, err = run_host("status ops --redis " .. server:url(),
      "CBREAKER_SECRET=" .. shq(SECRET))
    assert.equals(0, code, out .. err)
    assert.matches("\nops%s+forced%-open%s+until reset", out)
    code, out, err = run_host("reset ops --redis " .. server:url(),
      "CBREAKER_SECRET=" .. shq(SECRET))
    assert.equals(0, code, out .. err)
    assert.is_true(helper.eventually(function() return br:state() == "closed" end, { peer }))
    local h = peer:health()
    assert.equals(0, h.unsigned_msgs + h.bad_signature + h.stale)
    assert.equals(2, h.applied)
  end)

  it("cbreaker demo --redis signs with --secret-file too", function()
    local peer = store("P", { secret = SECRET })
    local path = secret_file(SECRET)
    local code, out, err = run_host(("demo --requests 3000 --redis %s --secret-file %s"):format(
      server:url(), path))
    os.remove(path)
    assert.equals(0, code, out .. err)
    assert.is_true(helper.eventually(function() return peer:health().received > 0 end, { peer }))
    local h = peer:health()
    assert.equals(0, h.unsigned_msgs + h.bad_signature)
    code, _, err = run_host("demo --redis " .. server:url(), "CBREAKER_SECRET=short")
    assert.equals(2, code)
    assert.matches("demo: .*secret must be a string of 16 to 1024 bytes", err)
  end)

  it("an unreadable, empty or too short secret is a clear error, nothing published", function()
    local empty = secret_file("\n")
    for _, case in ipairs({
      { "--secret-file /nonexistent/secret", "", "cannot read %-%-secret%-file" },
      { "--secret-file " .. empty, "", "is empty" },
      { "", "CBREAKER_SECRET=short", "secret must be a string of 16 to 1024 bytes" },
    }) do
      local code, _, err = run_host(("force-open ops --redis %s %s"):format(server:url(), case[1]),
        case[2])
      assert.is_true(code ~= 0)
      assert.matches(case[3], err)
      assert.is_nil(err:find("traceback", 1, true))
    end
    os.remove(empty)
    assert.equals("", server:cli("hget circuit_breaker:states ops"))
  end)
end)

describe("#redis an operator's force-open lasts until a reset", function()
  local server
  local store, breaker = helper.fixture({ store = { timeout_ms = 200, ttl = 120 } },
    function(s) server = s end)

  local function pttl(key)
    return tonumber(server:cli("pttl " .. key))
  end

  for _, mode in ipairs({ "broadcast", "shared" }) do
    it("a trip that reaches Redis after the force leaves it forced (" .. mode .. ")", function()
      local clock = cb.manual_clock(0)
      local a, ops = store("A", { mode = mode, clock = clock }), store("ops", { mode = mode })
      local ba = breaker(a, "svc", { clock = cb.manual_clock(0) })
      local bo = breaker(ops, "svc", { clock = cb.manual_clock(0) })
      bo:force_open()
      helper.drain({ ops })
      -- A has not heard the force: it trips on its own failures (in shared
      -- mode the fleet's count, and a Retry-After announced as an open)
      for _ = 1, 5 do ba:failure() end
      ba:record("failure", 0, 60)
      helper.drain({ a, ops })
      assert.matches('"forcedOpen":true', server:cli("hget circuit_breaker:states svc"))
      assert.equals("1", server:cli("get circuit_breaker:svc:forced"))
      assert.equals("open", server:cli("get circuit_breaker:svc:state"))
      -- a booting instance, and a peer that reconnects, are forced open
      assert.equals("forced-open", breaker(store("C", { mode = mode }), "svc"):state())
      assert.is_true(helper.eventually(function() return ba:state() == "forced-open" end, { a }))
      server:cli("client kill type pubsub")
      assert.is_true(helper.eventually(function() return not a:health().connected end, { a }))
      assert.is_true(helper.reconnect({ a }, clock, 1))
      assert.equals("forced-open", ba:state())
    end)
  end

  it("its keys and boot entry have no TTL until the reset; the rest keep theirs", function()
    local a, ops = store("A"), store("ops")
    local other = breaker(a, "other", { clock = cb.manual_clock(0) })
    fixtures.trip(other)
    breaker(ops, "svc", { clock = cb.manual_clock(0) }):force_open()
    helper.drain({ a, ops })
    for _, k in ipairs({ "states", "forced", "svc:state", "svc:forced", "svc:opened_at" }) do
      assert.equals(-1, pttl("circuit_breaker:" .. k), k .. " must not expire")
    end
    assert.is_true(pttl("circuit_breaker:other:state") > 0)
    -- a forced entry older than the TTL is still imported
    server:cli([[hset circuit_breaker:states old '{"serviceId":"old","state":"open","ts":1000,"forcedOpen":true,"recovered":false}']])
    assert.equals("forced-open", breaker(store("B"), "old"):state())
    -- the reset of the last force gives the hash its TTL back
    local b = store("R")
    breaker(b, "svc"):reset()
    breaker(b, "old"):reset()
    helper.drain({ b })
    local ttl = pttl("circuit_breaker:states")
    assert.is_true(ttl > 0 and ttl <= 120000, tostring(ttl))
    assert.equals(0, tonumber(server:cli("exists circuit_breaker:forced circuit_breaker:svc:state")))
  end)
end)

describe("#redis a replayed signed message", function()
  local server
  local store, breaker = helper.fixture({ store = { timeout_ms = 200, secret = SECRET } },
    function(s) server = s end)

  local function publish_raw(payloads)
    -- one round trip: EVAL publishes every payload in order
    local args = {}
    for i, p in ipairs(payloads) do args[i] = shq(p) end
    return server:cli(("eval %s 0 %s"):format(shq(
      "for _, m in ipairs(ARGV) do redis.call('publish', '" .. CHANNEL .. "', m) end return #ARGV"),
      table.concat(args, " ")))
  end

  it("a force-open replayed after a reset does not re-open the fleet", function()
    local ops, peer = store("ops"), store("P")
    local bo = breaker(ops, "svc", { clock = cb.manual_clock(0) })
    local bp = breaker(peer, "svc", { clock = cb.manual_clock(0) })
    bo:force_open()
    helper.drain({ ops })
    local force = server:cli("hget circuit_breaker:states svc")  -- the message as published
    assert.matches('"forcedOpen":true', force)
    assert.matches('"seq":%d+', force)
    assert.is_true(helper.eventually(function() return bp:state() == "forced-open" end, { peer }))
    bo:reset()
    assert.is_true(helper.eventually(function() return bp:state() == "closed" end, { peer }))
    local before = peer:health()
    publish_raw({ force, force })
    assert.is_true(helper.eventually(function()
      return peer:health().received >= before.received + 2 end, { peer }))
    assert.equals("closed", bp:state())
    assert.equals(before.stale + 2, peer:health().stale)  -- counted with the stale ones
    assert.equals(before.replayed + 2, peer:health().replayed)  -- and as replays
    assert.equals(before.applied, peer:health().applied)
    -- a booting instance never saw it: a message published before it
    -- subscribed (here 5 s before, inside the replay window) is a replay
    local late = store("L")
    local bl = breaker(late, "svc", { clock = cb.manual_clock(0) })
    local body = ('{"serviceId":"svc","state":"open","ts":%d,"forcedOpen":true,'
      .. '"recovered":false,"origin":"ops2"}'):format(wall_ms() - 5000)
    publish_raw({ signed(SECRET, body) })
    assert.is_true(helper.eventually(function() return late:health().stale > 0 end, { late }))
    assert.equals("closed", bl:state())
    -- and the next force, a new message, is applied
    bo:force_open()
    assert.is_true(helper.eventually(function()
      return bp:state() == "forced-open" and bl:state() == "forced-open" end, { peer, late }))
  end)

  it("a flood of distinct names keeps the table bounded and still refuses replays", function()
    local ops, peer = store("ops"), store("P")
    local keep = breaker(peer, "n1", { clock = cb.manual_clock(0) })
    local N = 6000  -- more (origin, name) pairs than the table holds (4096)
    local brs = {}
    for i = 1, N do
      brs[i] = breaker(ops, "n" .. i, { clock = cb.manual_clock(0) })
      brs[i]:force_open()
      -- read ops' replies often: on a loaded machine a drain may end with
      -- replies still owed, and 1024 owed make ops reconnect (and resend
      -- only when polled again)
      if i % 100 == 0 then helper.drain({ ops }) end
    end
    helper.drain({ ops })
    assert.equals(0, ops:health().failures, ops:health().last_error)
    assert.is_true(helper.eventually(function() return keep:state() == "forced-open" end,
      { peer }, 500))
    assert.is_true(helper.eventually(function() return peer:health().received >= N end, { peer }, 2000),
      ("the peer received %d of %d"):format(peer:health().received, N))
    local olds = {}
    for i = 1, 200 do olds[i] = server:cli("hget circuit_breaker:states n" .. i) end
    brs[1]:reset()
    assert.is_true(helper.eventually(function() return keep:state() == "closed" end, { peer }))
    local r0, s0 = peer:health().received, peer:health().stale
    publish_raw(olds)  -- the oldest 200, evicted or not
    assert.is_true(helper.eventually(function() return peer:health().received >= r0 + 200 end,
      { peer }, 500))
    assert.equals(s0 + 200, peer:health().stale)
    assert.equals("closed", keep:state())
  end)
end)

describe("#redis an oversized channel message", function()
  local server
  local store, breaker = helper.fixture({ store = { timeout_ms = 200 } },
    function(s) server = s end)

  it("is discarded, never answered by dropping the connections", function()
    local s = store("A")
    local b = breaker(s, "svc", { clock = cb.manual_clock(0) })
    -- ten times: 100 KiB of junk, then at once a real message in the same
    -- stream (it must survive the junk being thrown away)
    local script = "for i = 1, 10 do redis.call('publish', '" .. CHANNEL
      .. "', string.rep('x', 102400)) redis.call('publish', '" .. CHANNEL
      .. "', cjson.encode({serviceId = 'n' .. i, state = 'open', ts = 1})) end "
      .. "redis.call('publish', '" .. CHANNEL .. "', cjson.encode({serviceId = 'svc', "
      .. "state = 'open', forcedOpen = true, ts = 1})) return 1"
    server:cli(("eval %s 0"):format(shq(script)))
    assert.is_true(helper.eventually(function() return b:state() == "forced-open" end, { s }, 200))
    local h = s:health()
    assert.is_true(h.connected)
    assert.equals(0, h.failures)
    assert.equals(0, h.reconnects)
    assert.equals(10, h.malformed)
    assert.equals(11, h.received)  -- the junk is counted malformed, not received
  end)
end)

describe("#redis allow()'s reconnect budget", function()
  local server, clock
  local store, breaker = helper.fixture({ clock = 0, store = helper.FAULT_STORE },
    function(s, _, c) server, clock = s, c end)

  -- `n` allow() calls, the clock moving `step` s per call; returns the
  -- slowest call in ms
  local function allows(b, n, step)
    local worst = 0
    for _ = 1, n do
      local ms = helper.timed(b.allow, b)
      if ms > worst then worst = ms end
      clock:advance(step)
    end
    return worst
  end

  it("one reconnect attempt per back-off from allow(), all of it within timeout_ms", function()
    local a = store("A")
    local b = breaker(a, "svc")
    server:cli("client kill type pubsub")
    assert.is_true(helper.eventually(function() return not a:health().connected end, { a }))
    local failures = a:health().failures
    server:pause()  -- a reconnect now hangs: connect succeeds, SUBSCRIBE never answers
    local ok, err = pcall(function()
      local worst = allows(b, 1000, 0.0005)  -- 0.5 s: inside the 1 s back-off
      assert.is_true(worst < 20 + helper.SLACK_MS, "allow() took " .. worst .. " ms")
      assert.equals(failures, a:health().failures)  -- no attempt at all
      clock:advance(0.6)  -- the back-off is over: one allow() in the next 64 tries
      worst = allows(b, 64, 0)
      assert.is_true(worst >= helper.TIMEOUT_MS * 0.9, "no attempt: " .. worst .. " ms")
      assert.is_true(worst < helper.TIMEOUT_MS + helper.MARGIN_MS, "allow() took " .. worst .. " ms")
      assert.equals(failures + 1, a:health().failures)
      worst = allows(b, 1000, 0.0015)  -- 1.5 s: inside the next back-off (2 s)
      assert.is_true(worst < 20 + helper.SLACK_MS, "allow() took " .. worst .. " ms")
      assert.equals(failures + 1, a:health().failures)
    end)
    server:resume()
    assert(ok, err)
    assert.is_true(helper.reconnect({ a }, clock, 2))
  end)
end)

-- The per-field keys (state, opened_at, open_until, forced) are unsigned:
-- anyone who can write Redis can write them, and a pybreaker peer must be
-- able to.  What they may do to a fleet with a secret is bounded.
describe("#redis the per-field keys as an attack surface", function()
  local server
  local store, breaker = helper.fixture({ store = { timeout_ms = 200 } },
    function(s) server = s end)

  -- One peer read, sent and applied (the store's cadence is 1 s on sclock).
  local function read(s, sclock, n)
    for _ = 1, n or 1 do
      sclock:advance(1.1)
      s:poll()
      s:wait(10)
      helper.drain({ s })
      s:poll()
    end
  end

  local function keys(name, fields)
    local t = {}
    for k, v in pairs(fields) do
      t[#t + 1] = ("circuit_breaker:%s:%s %s"):format(name, k, shq(tostring(v)))
    end
    server:cli("mset " .. table.concat(t, " "))
  end

  local function del(name)
    server:cli(("del circuit_breaker:%s:state circuit_breaker:%s:forced "
      .. "circuit_breaker:%s:opened_at circuit_breaker:%s:open_until"):format(name, name, name, name))
  end

  local function force_json(name)
    return ('{"serviceId":"%s","state":"open","ts":%d,"forcedOpen":true,"recovered":false}')
      :format(name, wall_ms())
  end

  it("with a secret, unsigned keys never force; a signed boot entry does, until the keys go", function()
    local sclock = cb.manual_clock(0)
    local s = store("A", { secret = SECRET, clock = sclock })
    local br = breaker(s, "victim", { clock = cb.manual_clock(0) })
    keys("victim", { state = "open", forced = 1 })
    read(s, sclock, 2)
    assert.equals("closed", br:state())  -- no opened_at: no open to hold either
    assert.is_true(s:health().unsigned_msgs > 0)  -- the bare force, counted
    server:cli(("hset circuit_breaker:states victim %s"):format(shq(force_json("victim"))))
    keys("victim", { opened_at = os.time() })
    read(s, sclock)
    assert.equals("open", br:state())  -- a plain open, as a pybreaker peer's
    assert.is_true(br:retry_after() <= 30, tostring(br:retry_after()))
    -- an instance with the secret forces: its entry is signed
    server:cli(("hset circuit_breaker:states victim %s")
      :format(shq(signed(SECRET, force_json("victim")))))
    read(s, sclock)
    assert.equals("forced-open", br:state())
    del("victim")  -- the keys gone: a force learnt from them ends
    read(s, sclock)
    assert.equals("closed", br:state())
  end)

  it("with a secret in shared mode, the script's answer is no force either", function()
    local s = store("A", { secret = SECRET, mode = "shared" })
    local br = breaker(s, "w", { failure_threshold = 3 })
    keys("w", { state = "open", forced = 1, opened_at = os.time() })
    server:cli(("hset circuit_breaker:states w %s"):format(shq(force_json("w"))))
    br:failure()
    assert.equals("open", br:state())  -- the fleet's open, capped, not a force
    assert.is_true(br:retry_after() <= 30, tostring(br:retry_after()))
    assert.is_true(s:health().unsigned_msgs > 0)
    br:reset()  -- deletes the keys; the fleet counts again
    for _ = 1, 3 do br:failure() end
    assert.equals("open", br:state())
    assert.equals("open", server:cli("get circuit_breaker:w:state"))
    -- a signed force is followed
    keys("w", { state = "open", forced = 1 })
    server:cli(("hset circuit_breaker:states w %s"):format(shq(signed(SECRET, force_json("w")))))
    local other = breaker(s, "w2")
    keys("w2", { state = "open", forced = 1 })
    server:cli(("hset circuit_breaker:states w2 %s"):format(shq(signed(SECRET, force_json("w2")))))
    other:failure()
    assert.equals("forced-open", other:state())
  end)

  it("a far-future opened_at or a peer's clock ahead holds open reset_timeout at a time", function()
    local sclock, bclock = cb.manual_clock(0), cb.manual_clock(0)
    local s = store("A", { secret = SECRET, clock = sclock })
    local far = breaker(s, "far", { clock = bclock })
    local skew = breaker(s, "skew", { clock = bclock })
    keys("far", { state = "open", opened_at = os.time() + 999000000 })
    keys("skew", { state = "open", opened_at = os.date("!%Y-%m-%dT%H:%M:%S", os.time() + 7200) })
    read(s, sclock)
    for _, br in ipairs({ far, skew }) do
      assert.equals("open", br:state())
      assert.is_true(br:retry_after() <= 30, tostring(br:retry_after()))
    end
    bclock:advance(31)  -- over here; the keys still say open: read again, open again
    assert.equals("half-open", far:state())
    read(s, sclock)
    assert.equals("open", far:state())
    assert.is_true(far:retry_after() <= 30)
    del("far")
    del("skew")
    read(s, sclock)
    assert.equals("closed", far:state())
    assert.equals("closed", skew:state())
  end)

  it("in shared mode too, the script caps a far-future opened_at at the timeout", function()
    local s = store("A", { mode = "shared" })
    local br = breaker(s, "far")
    keys("far", { state = "open", opened_at = os.time() + 999000000 })
    br:failure()
    assert.equals("open", br:state())
    assert.is_true(br:retry_after() <= 30, tostring(br:retry_after()))
  end)

  for _, mode in ipairs({ "broadcast", "shared" }) do
    it("a force found only in the keys ends when they are gone (" .. mode .. ")", function()
      local sclock = cb.manual_clock(0)
      local s = store("A", { clock = sclock, mode = mode })
      local br = breaker(s, "k", { clock = cb.manual_clock(0) })
      keys("k", { state = "open", forced = 1 })
      read(s, sclock)
      assert.equals("forced-open", br:state())
      del("k")
      read(s, sclock)
      assert.equals("closed", br:state())
    end)
  end

  it("a breaker's own open read back from the keys is not a peer's", function()
    local sclock, bclock = cb.manual_clock(0), cb.manual_clock(0)
    local s = store("A", { clock = sclock })
    local log = {}
    local br = breaker(s, "own", { clock = bclock,
      on_change = function(_, _, to, why) log[#log + 1] = to .. ":" .. why end })
    for _ = 1, 5 do br:failure() end
    helper.drain({ s })
    for _ = 1, 5 do s:poll(); s:wait(5) end
    assert.equals("open", server:cli("get circuit_breaker:own:state"))
    bclock:advance(31)  -- its timeout over here; Redis's open_until is ahead
    assert.equals("half-open", br:state())
    read(s, sclock, 2)
    assert.equals("half-open", br:state(), table.concat(log, " "))
    assert.is_nil(table.concat(log, " "):find("peer", 1, true), table.concat(log, " "))
  end)

  it("allow() does no peer-read work; an explicit poll does", function()
    local sclock = cb.manual_clock(0)
    local s = store("A", { clock = sclock })
    local a = breaker(s, "a", { clock = cb.manual_clock(0) })
    local b = breaker(s, "b", { clock = cb.manual_clock(0) })
    keys("b", { state = "open", opened_at = os.time() })
    for _ = 1, 5 do  -- reads are due at every round, 64+ allow()s a round
      sclock:advance(1.1)
      for _ = 1, 200 do a:allow() end
      s:wait(10)
      for _ = 1, 200 do a:allow() end
    end
    assert.equals("closed", b:state())
    read(s, sclock)
    assert.equals("open", b:state())
  end)

  it("a forced key of another type forces, as the script counts it; 'open\\0...' is not open", function()
    local sclock = cb.manual_clock(0)
    local s = store("A", { clock = sclock })
    local f = breaker(s, "f", { clock = cb.manual_clock(0) })
    local z = breaker(s, "z", { clock = cb.manual_clock(0) })
    server:cli("set circuit_breaker:f:state open")
    server:cli("hset circuit_breaker:f:forced by hand")
    server:cli(("eval %s 1 circuit_breaker:z:state"):format(shq(
      "redis.call('set', KEYS[1], 'open\\0junk')")))
    keys("z", { opened_at = os.time() })
    read(s, sclock)
    assert.equals("forced-open", f:state())
    assert.equals("closed", z:state())
    assert.is_true(s:health().peer_unparsed >= 1)
  end)

  it("shared mode with opened_at a hash keeps coordinating, and counts it", function()
    local s = store("A", { mode = "shared", secret = SECRET })
    local br = breaker(s, "w", { failure_threshold = 3 })
    server:cli("set circuit_breaker:w:state open")
    server:cli("hset circuit_breaker:w:opened_at x 1")
    server:cli("hset circuit_breaker:w:counter x 1")
    br:failure()
    local h = s:health()
    assert.is_true(h.connected)
    assert.equals("", h.last_error)
    assert.is_true(h.peer_unparsed >= 1, tostring(h.peer_unparsed))
    assert.is_true(h.peer_wrongtype >= 1, tostring(h.peer_wrongtype))
    server:cli("set circuit_breaker:w:state closed")
    for _ = 1, 3 do br:failure() end
    assert.equals("open", br:state())
    assert.equals("open", server:cli("get circuit_breaker:w:state"))  -- the fleet opened
  end)

  it("10 MB values: reads take a few bytes, status lists what is open", function()
    local sclock = cb.manual_clock(0)
    local s = store("A", { clock = sclock })
    local big = ("redis.call('set', KEYS[1], ARGV[1] .. string.rep('x', 10485760))")
    for i = 1, 8 do
      server:cli(("eval %s 1 circuit_breaker:big%d:state open"):format(shq(big), i))
      server:cli(("eval %s 1 circuit_breaker:big%d:opened_at 1"):format(shq(big), i))
    end
    keys("py", { state = "open", opened_at = os.time() })
    local brs = {}
    for i = 1, 8 do brs[i] = breaker(s, "big" .. i, { clock = cb.manual_clock(0) }) end
    read(s, sclock, 2)
    local h = s:health()
    assert.is_true(h.connected, h.last_error)
    assert.equals("closed", brs[1]:state())
    assert.is_true(h.peer_unparsed >= 8)
    assert.same({ { name = "py", source = "keys" } }, assert(s:list()))
    local code, out, err = run_host("status --redis " .. server:url())
    assert.equals(0, code, out .. err)
    assert.matches("\npy%s+open%s+%d+%.%ds%s+peer", out)
    assert.is_nil(out:find("big", 1, true), out)
  end)

  it("a state=open key without a time is not listed as held open", function()
    server:cli("set circuit_breaker:bare:state open")
    local code, out, err = run_host("status --redis " .. server:url())
    assert.equals(0, code, out .. err)
    assert.matches("no breaker is open", out)
  end)
end)

-- The opened_at rule is one: the store script's epoch_ms (run in Redis)
-- gives, over tests/peer_time_cases.h, what peer_time.c gives there
-- (tests/test_peer_time.c).
describe("#redis the store script's epoch_ms and peer_time.c", function()
  local server
  helper.use_server(function(s) server = s end)

  local source_dir = os.getenv("CB_SOURCE_DIR") or "."

  local function slurp(path)
    local f = assert(io.open(source_dir .. "/" .. path))
    local s = f:read("a")
    f:close()
    return s
  end

  -- The C string literals of a line, joined and unescaped.
  local function literals(line)
    local out, i = {}, 1
    while true do
      local q = line:find('"', i, true)
      if not q then break end
      local j, buf = q + 1, {}
      while line:sub(j, j) ~= '"' do
        local c = line:sub(j, j)
        if c == "\\" then
          local e = line:sub(j + 1, j + 1)
          buf[#buf + 1] = ({ n = "\n", ["\\"] = "\\", ['"'] = '"', ["'"] = "'" })[e]
            or error("escape \\" .. e .. " in " .. line)
          j = j + 2
        else
          buf[#buf + 1] = c
          j = j + 1
        end
      end
      out[#out + 1] = table.concat(buf)
      i = j + 1
    end
    return table.concat(out)
  end

  local function epoch_ms_source()
    local lines, inside = {}, false
    for line in slurp("src/core/store_script.h"):gmatch("[^\n]+") do
      local code = literals(line)
      if code == "local function epoch_ms(v)\n" then inside = true end
      if inside then
        lines[#lines + 1] = code
        if code == "end\n" then return table.concat(lines) end
      end
    end
    error("epoch_ms not found in store_script.h")
  end

  it("accepts and rejects the same values, and reads them alike", function()
    local cases = {}
    for input, want in slurp("tests/peer_time_cases.h"):gmatch('\n%s*{"([^"\n]*)", (%-?%d+)},') do
      cases[#cases + 1] = { input = input, want = tonumber(want) }
    end
    assert.is_true(#cases >= 40, #cases .. " cases")
    local script = epoch_ms_source() .. [[
local out = {}
for i, v in ipairs(ARGV) do
  local ms = epoch_ms(v)
  out[i] = ms and string.format('%.0f', math.floor(ms)) or '-1'
end
return out]]
    local args = {}
    for i, c in ipairs(cases) do args[i] = shq(c.input) end
    local out = server:cli(("eval %s 0 %s"):format(shq(script), table.concat(args, " ")))
    local got = {}
    for l in out:gmatch("[^\n]+") do got[#got + 1] = l end
    assert.equals(#cases, #got, out)
    for i, c in ipairs(cases) do
      assert.equals(("%s -> %.0f"):format(c.input, c.want), ("%s -> %s"):format(c.input, got[i]))
    end
  end)
end)
