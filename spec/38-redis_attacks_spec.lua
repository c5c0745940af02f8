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

local function shq(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
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
