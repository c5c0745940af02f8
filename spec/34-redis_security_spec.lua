-- The channel as an attack surface: what a peer that can PUBLISH (or write
-- the boot hash) can and cannot do to an instance, with and without
-- cb.redis{secret = ...}.
local cb = require("cbreaker")
local helper = require("helpers.redis")

local SECRET = "0123456789abcdef-shared"
local CHANNEL = "circuit_breaker:events"

local fx = require("helpers.fixtures")
local shq, hmac = fx.shq, fx.hmac

local function signed(key, body)
  return body:sub(1, -2) .. ',"sig":"' .. hmac(key, body) .. '"}'
end

local function wall_ms()
  local p = io.popen("date +%s%3N")
  local ms = tonumber(p:read("l"))
  p:close()
  return ms
end

local function message(name, fields)
  local parts = { ('"serviceId":"%s"'):format(name) }
  for _, kv in ipairs(fields) do parts[#parts + 1] = kv end
  return "{" .. table.concat(parts, ",") .. "}"
end

describe("#redis channel security", function()
  local server
  local store, new_breaker = helper.fixture({ store = { timeout_ms = 200 },
    breaker = { reset_timeout = 10 } }, function(s) server = s end)

  local function breaker(s, name)  -- each on a clock of its own, never advanced
    return new_breaker(s, name, { clock = cb.manual_clock(0) })
  end

  local function publish(payload)
    return server:cli(("publish %s %s"):format(CHANNEL, shq(payload)))
  end

  -- Publishes, then polls `s` until its health counter `field` moved.
  local function deliver(s, payload, field)
    local before = s:health()[field]
    assert.equals("1", publish(payload))  -- one subscriber: s
    assert.is_true(helper.eventually(function() return s:health()[field] > before end, { s }))
  end


  describe("without a secret", function()
    it("a plain `closed` never clears a forced-open", function()
      local s = store("A")
      local b = breaker(s)
      b:force_open()
      deliver(s, message("svc", { '"state":"closed"', '"ts":1', '"forcedOpen":false',
        '"recovered":false', '"origin":"evil"' }), "received")
      assert.equals("forced-open", b:state())
    end)

    it("malformed, binary and oversized payloads are counted, never crash", function()
      local s = store("A")
      local b = breaker(s)
      local junk = { "", "{", "null", "[1,2]", '{"serviceId":""}', "\0\1\2\255",
        '{"serviceId":"svc","state":"open","ts":-1}',
        '{"serviceId":"svc","state":"open","ts":1e999}',
        '{"serviceId":"svc","state":"opened"}',
        '{"serviceId":"svc\0x","state":"open"}',
        message(("x"):rep(300), { '"state":"open"' }),
        "{" .. ("["):rep(5000) }
      for _, j in ipairs(junk) do
        local m0 = s:health().malformed
        -- redis-cli cannot pass a NUL: EVAL builds the payload server-side
        server:cli(("eval %s 0 %s"):format(shq(
          "return redis.call('publish', '" .. CHANNEL .. "', (ARGV[1]:gsub('\\\\0', '\\0')))"),
          shq((j:gsub("\0", "\\0")))))
        assert.is_true(helper.eventually(function() return s:health().malformed > m0 end, { s }),
          "not counted as malformed: " .. j:sub(1, 40))
      end
      assert.equals("closed", b:state())
      assert.is_true(s:health().connected)
    end)

    it("a message over 64 KiB is discarded, the subscription kept", function()
      local s = store("A")
      local b = breaker(s)
      server:cli(("eval %s 0"):format(shq(
        "return redis.call('publish', '" .. CHANNEL .. "', string.rep('x', 1048576))")))
      assert.is_true(helper.eventually(function() return s:health().malformed > 0 end, { s }))
      assert.is_true(s:health().connected)
      assert.equals(0, s:health().failures)
      -- and keeps working
      local peer = store("B")
      breaker(peer):force_open()
      assert.is_true(helper.eventually(function() return b:state() == "forced-open" end, { s }))
    end)

    it("a flood of messages for ever-new names keeps nothing per name", function()
      local s = store("A")
      local keep = breaker(s)  -- attached while it lives
      local function rss_kb()
        local f = io.open("/proc/self/status")
        local kb = tonumber(f:read("a"):match("VmRSS:%s*(%d+)"))
        f:close()
        return kb
      end
      local flood = "for i = 1, tonumber(ARGV[1]) do redis.call('publish', '" .. CHANNEL
        .. "', cjson.encode({serviceId = 'n' .. ARGV[2] .. ':' .. i, state = 'open',"
        .. " forcedOpen = true, ts = 1})) end return 1"
      local function burst(tag, n)
        local r0 = s:health().received
        server:cli(("eval %s 0 %d %s"):format(shq(flood), n, tag))
        helper.eventually(function() return s:health().received >= r0 + n end, { s }, 2000)
        assert.equals(r0 + n, s:health().received)
      end
      burst("warm", 2000)
      collectgarbage()
      local before = rss_kb()
      for k = 1, 5 do burst("b" .. k, 4000) end
      collectgarbage()
      local h = s:health()
      assert.equals(0, h.applied)
      assert.equals(1, h.attached)
      assert.equals("closed", keep:state())
      -- 20000 distinct names: a per-name record of even 100 bytes would be
      -- 2 MB.  Under ASan freed memory sits in a quarantine, and valgrind
      -- brings its own allocator, so there RSS says nothing (their leak
      -- checkers run at exit instead).
      local f = io.open("/proc/self/maps")
      local maps = f:read("a")
      f:close()
      if not maps:find("libasan", 1, true) and not maps:find("vgpreload", 1, true) then
        assert.is_true(rss_kb() - before < 1024, ("RSS grew %d kB"):format(rss_kb() - before))
      end
    end)
  end)

  describe("with a secret", function()
    it("signed peers share force-open and recovery; unsigned peers still parse them", function()
      local a = store("A", { secret = SECRET })
      local b = store("B", { secret = SECRET })
      local plain = store("C")
      local ba, bb, bc = breaker(a), breaker(b), breaker(plain)
      ba:force_open()
      assert.is_true(helper.eventually(function()
        return bb:state() == "forced-open" and bc:state() == "forced-open"
      end, { b, plain }))
      local stored = server:cli("hget circuit_breaker:states svc")
      assert.matches(',"sig":"%x+"}$', stored)
      ba:reset()
      assert.is_true(helper.eventually(function()
        return bb:state() == "closed" and bc:state() == "closed"
      end, { b, plain }))
      assert.equals(0, b:health().unsigned_msgs + b:health().bad_signature + b:health().stale)
    end)

    it("rejects unsigned messages and counts them", function()
      local s = store("A", { secret = SECRET })
      local b = breaker(s)
      deliver(s, message("svc", { '"state":"open"', ('"ts":%d'):format(wall_ms()),
        '"forcedOpen":true', '"recovered":false' }), "unsigned_msgs")
      assert.equals("closed", b:state())
      -- and a forged `recovered` cannot clear a forced-open
      b:force_open()
      deliver(s, message("svc", { '"state":"closed"', ('"ts":%d'):format(wall_ms()),
        '"forcedOpen":false', '"recovered":true' }), "unsigned_msgs")
      assert.equals("forced-open", b:state())
    end)

    it("rejects a wrong key, a tampered body and a truncated signature", function()
      local s = store("A", { secret = SECRET })
      local b = breaker(s)
      local body = message("svc", { '"state":"open"', ('"ts":%d'):format(wall_ms()),
        '"forcedOpen":true', '"recovered":false', '"origin":"peer"' })
      deliver(s, signed("another secret of 16+", body), "bad_signature")
      local good = signed(SECRET, body)
      deliver(s, good:gsub('"ts":', '"ts":1', 1), "bad_signature")
      deliver(s, good:gsub('"sig":"(%x+)"', function(h) return '"sig":"' .. h:upper() .. '"' end),
        "bad_signature")
      deliver(s, good:sub(1, -4) .. '"}', "unsigned_msgs")
      assert.equals("closed", b:state())
      assert.equals(0, s:health().applied)
      -- the same message, signed right, is applied: the rejections above can fail
      deliver(s, good, "applied")
      assert.equals("forced-open", b:state())
    end)

    it("rejects a validly signed message outside the replay window", function()
      local s = store("A", { secret = SECRET, replay_window_ms = 5000 })
      local b = breaker(s)
      local function at(ts)
        return signed(SECRET, message("svc", { '"state":"open"', ("\"ts\":%d"):format(ts),
          '"forcedOpen":true', '"recovered":false', '"origin":"peer"' }))
      end
      deliver(s, at(wall_ms() - 60000), "stale")
      deliver(s, at(wall_ms() + 60000), "stale")
      deliver(s, signed(SECRET, message("svc", { '"state":"open"', '"forcedOpen":true' })),
        "stale")  -- no ts at all
      assert.equals("closed", b:state())
      deliver(s, at(wall_ms()), "applied")
      assert.equals("forced-open", b:state())
    end)

    it("does not import an unsigned boot-hash entry", function()
      local entry = message("svc", { '"state":"open"', '"ts":' .. wall_ms(),
        '"forcedOpen":true', '"recovered":false', '"origin":"peer"' })
      server:cli(("hset circuit_breaker:states svc %s"):format(shq(entry)))
      local s = store("A", { secret = SECRET })
      local b = breaker(s)
      assert.equals("closed", b:state())
      assert.is_true(s:health().unsigned_msgs > 0)
      -- a signed one is imported; without a secret the plain one is too
      local plain = store("B")
      assert.equals("forced-open", breaker(plain):state())
      server:cli(("hset circuit_breaker:states svc %s"):format(shq(signed(SECRET, entry))))
      assert.equals("forced-open", breaker(store("C", { secret = SECRET })):state())
    end)

    it("shared mode: the fleet's trip reaches idle peers signed", function()
      local a = store("A", { secret = SECRET, mode = "shared" })
      local b = store("B", { secret = SECRET, mode = "shared" })
      local plain = store("C")  -- an unsigned reader of the same channel
      local ba, bb, bc = breaker(a), breaker(b), breaker(plain)
      for _ = 1, 5 do ba:failure() end  -- the fleet's fifth failure opens it
      assert.equals("open", server:cli("get circuit_breaker:svc:state"))
      assert.equals("open", ba:state())
      assert.is_true(helper.eventually(function()
        return bb:state() == "open" and bc:state() == "open"
      end, { b, plain }))
      local h = b:health()
      assert.equals(0, h.unsigned_msgs + h.bad_signature + h.stale)
      assert.matches(',"sig":"%x+"}$', server:cli("hget circuit_breaker:states svc"))
    end)

    it("peers with different secrets ignore each other", function()
      local a = store("A", { secret = SECRET })
      local b = store("B", { secret = "a different secret!" })
      local ba, bb = breaker(a), breaker(b)
      ba:force_open()
      assert.is_true(helper.eventually(function() return b:health().bad_signature > 0 end, { b }))
      assert.equals("closed", bb:state())
    end)

    it("validates its options", function()
      for _, case in ipairs({
        { { secret = "short" }, "secret must be a string of 16 to 1024 bytes" },
        { { secret = ("x"):rep(1025) }, "secret must be a string of 16 to 1024 bytes" },
        { { secret = ("x"):rep(16) .. "\0" }, "'secret' must be a string without zero bytes" },
        { { secret = 42 }, "'secret' must be a string" },
        { { replay_window_ms = 10 }, "'replay_window_ms' must be a number of milliseconds in [1000, 86400000] (got 10)" },
        { { replay_window_ms = 0 / 0 }, "'replay_window_ms' must be a number of milliseconds in" },
        { { replay_window_ms = "1" }, "'replay_window_ms' must be a number" },
        { { secrets = SECRET }, "secret" },
      }) do
        local o = case[1]
        o.url = "redis://127.0.0.1:1/0"
        o.timeout_ms = 1
        local ok, err = pcall(cb.redis, o)
        assert.is_false(ok)
        assert.matches(case[2], err, 1, true)
      end
    end)
  end)
end)
