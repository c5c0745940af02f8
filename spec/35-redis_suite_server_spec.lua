-- The suite's own redis-server: scripts/test (and so .ci/run) starts one on a
-- free loopback port and passes it as CB_TEST_REDIS_URL.  These specs share
-- it with nothing else, so they stay non-destructive: their keys and channel
-- carry a prefix of their own and are deleted afterwards.  Without the
-- variable they start a private server, like the other #redis specs.
local cb = require("cbreaker")
local helper = require("helpers.redis")

describe("#redis the suite's redis-server", function()
  local url, server, prefix, stores

  local function cli(args)
    local p = io.popen(("redis-cli -u '%s' %s 2>&1"):format(url, args))
    local out = p:read("a")
    p:close()
    return (out:gsub("%s+$", ""))
  end

  local function store(id)
    local s = cb.redis{ url = url, id = id, prefix = prefix, channel = prefix .. ":events",
                        timeout_ms = 200 }
    stores[#stores + 1] = s
    return s
  end

  setup(function()
    url = os.getenv("CB_TEST_REDIS_URL")
    if not url or url == "" then
      server = helper.start()
      url = server:url()
    end
    prefix = ("cbtest:%d:%d"):format(os.time(), math.random(1, 1e9))
  end)

  teardown(function()
    if url then cli(("--scan --pattern '%s:*' | xargs -r redis-cli -u '%s' del"):format(prefix, url)) end
    if server then server:stop() end
  end)

  before_each(function() stores = {} end)
  after_each(function() for _, s in ipairs(stores) do s:close() end end)

  it("carries a force-open and its reset between two stores", function()
    local a, b = store("A"), store("B")
    assert.is_true(a:health().connected)
    local ba = cb.new{ name = "provider", store = a }
    local bb = cb.new{ name = "provider", store = b }
    ba:force_open()
    assert.is_true(helper.eventually(function() return bb:state() == "forced-open" end, { b }))
    assert.matches('"forcedOpen":true', cli(("hget %s:states provider"):format(prefix)))
    -- a force lasts until a reset: the boot hash keeps no TTL while it holds one
    assert.equals(-1, tonumber(cli(("ttl %s:states"):format(prefix))))
    ba:reset()
    assert.is_true(helper.eventually(function() return bb:state() == "closed" end, { b }))
    assert.equals("", cli(("hget %s:states provider"):format(prefix)))
    local ttl = tonumber(cli(("ttl %s:states"):format(prefix)))
    assert.is_true(ttl == -2 or ttl > 0, "after the reset the boot hash is gone or expires")
  end)

  it("a store started later imports an open state from the boot hash", function()
    local a = store("A")
    local ba = cb.new{ name = "llm", store = a, failure_threshold = 1, reset_timeout = 600 }
    ba:failure()
    assert.equals("open", ba:state())
    helper.drain({ a })
    local late = store("C")
    local bc = cb.new{ name = "llm", store = late, reset_timeout = 600 }
    assert.equals("open", bc:state())
  end)
end)
