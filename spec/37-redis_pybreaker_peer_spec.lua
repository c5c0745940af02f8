-- cbreaker and a pybreaker service on the same Redis keys
-- (`circuit_breaker:{name}:{field}`), in broadcast and shared mode, with the
-- peer writing opened_at as datetime.isoformat() and as epoch seconds.
-- The peer (spec/peers/pybreaker_peer.py, Debian's python3-redis) runs under
-- the real pybreaker when peers/pybreaker holds it (spec/peers/fetch-note.md),
-- and always under its stand-in.  cbreaker runs on manual clocks; the peer's
-- clock starts at the real time and is moved with `advance`.
local cb = require("cbreaker")
local helper = require("helpers.redis")

local source_dir = os.getenv("CB_SOURCE_DIR") or "."
local peer_script = source_dir .. "/spec/peers/pybreaker_peer.py"
local python = "/usr/bin/python3"

local function readable(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

local have_real = readable(source_dir .. "/peers/pybreaker/src/pybreaker/__init__.py")
local have_python = os.execute(python .. " -c 'import redis' 2>/dev/null") == true

--- Starts the peer: its stdin is a FIFO we write, its stdout a pipe we read.
local function spawn(url, name, form, impl)
  local p = io.popen("mktemp -d /tmp/cbreaker-peer.XXXXXX")
  local dir = p:read("l")
  p:close()
  assert(os.execute(("mkfifo '%s/in'"):format(dir)))
  local out = io.popen(("exec %s '%s' --url '%s' --name '%s' --opened-at %s --impl %s "
    .. "< '%s/in' 2> '%s/err'"):format(python, peer_script, url, name, form, impl, dir, dir))
  local input = assert(io.open(dir .. "/in", "w"))  -- meets the shell's open of the FIFO
  local peer = {}
  function peer.send(line)
    input:write(line, "\n")
    input:flush()
    local answer = out:read("l")
    if not answer then
      local f = io.open(dir .. "/err")
      local err = f and f:read("a") or ""
      if f then f:close() end
      error("the Python peer died on '" .. line .. "':\n" .. err, 2)
    end
    return answer
  end
  function peer.close()
    pcall(input.write, input, "quit\n")
    input:close()
    out:close()
    os.execute(("rm -rf '%s'"):format(dir))
  end
  return peer
end

--- Calls the peer `n` times with `outcome`; returns its answers, joined.
local function calls(peer, outcome, n)
  local t = {}
  for i = 1, n do t[i] = peer.send("call " .. outcome) end
  return table.concat(t, " ")
end

local function run_host(args)
  local host = os.getenv("CB_HOST") or "build/cbreaker"
  local p = io.popen(("'%s' %s 2>&1"):format(host, args))
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok and 0 or code, out
end

local function suite(mode, form, impl)
  describe(("#redis a pybreaker peer (%s, opened_at %s, %s mode)"):format(impl, form, mode), function()
    local server, stores, peers

    helper.use_server(function(s, list) server, stores, peers = s, list, {} end)
    after_each(function()
      for _, p in ipairs(peers) do p.close() end
    end)

    -- One cbreaker instance: the breaker on `clock`, the store's poll
    -- cadence on `sclock` (so reading the peer's keys moves no deadline).
    local function instance(name)
      local clock, sclock = cb.manual_clock(0), cb.manual_clock(0)
      local s = cb.redis{ url = server:url(), mode = mode, clock = sclock }
      stores[#stores + 1] = s
      local br = cb.new{ name = name, clock = clock, store = s }
      return br, clock, s, sclock
    end

    local function peer(name)
      local p = spawn(server:url(), name, form, impl)
      peers[#peers + 1] = p
      assert.equals(impl, p.send("impl"))
      return p
    end

    -- Lets the store's peer read (every second on its clock) run until
    -- cond() holds: at most 20 reads.
    local function notice(s, sclock, cond)
      for _ = 1, 20 do
        if cond() then return true end
        sclock:advance(1.1)
        s:poll()  -- sends the read
        s:wait(10)
        helper.drain({ s })
        s:poll()  -- applies its reply
      end
      return cond()
    end

    -- Until what the store sent has been written (broadcast writes are
    -- asynchronous).
    local function flushed(s)
      for _ = 1, 20 do s:poll(); s:wait(5) end
    end

    it("the peer opens: cbreaker refuses, and closes when the peer resets", function()
      local br, _, s, sclock = instance("llm")
      local py = peer("llm")
      assert.equals("failed failed failed failed tripped", calls(py, "fail", 5))
      assert.equals("rejected", py.send("call ok"))
      local opened_at = py.send("get opened_at")
      if form == "iso" then
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d+%+00:00$", opened_at)
      else
        assert.matches("^%d+%.%d+$", opened_at)
      end
      assert.equals("", server:cli("get circuit_breaker:llm:open_until"))  -- it writes none
      assert.is_true(notice(s, sclock, function() return br:state() == "open" end))
      local ok, why = br:allow()
      assert.is_false(ok)
      assert.equals("open", why)
      -- its timeout is opened_at + reset_timeout, as the peer times it
      local ra = br:retry_after()
      assert.is_true(ra > 25 and ra <= 30, "retry_after " .. ra)
      py.send("close")  -- an operator's reset on the Python side
      assert.is_true(notice(s, sclock, function() return br:state() == "closed" end))
      assert.is_true(br:allow())
    end)

    it("cbreaker opens: the peer refuses until its timeout, and closes on a reset", function()
      local br, _, s = instance("llm")
      local py = peer("llm")
      for _ = 1, 5 do br:failure() end
      assert.equals("open", br:state())
      flushed(s)
      assert.equals("open", server:cli("get circuit_breaker:llm:state"))
      local at = server:cli("get circuit_breaker:llm:opened_at")
      assert.matches("^%d+$", at)  -- whole epoch seconds, as pybreaker's own storage
      assert.is_true(math.abs(tonumber(at) - os.time()) < 5)
      assert.equals("rejected", py.send("call ok"))
      py.send("advance 28")
      assert.equals("rejected", py.send("call ok"))
      assert.equals("open", py.send("state"))
      br:reset()
      flushed(s)
      assert.equals("ok", py.send("call ok"))
      assert.equals("closed", py.send("state"))
    end)

    it("the peer probes after its own timeout over a cbreaker open", function()
      local br, _, s = instance("llm")
      local py = peer("llm")
      for _ = 1, 5 do br:failure() end
      flushed(s)
      py.send("advance 31")
      assert.equals("ok ok", calls(py, "ok", 2))  -- half-open, then closed (2 successes)
      assert.equals("closed", py.send("state"))
    end)

    it("a force holds on the Python side however long, until a reset", function()
      local br, _, s = instance("llm")
      local other, _, s2 = instance("llm")  -- does not poll: hears nothing
      local py = peer("llm")
      br:force_open()
      flushed(s)
      for _ = 1, 5 do other:failure() end
      if mode == "shared" then
        assert.equals("forced-open", other:state())  -- the script answers with the force
      else
        assert.equals("open", other:state())  -- its own open leaves the force's keys
        flushed(s2)
        assert.equals("1", server:cli("get circuit_breaker:llm:forced"))
        assert.matches('"forcedOpen":true', server:cli("hget circuit_breaker:states llm"))
      end
      flushed(s)
      assert.equals("open", server:cli("get circuit_breaker:llm:state"))
      assert.equals("1", server:cli("get circuit_breaker:llm:forced"))
      assert.equals("rejected", py.send("call ok"))
      py.send("advance 86400")  -- a day: past any timeout of its own
      assert.equals("rejected rejected", calls(py, "ok", 2))
      assert.equals("open", py.send("state"))
      br:reset()
      flushed(s)
      assert.equals("ok", py.send("call ok"))
      assert.equals("", server:cli("get circuit_breaker:llm:forced"))
    end)

    it("a force found only in the keys is forced-open here", function()
      local br, _, s, sclock = instance("llm")
      server:cli("mset circuit_breaker:llm:state open circuit_breaker:llm:forced 1")
      assert.is_true(notice(s, sclock, function() return br:state() == "forced-open" end))
      server:cli("del circuit_breaker:llm:forced circuit_breaker:llm:state")
      br:reset()
      assert.equals("closed", br:state())
    end)

    it("mixed failures from both sides open both", function()
      local br, _, s, sclock = instance("llm")
      local py = peer("llm")
      if mode == "shared" then
        -- one counter for the fleet: 3 here and 2 there make 5
        for _ = 1, 3 do br:failure() end
        assert.equals("3", server:cli("get circuit_breaker:llm:counter"))
        assert.equals("failed tripped", calls(py, "fail", 2))
        assert.equals("closed", br:state())
        br:success()  -- the script answers: the fleet is open
        assert.equals("open", br:state())
        br:reset()
        assert.equals("ok", py.send("call ok"))
        -- and the other way round: 2 there, 3 here
        assert.equals("failed failed", calls(py, "fail", 2))
        for _ = 1, 3 do br:failure() end
        assert.equals("open", br:state())
        assert.equals("rejected", py.send("call ok"))
      else
        -- each side counts its own calls (no I/O on the hot path); the
        -- first to reach its threshold opens both
        for _ = 1, 4 do br:failure() end
        assert.equals("failed failed failed failed", calls(py, "fail", 4))
        assert.equals("closed", br:state())
        assert.equals("tripped", py.send("call fail"))
        assert.is_true(notice(s, sclock, function() return br:state() == "open" end))
        br:reset()
        flushed(s)
        assert.equals("failed failed failed", calls(py, "fail", 3))
        for _ = 1, 5 do br:failure() end
        flushed(s)
        assert.equals("rejected", py.send("call ok"))
      end
    end)

    it("status lists a breaker only the peer holds open", function()
      local py = peer("py-only")
      assert.equals("failed failed failed failed tripped", calls(py, "fail", 5))
      local code, out = run_host("status --redis " .. server:url())
      assert.equals(0, code, out)
      assert.matches("py%-only%s+open%s+%d+%.%ds", out)
      code, out = run_host("status py-only --redis " .. server:url())
      assert.equals(0, code, out)
      assert.matches("py%-only%s+open%s+%d+%.%ds", out)
    end)

    it("a one-shot force-open from the command line holds on the Python side", function()
      local py = peer("ops")
      local code, out = run_host("force-open ops --redis " .. server:url())
      assert.equals(0, code, out)
      py.send("advance 3600")  -- the command exited long ago: nobody refreshes anything
      assert.equals("rejected", py.send("call ok"))
      code, out = run_host("reset ops --redis " .. server:url())
      assert.equals(0, code, out)
      assert.equals("ok", py.send("call ok"))
    end)
  end)
end

describe("#redis the pybreaker peer", function()
  it("needs /usr/bin/python3 with Debian's python3-redis", function()
    assert.is_true(have_python, "install python3-redis")
  end)
end)

if have_python then
  for _, mode in ipairs({ "broadcast", "shared" }) do
    for _, form in ipairs({ "iso", "epoch" }) do
      suite(mode, form, "stand-in")
      if have_real then
        suite(mode, form, "real")
      else
        pending(("the real pybreaker (%s, %s): peers/pybreaker is absent, see "
          .. "spec/peers/fetch-note.md"):format(mode, form))
      end
    end
  end
end

describe("#redis keys a peer wrote that say nothing cbreaker reads", function()
  local server, stores
  helper.use_server(function(s, list) server, stores = s, list end)

  it("are ignored, never an error", function()
    local clock, sclock = cb.manual_clock(0), cb.manual_clock(0)
    server:cli("mset circuit_breaker:a:state open circuit_breaker:a:opened_at yesterday "
      .. "circuit_breaker:b:state tripped")
    local s = cb.redis{ url = server:url(), clock = sclock }
    stores[1] = s
    local a = cb.new{ name = "a", clock = clock, store = s }
    local b = cb.new{ name = "b", clock = clock, store = s }
    for _ = 1, 3 do
      sclock:advance(1.1)
      s:poll(); s:wait(5); s:poll()
    end
    assert.equals("closed", a:state())
    assert.equals("closed", b:state())
    assert.is_true(a:allow())
    assert.is_true(s:health().connected)
    assert.is_true(s:health().peer_unparsed >= 2)  -- 'yesterday' and 'tripped', counted
  end)

  it("store:list() names a breaker open only in its keys, with its source", function()
    local s = cb.redis{ url = server:url() }
    stores[1] = s
    server:cli(("mset circuit_breaker:py:state open circuit_breaker:py:opened_at %d")
      :format(os.time()))
    server:cli("set circuit_breaker:shut:state closed")
    local listed = assert(s:list())
    assert.same({ { name = "py", source = "keys" } }, listed)
  end)

  it("peer_read_ms = 0 turns the reads off", function()
    local clock, sclock = cb.manual_clock(0), cb.manual_clock(0)
    local s = cb.redis{ url = server:url(), clock = sclock, peer_read_ms = 0 }
    stores[1] = s
    local a = cb.new{ name = "a", clock = clock, store = s }
    server:cli(("mset circuit_breaker:a:state open circuit_breaker:a:opened_at %d")
      :format(os.time()))
    for _ = 1, 3 do
      sclock:advance(1.1)
      s:poll(); s:wait(5); s:poll()
    end
    assert.equals("closed", a:state())
  end)

  it("many attached names are read a bounded batch at a time, all in turn", function()
    local clock, sclock = cb.manual_clock(0), cb.manual_clock(0)
    local s = cb.redis{ url = server:url(), clock = sclock }
    stores[1] = s
    local brs = {}
    for i = 1, 2500 do brs[i] = cb.new{ name = "n" .. i, clock = clock, store = s } end
    -- a peer opens three of them after they attached, so only reads find it
    for _, i in ipairs({ 1, 1234, 2500 }) do
      server:cli(("mset circuit_breaker:n%d:state open circuit_breaker:n%d:opened_at %d")
        :format(i, i, os.time()))
    end
    local ticks = 0
    local function seen()
      return brs[1]:state() == "open" and brs[1234]:state() == "open"
        and brs[2500]:state() == "open"
    end
    while not seen() and ticks < 10 do
      sclock:advance(1.1)
      s:poll()
      for _ = 1, 20 do s:wait(5); s:poll() end
      ticks = ticks + 1
    end
    assert.is_true(seen())
    assert.is_true(ticks >= 2 and ticks <= 4, ticks .. " ticks")  -- 1024 names a tick
    assert.equals("closed", brs[2]:state())
  end)
end)
