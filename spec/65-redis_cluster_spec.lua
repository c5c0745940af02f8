-- The store on a Redis Cluster the spec starts: three masters on loopback,
-- joined with `redis-cli --cluster create`.  With hash_tag every key of the
-- store is "{prefix}:...", in one hash slot, so the store talks to that
-- slot's master whichever node it was given; when the slot moves (MOVED),
-- or is moving (ASK), writes are sent again and land on the new owner, and
-- one-key reads are asked of the node an ASK names.
local cb = require("cbreaker")
local fx = require("helpers.fixtures")
local helper = require("helpers.redis")

local TIMEOUT_MS = 200
local TLS_TIMEOUT_MS = 1000 + helper.SLACK_MS  -- handshakes too (spec 63's), slow under valgrind
local PREFIX = "cbcluster"
local CLUSTER_RIGHTS = "+cluster|slots +asking"  -- the README's additions on a Cluster

-- Breaker "api" on stores a and b, both connected: a forces it open and
-- b hears it.  Returns both breakers.
local function force_shared(a, b)
  assert.is_true(a:health().connected, a:health().last_error)
  local ba = cb.new{ name = "api", store = a }
  local bb = cb.new{ name = "api", store = b }
  ba:force_open()
  assert.is_true(helper.eventually(function() return bb:state() == "forced-open" end, { a, b }))
  return ba, bb
end

describe("#redis the store on a Redis Cluster", function()
  local cluster, slot, stores

  setup(function()
    cluster = helper.cluster(3)
    slot = tonumber(cluster.nodes[1]:cli(("cluster keyslot '{%s}'"):format(PREFIX)))
  end)

  teardown(function()
    if cluster then cluster.stop() end
  end)

  before_each(function() stores = {} end)
  after_each(function()
    for _, s in ipairs(stores) do s:close() end
  end)

  -- A node other than the slot's owner: the store must find the owner.
  local function not_owner()
    local owner = cluster:owner(slot)
    for i, node in ipairs(cluster.nodes) do
      if node ~= owner then return node, cluster.seeds[i] end
    end
  end

  -- 1 when `node` holds name's entry in the boot-recovery hash.
  local function in_boot_hash(node, name)
    return node:cli(("hexists '{%s}:states' %s"):format(PREFIX, name)) == "1"
  end

  -- Polls `s` until cond() holds, up to ~2 s: the reply comes from another
  -- process, so this waits in real time.
  local function polled_until(s, cond)
    for _ = 1, 200 do
      s:poll()
      if cond() then return end
      helper.nap(0.01)
    end
  end

  local function store(id, clock, extra)
    local _, seed = not_owner()
    local s = cb.redis(fx.with({ cluster = { seed }, hash_tag = true, prefix = PREFIX, id = id,
      clock = clock, timeout_ms = TIMEOUT_MS, backoff_min = 0.1, backoff_max = 0.4 }, extra))
    stores[#stores + 1] = s
    return s
  end

  -- Store A on a manual clock, with breaker `name` forced open and its entry
  -- in the boot-recovery hash on the slot's owner: clock, A, the breaker, the owner.
  local function forced_on_owner(name)
    local clock = cb.manual_clock(1000)
    local a = store("A", clock)
    local br = cb.new{ name = name, store = a, clock = clock }
    br:force_open()
    a:poll()
    local owner = cluster:owner(slot)
    assert.is_true(in_boot_hash(owner, name))
    return clock, a, br, owner
  end

  it("names what is wrong with cluster options", function()
    local function err(opts) return fx.error_of(cb.redis, opts) end
    assert.matches("a cluster needs hash_tag = true", err{ cluster = cluster.seeds }, 1, true)
    assert.matches("a cluster needs hash_tag = true",
      err{ url = "redis+cluster://" .. cluster.seeds[1] }, 1, true)
    assert.matches("'cluster' must be a list", err{ cluster = {}, hash_tag = true }, 1, true)
    assert.matches("'cluster[2]' must be \"host:port\"",
      err{ cluster = { cluster.seeds[1], 7 }, hash_tag = true }, 1, true)
    assert.matches("not both", err{ cluster = cluster.seeds, sentinels = cluster.seeds,
      master = "m", hash_tag = true }, 1, true)
    assert.matches("give 'cluster', or 'url', not both", err{ cluster = cluster.seeds, hash_tag = true,
      url = "redis://127.0.0.1:1/0" }, 1, true)
    assert.matches("cannot hold '{'", err{ hash_tag = true, prefix = "a{b}" }, 1, true)
    assert.matches("option 'hash_tag' must be a boolean", err{ hash_tag = "yes" }, 1, true)
    assert.matches("database 0 only",
      err{ url = "redis+cluster://" .. cluster.seeds[1] .. "/3", hash_tag = true }, 1, true)
  end)

  it("says which seed failed and why when none answers", function()
    local plain = helper.start()  -- a server without cluster support
    local s = cb.redis{ cluster = { "127.0.0.1:" .. plain.port }, hash_tag = true,
                        timeout_ms = TIMEOUT_MS }
    stores[#stores + 1] = s
    local h = s:health()
    plain:stop()
    assert.is_false(h.connected)
    assert.matches("cluster: CLUSTER SLOTS on 127.0.0.1:" .. plain.port, h.last_error, 1, true)
    assert.matches("cluster support disabled", h.last_error, 1, true)
  end)

  it("renames the keys with hash_tag on a plain server too: only stores alike share", function()
    local plain = helper.start()
    local function on_plain(id, extra)
      local s = cb.redis(fx.with({ url = plain:url(), prefix = PREFIX, id = id, timeout_ms = TIMEOUT_MS }, extra))
      stores[#stores + 1] = s
      return s
    end
    local tagged, alike, untagged = on_plain("T", { hash_tag = true }), on_plain("A", { hash_tag = true }), on_plain("U")
    cb.new{ name = "tagged", store = tagged }:force_open()
    tagged:poll()
    assert.equals("open", plain:cli(("get '{%s}:tagged:state'"):format(PREFIX)))
    assert.equals("", plain:cli(("get '%s:tagged:state'"):format(PREFIX)))
    assert.equals("forced-open", cb.new{ name = "tagged", store = alike }:state())  -- boot import
    assert.equals("closed", cb.new{ name = "tagged", store = untagged }:state())
    for _, s in ipairs(stores) do s:close() end
    stores = {}
    plain:stop()
  end)

  it("finds the slot's master from any seed; peers share state through it", function()
    local a, b = store("A"), store("B")
    local ba, bb = force_shared(a, b)
    -- every key in the one slot, on its owner, the breaker's name in each
    local owner = cluster:owner(slot)
    assert.equals("open", owner:cli(("get '{%s}:api:state'"):format(PREFIX)))
    assert.is_true(in_boot_hash(owner, "api"))
    assert.equals(tostring(slot), owner:cli(("cluster keyslot '{%s}:api:state'"):format(PREFIX)))
    -- a store that starts later imports the force from the boot hash
    local c = store("C")
    assert.equals("forced-open", cb.new{ name = "api", store = c }:state())
    ba:reset()
    assert.is_true(helper.eventually(function() return bb:state() == "closed" end, { a, b }))
  end)

  it("lets operators see, force and reset breakers on a cluster (--hash-tag)", function()
    local _, seed = not_owner()
    local url = "redis+cluster://" .. seed
    local code, out, err = fx.run_host(("force-open ops --redis %s --prefix %s --hash-tag"):format(url, PREFIX))
    assert.equals(0, code, out .. err)
    code, out, err = fx.run_host(("status ops --redis %s --prefix %s --hash-tag"):format(url, PREFIX))
    assert.equals(0, code, out .. err)
    assert.matches("forced%-open", out)
    code, out, err = fx.run_host(("status --redis %s --prefix %s --hash-tag"):format(url, PREFIX))
    assert.equals(0, code, out .. err)  -- every breaker held open: found on the slot's owner
    assert.matches("ops%s+forced%-open", out)
    code, out, err = fx.run_host(("reset ops --redis %s --prefix %s --hash-tag"):format(url, PREFIX))
    assert.equals(0, code, out .. err)
    assert.equals("0", cluster:owner(slot):cli(("exists '{%s}:ops:state'"):format(PREFIX)))
    code, _, err = fx.run_host(("status --redis %s --prefix %s"):format(url, PREFIX))
    assert.equals(1, code)
    assert.matches("a cluster needs hash_tag = true", err, 1, true)
  end)

  it("serves an engine whose policy names the cluster", function()
    local _, seed = not_owner()
    local e = cb.engine{ providers = { llm = {} }, sessions = false,
      redis = { cluster = { seed }, hash_tag = true, prefix = PREFIX, timeout_ms = TIMEOUT_MS } }
    assert.is_true(e.store:health().connected, e.store:health().last_error)
    e:breaker("llm"):force_open()
    e.store:poll()
    assert.is_true(helper.eventually(function() return in_boot_hash(cluster:owner(slot), "llm") end, { e.store }))
    e:breaker("llm"):reset()
    e:close()
  end)

  it("runs the demo on the cluster (--hash-tag)", function()
    local _, seed = not_owner()
    local code, out, err = fx.run_host(("demo --requests 400 --redis redis+cluster://%s --hash-tag"):format(seed))
    assert.equals(0, code, out .. err)
    assert.matches("redis: connected", out, 1, true)
  end)

  it("counts for the fleet in shared mode: one script, one slot", function()
    local a, b = store("A", nil, { mode = "shared" }), store("B", nil, { mode = "shared" })
    local ba = cb.new{ name = "shared-api", store = a, failure_threshold = 4 }
    local bb = cb.new{ name = "shared-api", store = b, failure_threshold = 4 }
    fx.fail(ba, 2)
    fx.fail(bb, 2)  -- the fourth failure, fleet-wide: open
    assert.equals("open", bb:state())
    assert.equals(0, b:health().failures, b:health().last_error)
    assert.equals("open", cluster:owner(slot):cli(("get '{%s}:shared-api:state'"):format(PREFIX)))
  end)

  it("runs as the README's least-privilege ACL user with +cluster|slots +asking", function()
    for _, node in ipairs(cluster.nodes) do  -- ACL users are per node
      helper.acl_user(node, "cb", "pw-cluster-1", { "{" .. PREFIX .. "}:*" },
        { "circuit_breaker:events" }, CLUSTER_RIGHTS)
      node:cli("acl log reset")
    end
    local a = store("A", nil, { username = "cb", password = "pw-cluster-1" })
    local b = store("B", nil, { username = "cb", password = "pw-cluster-1", mode = "shared" })
    assert.is_true(a:health().connected, a:health().last_error)
    assert.is_true(b:health().connected, b:health().last_error)
    local ba = cb.new{ name = "acl", store = a }
    local bb = cb.new{ name = "acl", store = b, failure_threshold = 2 }
    ba:force_open()
    assert.is_true(helper.eventually(function() return bb:state() == "forced-open" end, { a, b }))
    ba:reset()
    assert.is_true(helper.eventually(function() return bb:state() == "closed" end, { a, b }))
    fx.fail(bb, 2)
    assert.equals("open", bb:state())
    for _, node in ipairs(cluster.nodes) do
      assert.equals("", node:cli("acl log"), "refused on " .. node.port)
    end
  end)

  it("hears a message published on any node", function()
    local a = store("A")
    local ba = cb.new{ name = "svc", store = a }
    local other = not_owner()
    other:cli(([[publish circuit_breaker:events '{"serviceId":"svc","state":"open","ts":1,"forcedOpen":true,"recovered":false,"origin":"X"}']]))
    assert.is_true(helper.eventually(function() return ba:state() == "forced-open" end, { a }))
  end)

  it("follows the slot when it moves (MOVED): no state lost, writes land on the new owner", function()
    local clock, a, held, old = forced_on_owner("held")
    local to = not_owner()
    cluster:move_slot(slot, to)
    assert.equals(to, cluster:owner(slot))
    -- the next write goes to the old owner, which answers MOVED
    local later = cb.new{ name = "later", store = a, clock = clock }
    later:force_open()
    local ok = helper.reconnect({ a }, clock, 0.2, function()
      return in_boot_hash(to, "later")
    end)
    assert.is_true(ok, a:health().last_error)
    assert.matches("MOVED " .. slot, a:health().last_error, 1, true)
    assert.is_true(in_boot_hash(to, "held"))  -- migrated
    assert.equals("0", old:cli("dbsize"))
    assert.equals("forced-open", held:state())
    -- a store that starts now finds the new owner and the forces
    local b = store("B")
    assert.equals("forced-open", cb.new{ name = "held", store = b }:state())
    assert.equals("forced-open", cb.new{ name = "later", store = b }:state())
    held:reset()
    later:reset()
    a:poll()
  end)

  it("asks the seeds again on every reconnect: a remembered owner is not trusted for ever", function()
    local clock = cb.manual_clock(1000)
    local a = store("A", clock)
    assert.is_true(a:health().connected, a:health().last_error)
    local seed = not_owner()
    local function asked()  -- CLUSTER SLOTS the seed has served
      return tonumber(seed:cli("info commandstats"):match("cmdstat_cluster|slots:calls=(%d+)")) or 0
    end
    local before = asked()
    local owner = cluster:owner(slot)
    owner:cli("client kill type pubsub")  -- both of the store's connections drop
    owner:cli("client kill type normal")
    assert.is_true(helper.reconnect({ a }, clock, 0.5, function()
      return a:health().reconnects >= 1
    end), a:health().last_error)
    assert.equals(before + 1, asked())  -- once: the second connection used its answer
  end)

  it("sends a write again that met a migration (ASK) until the slot has moved", function()
    local clock = cb.manual_clock(1000)
    local a = store("A", clock)
    local br = cb.new{ name = "moving", store = a, clock = clock }
    a:poll()
    local to = not_owner()
    local finish = cluster:move_slot(slot, to, false)  -- keys moved, slot not yet
    br:force_open()  -- its keys are gone from the old owner: ASK
    polled_until(a, function() return a:health().last_error:find("ASK", 1, true) end)
    assert.matches("ASK " .. slot, a:health().last_error, 1, true)
    local failures = a:health().failures
    for _ = 1, 3 do  -- after each back-off it tries again, and meets ASK again
      clock:advance(0.5)
      polled_until(a, function() return a:health().failures > failures end)
      assert.is_true(a:health().failures > failures, a:health().last_error)
      failures = a:health().failures
    end
    assert.matches("ASK " .. slot, a:health().last_error, 1, true)
    finish()
    local ok = helper.reconnect({ a }, clock, 0.5, function()
      return in_boot_hash(to, "moving")
    end)
    assert.is_true(ok, a:health().last_error)
    local b = store("B")
    assert.equals("forced-open", cb.new{ name = "moving", store = b }:state())
    br:reset()
    a:poll()
  end)

  it("follows ASK with one-key commands: a store that starts mid-migration imports the forces", function()
    local clock, a, early, from = forced_on_owner("early")
    local to = not_owner()
    for _, node in ipairs(cluster.nodes) do
      helper.acl_user(node, "cb", "pw-cluster-2", { "{" .. PREFIX .. "}:*" },
        { "circuit_breaker:events" }, CLUSTER_RIGHTS)
      node:cli("acl log reset")
    end
    local finish = cluster:move_slot(slot, to, false)  -- keys moved, slot still `from`'s
    assert.equals("0", from:cli("dbsize"))
    -- HGETALL and HGET meet ASK on `from` and are asked of `to`, after ASKING
    local b = store("B", clock, { username = "cb", password = "pw-cluster-2" })
    assert.is_true(b:health().connected, b:health().last_error)
    local seen = cb.new{ name = "early", store = b, clock = clock }
    assert.equals("forced-open", seen:state())
    assert.matches("early", table.concat(b:names(), " "), 1, true)  -- HKEYS
    for _, node in ipairs(cluster.nodes) do
      assert.equals("", node:cli("acl log"), "refused on " .. node.port)
    end
    -- a write is one script over several keys: `to` answers TRYAGAIN after
    -- ASKING until the migration ends, so it waits out the back-off
    local c = store("C", clock, { mode = "shared" })
    assert.is_true(c:health().connected, c:health().last_error)
    fx.fail(cb.new{ name = "early-shared", store = c, clock = clock }, 1)
    assert.matches("TRYAGAIN", c:health().last_error, 1, true)
    finish()
    early:reset()
    local ok = helper.reconnect({ a }, clock, 0.5, function()
      return not in_boot_hash(to, "early")
    end)
    assert.is_true(ok, a:health().last_error)
    assert.is_true(helper.eventually(function() return seen:state() == "closed" end, { b }))
  end)
end)

describe("#redis the store on a Redis Cluster over TLS (rediss+cluster)", function()
  local cluster, slot

  setup(function()
    cluster = helper.cluster(3, { tls = true })
    slot = tonumber(cluster.nodes[1]:cli(("cluster keyslot '{%s}'"):format(PREFIX)))
  end)

  teardown(function()
    if cluster then cluster.stop() end
  end)

  it("finds the slot's master over TLS from a seed that does not own it; peers share through it", function()
    local owner, seed = cluster:owner(slot), nil
    for i, node in ipairs(cluster.nodes) do
      if node ~= owner then seed = cluster.tls_seeds[i] end
    end
    local stores = {}
    local function store(id, tls)
      local s = cb.redis{ url = "rediss+cluster://" .. seed, tls = tls or { ca_file = cluster.certs.ca },
        hash_tag = true, prefix = PREFIX, id = id, timeout_ms = TLS_TIMEOUT_MS }
      stores[#stores + 1] = s
      return s
    end
    finally(function() for _, s in ipairs(stores) do s:close() end end)
    force_shared(store("A"), store("B"))
    assert.equals("open", owner:cli(("get '{%s}:api:state'"):format(PREFIX)))
    -- the owner's address came from CLUSTER SLOTS asked over TLS: its TLS port
    assert.truthy(owner:cli("client list"):find("laddr=127.0.0.1:" .. owner.tls_port, 1, true))
    assert.equals("forced-open", cb.new{ name = "api", store = store("C") }:state())  -- boot import
    -- a CA that signed none of the nodes' certificates: refused, and said so
    local other = store("D", { ca_file = cluster.certs.other_ca })
    assert.is_false(other:health().connected)
    assert.matches("certificate", other:health().last_error)
  end)
end)
