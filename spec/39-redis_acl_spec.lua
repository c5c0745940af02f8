-- The store as a Redis 6+ ACL user (AUTH user password): the least-privilege
-- user the README recommends -- its own keys and channel, and exactly the
-- commands the store and its scripts send (Redis 7 checks a script's own
-- calls against the caller's rights too) -- runs broadcast and shared mode,
-- boot import, peer reads and the operators' commands; a wrong password and a
-- user without rights to a key fail clearly while breakers keep working.
local cb = require("cbreaker")
local fx = require("helpers.fixtures")
local helper = require("helpers.redis")

local setuser = helper.acl_user

local run_host = fx.run_host

describe("#redis an ACL user", function()
  local server, clock, url
  local store, breaker = helper.fixture({ clock = 1000, store = { timeout_ms = 200 } },
    function(s, _, c)
      server, clock = s, c
      url = ("redis://cb:pw-acl-1@127.0.0.1:%d/0"):format(s.port)
      setuser(s, "cb", "pw-acl-1", { "circuit_breaker:*" }, { "circuit_breaker:events" })
      server:cli("acl log reset")
    end)

  -- No command, key or channel was refused to anyone since the test began.
  local function nothing_refused()
    assert.equals("", server:cli("acl log"))
  end

  it("is refused the default user's keys (the user really is confined)", function()
    assert.matches("NOPERM", server:cli("--user cb --pass pw-acl-1 --no-auth-warning set other 1"))
    assert.matches("NOPERM", server:cli("--user cb --pass pw-acl-1 --no-auth-warning flushall"))
    assert.equals("OK", server:cli("--user cb --pass pw-acl-1 --no-auth-warning set circuit_breaker:x 1"))
    server:cli("acl log reset")
  end)

  it("runs broadcast mode end to end: trip, reset, force-open, boot import", function()
    local a, b = store("A", { url = url }), store("B", { url = url })
    assert.is_true(a:health().connected, a:health().last_error)
    assert.is_true(b:health().connected, b:health().last_error)
    local ba, bb = breaker(a, "svc", { reset_timeout = 30 }), breaker(b, "svc")
    for _ = 1, 5 do ba:failure() end
    assert.equals("open", ba:state())
    assert.is_true(helper.eventually(function() return bb:state() == "open" end, { b }))
    assert.matches('"state":"open"', server:cli("hget circuit_breaker:states svc"))
    ba:reset()
    assert.is_true(helper.eventually(function() return bb:state() == "closed" end, { b }))
    assert.equals("", server:cli("hget circuit_breaker:states svc"))
    bb:force_open()
    assert.is_true(helper.eventually(function() return ba:state() == "forced-open" end, { a }))
    helper.drain({ a, b })
    local c = store("C", { url = url })
    assert.equals("forced-open", breaker(c, "svc"):state())  -- imported at attach
    assert.is_true(c:health().connected)
    for _, s in ipairs({ a, b, c }) do
      assert.equals("", s:health().last_error)
      assert.equals(0, s:health().failures)
    end
    nothing_refused()
  end)

  it("runs shared mode end to end: fleet counts, lease, reset, force-open, import", function()
    local a = store("A", { url = url, mode = "shared" })
    local b = store("B", { url = url, mode = "shared" })
    local ba = breaker(a, "svc", { reset_timeout = 10 })
    local bb = breaker(b, "svc", { reset_timeout = 10 })
    for _ = 1, 3 do ba:failure() end
    bb:failure()
    assert.equals("4", server:cli("get circuit_breaker:svc:counter"))
    bb:failure()
    assert.equals("open", bb:state())
    assert.is_true(helper.eventually(function() return ba:state() == "open" end, { a }))
    assert.equals("open", server:cli("get circuit_breaker:svc:state"))
    -- the fleet's timeout is over: one probe fleet-wide, through the lease
    clock:advance(11)
    server:cli("mset circuit_breaker:svc:open_until 0 circuit_breaker:svc:opened_at 0")
    assert.is_true(ba:allow())
    assert.equals("A", server:cli("get circuit_breaker:svc:lease"))
    assert.is_false(bb:allow())
    ba:reset()
    assert.is_true(helper.eventually(function() return bb:state() == "closed" end, { b }))
    assert.equals("", server:cli("hget circuit_breaker:states svc"))
    ba:force_open()
    assert.is_true(helper.eventually(function() return bb:state() == "forced-open" end, { b }))
    helper.drain({ a, b })
    local c = store("C", { url = url, mode = "shared" })
    assert.equals("forced-open", breaker(c, "svc"):state())
    for _, s in ipairs({ a, b, c }) do
      assert.equals("", s:health().last_error)
      assert.equals(0, s:health().failures)
    end
    nothing_refused()
  end)

  it("reads a peer's per-field keys (a peer that never publishes)", function()
    local s = store("A", { url = url })
    local br = breaker(s, "py", { reset_timeout = 60 })
    server:cli(("mset circuit_breaker:py:state open circuit_breaker:py:opened_at %d"):format(os.time()))
    assert.is_true(helper.reconnect({ s }, clock, 1.1, function() return br:state() == "open" end))
    assert.same({ { name = "py", source = "keys" } }, assert(s:list()))
    assert.equals(0, s:health().failures)
    nothing_refused()
  end)

  it("takes the user from the username option, and selects its database", function()
    local port = server.port
    local a = store("A", { url = ("redis://127.0.0.1:%d/3"):format(port), username = "cb",
      password = "pw-acl-1" })
    local b = store("B", { url = ("redis://nobody:other@127.0.0.1:%d/3"):format(port),
      username = "cb", password = "pw-acl-1" })  -- the options win over the URL's
    assert.is_true(a:health().connected, a:health().last_error)
    assert.is_true(b:health().connected, b:health().last_error)
    local ba, bb = breaker(a, "svc"), breaker(b, "svc")
    ba:force_open()
    assert.is_true(helper.eventually(function() return bb:state() == "forced-open" end, { b }))
    assert.matches("forcedOpen", server:cli("-n 3 hget circuit_breaker:states svc"))
    assert.equals("", server:cli("-n 0 hget circuit_breaker:states svc"))
    nothing_refused()
  end)

  it("a wrong password says so and never shows it; a user needs a password", function()
    local bad = store("A", { url = ("redis://cb:wrong-pw-77@127.0.0.1:%d/0"):format(server.port) })
    local h = bad:health()
    assert.is_false(h.connected)
    assert.equals(1, h.failures)
    assert.matches("WRONGPASS", h.last_error)
    assert.is_nil(h.last_error:find("wrong-pw-77", 1, true))
    local _, err = bad:poll()
    assert.matches("WRONGPASS", err)
    assert.is_nil(err:find("wrong-pw-77", 1, true))
    assert.is_nil(tostring(bad):find("wrong-pw-77", 1, true))
    -- the same through the option, and for a user that does not exist
    local opt = store("B", { url = server:url(), username = "cb", password = "wrong-pw-78" })
    assert.matches("WRONGPASS", opt:health().last_error)
    assert.is_nil(opt:health().last_error:find("wrong-pw-78", 1, true))
    local ghost = store("C", { url = ("redis://ghost:pw-acl-1@127.0.0.1:%d/0"):format(server.port) })
    assert.matches("WRONGPASS", ghost:health().last_error)
    -- breakers work locally all the same
    local br = breaker(bad, "svc")
    for _ = 1, 5 do br:failure() end
    assert.equals("open", br:state())
    local ok, why = pcall(cb.redis, { url = server:url(), username = "cb" })
    assert.is_false(ok)
    assert.matches("username needs a password", why)
    ok, why = pcall(cb.redis, { url = server:url(), username = ("u"):rep(200), password = "x" })
    assert.matches("username too long", why)
    ok, why = pcall(cb.redis, { url = server:url(), username = 7 })
    assert.matches("option 'username' must be a string", why)
  end)

  it("a user without rights to the keys: NOPERM, counted, breakers work locally", function()
    setuser(server, "elsewhere", "pw-acl-2", { "other:*" }, { "circuit_breaker:events" })
    for _, mode in ipairs({ "broadcast", "shared" }) do
      local s = store("A", { url = ("redis://elsewhere:pw-acl-2@127.0.0.1:%d/0"):format(server.port),
        mode = mode })
      local h = s:health()
      assert.is_false(h.connected)
      assert.equals(1, h.failures)
      assert.matches("NOPERM", h.last_error)
      assert.is_nil(h.last_error:find("pw-acl-2", 1, true))
      local br = breaker(s, "svc")
      for _ = 1, 5 do
        assert.is_true(br:allow())
        br:failure()
      end
      assert.equals("open", br:state(), mode)
      local _, err = s:poll()
      assert.matches("NOPERM", err)
    end
  end)

  it("a user without rights to one breaker's keys: NOPERM, counted, breakers work", function()
    setuser(server, "partial", "pw-acl-3",
      { "circuit_breaker:states", "circuit_breaker:forced", "circuit_breaker:ok:*" },
      { "circuit_breaker:events" })
    local purl = ("redis://partial:pw-acl-3@127.0.0.1:%d/0"):format(server.port)
    local a = store("A", { url = purl, peer_read_ms = 0 })
    local b = store("B", { url = url })
    assert.is_true(a:health().connected, a:health().last_error)
    local no, ok = breaker(a, "no"), breaker(a, "ok")
    local bno, bok = breaker(b, "no"), breaker(b, "ok")
    for _ = 1, 5 do ok:failure() end  -- allowed: shared
    assert.is_true(helper.eventually(function() return bok:state() == "open" end, { b }))
    for _ = 1, 5 do no:failure() end
    assert.equals("open", no:state())  -- locally, whatever Redis said
    assert.is_true(helper.eventually(function() return a:health().failures >= 1 end, { a }))
    local h = a:health()
    assert.matches("NOPERM", h.last_error)
    assert.is_nil(h.last_error:find("pw-acl-3", 1, true))
    helper.drain({ b })
    assert.equals("closed", bno:state())  -- its write was refused: nothing to hear
    -- the store keeps retrying after its back-off, the breakers keep working
    clock:advance(1)
    a:poll()
    no:reset()
    assert.equals("closed", no:state())
    assert.is_true(no:allow())
    -- shared mode: the record is refused, the breaker counts locally
    local s = store("S", { url = purl, mode = "shared", peer_read_ms = 0 })
    local sno = breaker(s, "no")
    for _ = 1, 5 do
      assert.is_true(sno:allow())
      sno:failure()
    end
    assert.equals("open", sno:state())
    assert.matches("NOPERM", s:health().last_error)
    assert.is_true(s:health().failures >= 5)  -- each refused round trip is a failure
    assert.is_true(s:health().connected)      -- and no reason to reconnect
  end)

  it("cbreaker status, force-open and reset work as the user", function()
    local code, out, err = run_host("force-open pay --redis " .. url)
    assert.equals(0, code, out .. err)
    assert.matches("pay: forced%-open", out)
    code, out, err = run_host("status --redis " .. url)
    assert.equals(0, code, out .. err)
    assert.matches("\npay%s+forced%-open%s+until reset", out)
    code, out, err = run_host("status pay --redis " .. url)
    assert.equals(0, code, out .. err)
    assert.matches("\npay%s+forced%-open", out)
    code, out, err = run_host("reset pay --redis " .. url)
    assert.equals(0, code, out .. err)
    assert.matches("pay: closed", out)
    code, out = run_host("status --redis " .. url)
    assert.equals(0, code)
    assert.matches("no breaker is open", out)
    nothing_refused()
    code, out, err = run_host(("status --redis redis://cb:wrong-pw-79@127.0.0.1:%d/0"):format(server.port))
    assert.equals(1, code)
    assert.matches("WRONGPASS", err)
    assert.is_nil((out .. err):find("wrong-pw-79", 1, true))  -- the URL is quoted masked
  end)
end)
