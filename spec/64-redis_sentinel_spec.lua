-- The store through Redis Sentinel against a real group the spec starts:
-- a master, a replica and three sentinels on loopback.  The master is
-- killed; the store, polled, finds the promoted replica by asking the
-- sentinels again on its next reconnect, no call blocking past timeout_ms
-- meanwhile, and no breaker state is lost.
local cb = require("cbreaker")
local fx = require("helpers.fixtures")
local helper = require("helpers.redis")

local TIMEOUT_MS = 200

describe("#redis the store through Sentinel", function()
  local master, group, stores

  -- One group for the block (it takes seconds to form): the failover,
  -- which kills its master, comes last.
  setup(function()
    master = helper.start()
    group = helper.sentinel_group(master, "cbmaster")
  end)

  teardown(function()
    if group then group.stop() end
    if master then master:stop() end
  end)

  before_each(function() stores = {} end)
  after_each(function()
    for _, s in ipairs(stores) do s:close() end
  end)

  local function store(id, clock)
    local s = cb.redis{ sentinels = group.sentinels, master = "cbmaster", id = id, clock = clock,
                        timeout_ms = TIMEOUT_MS, backoff_min = 0.1, backoff_max = 0.4 }
    stores[#stores + 1] = s
    return s
  end

  it("names what is wrong with the sentinels or the master name", function()
    local s = cb.redis{ sentinels = group.sentinels, master = "nosuchmaster", timeout_ms = TIMEOUT_MS }
    stores[#stores + 1] = s
    assert.is_false(s:health().connected)
    assert.matches("nosuchmaster", s:health().last_error, 1, true)
    local ok = store("OK")  -- the right name: connected to the master
    assert.is_true(ok:health().connected, ok:health().last_error)
  end)

  it("follows a failover: writes reach the new master, no state lost, no call blocked", function()
    local clock = cb.manual_clock(1000)
    local a = store("A", clock)
    assert.is_true(a:health().connected, a:health().last_error)
    local held = cb.new{ name = "held", clock = clock, store = a }
    held:force_open()
    -- the boot entry has reached the replica before the master dies
    for _ = 1, 100 do
      if group.replica:cli("hexists circuit_breaker:states held") == "1" then break end
      helper.nap(0.05)
    end
    assert.equals("1", group.replica:cli("hexists circuit_breaker:states held"))

    master:kill()
    local worst, promoted = 0, false
    for _ = 1, 300 do  -- at most ~30 s for the sentinels' failover
      clock:advance(0.5)  -- the reconnect back-off, on the store's clock
      worst = math.max(worst, helper.timed(a.poll, a), helper.timed(held.allow, held))
      if a:health().connected then
        promoted = group.replica:cli("role"):match("^master") ~= nil
        if promoted then break end
      end
      helper.nap(0.1)
    end
    assert.is_true(promoted, a:health().last_error)
    assert.is_true(worst <= TIMEOUT_MS + helper.MARGIN_MS,
      ("a call blocked %.0f ms during the failover"):format(worst))

    -- writes go to the new master
    local fresh = cb.new{ name = "fresh", clock = clock, store = a, failure_threshold = 1 }
    fresh:failure()
    assert.is_true(helper.eventually(function()
      return group.replica:cli("hexists circuit_breaker:states fresh") == "1"
    end, { a }))
    -- and a peer that starts now learns the forced-open breaker from it
    local b = store("B", clock)
    assert.is_true(b:health().connected, b:health().last_error)
    local peer = cb.new{ name = "held", clock = clock, store = b }
    assert.equals("forced-open", peer:state())
    assert.equals("forced-open", held:state())
  end)

end)

describe("cb.redis{sentinels = ..., master = ...} options", function()
  local function err_of(opts) return fx.error_of(cb.redis, opts) end

  it("name what is wrong", function()
    assert.matches("option 'sentinels' must be a list of \"host:port\" (got an empty table)",
      err_of{ sentinels = {}, master = "m" }, 1, true)
    assert.matches("option 'sentinels[2]' must be \"host:port\" (got number)",
      err_of{ sentinels = { "h:1", 26379 }, master = "m" }, 1, true)
    assert.matches("option 'sentinels[1]' must be \"host:port\" (got a string with",
      err_of{ sentinels = { "h:1/x" }, master = "m" }, 1, true)
    assert.matches("option 'master' must be the name the sentinels monitor (got nil)",
      err_of{ sentinels = { "h:1" } }, 1, true)
    assert.matches("option 'master' must be the name the sentinels monitor (got number)",
      err_of{ master = 5 }, 1, true)
    assert.matches("option 'master' needs 'sentinels', a list of \"host:port\"",
      err_of{ master = "m" }, 1, true)
    assert.matches("(got a string with '/', ',', '@', a space or a zero byte)",
      err_of{ sentinels = { "h:1\0x" }, master = "m" }, 1, true)
    assert.matches("give 'sentinels' and 'master', or 'url', not both",
      err_of{ sentinels = { "h:1" }, master = "m", url = "redis://h/0" }, 1, true)
    assert.matches("unknown option 'sentinel' (did you mean 'sentinels'?)",
      err_of{ sentinel = { "h:1" } }, 1, true)
  end)

  it("make the same store as the URL form", function()
    local s = cb.redis{ sentinels = { "127.0.0.1:1" }, master = "m", timeout_ms = 50 }
    local u = cb.redis{ url = "redis+sentinel://127.0.0.1:1/m", timeout_ms = 50 }
    assert.equals(u:health().last_error, s:health().last_error)
    assert.matches("127.0.0.1:1", s:health().last_error, 1, true)
    s:close(); u:close()
  end)
end)
