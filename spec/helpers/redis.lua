--- A private redis-server for the #redis specs (hiredis's test.sh does the
-- same): a free loopback port, a temp dir, a pidfile, killed in teardown and
-- again when busted exits, whatever failed.  Without redis-server the specs
-- fail loudly: `start` raises.
local cb = require("cbreaker")
local with = require("helpers.fixtures").with

local M = {}

local running = {}  -- port -> server, for the exit guard

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function have(prog)
  return sh("command -v " .. prog .. " >/dev/null 2>&1")
end

local Server = {}
Server.__index = Server

function Server:url(db)
  return ("redis://127.0.0.1:%d/%d"):format(self.port, db or 0)
end

--- A server started with `tls = true`: its TLS port's URL, and the paths of
-- the certificates the helper made (ca, other_ca, client cert and key).
function Server:tls_url(db, host)
  return ("rediss://%s:%d/%d"):format(host or "127.0.0.1", self.tls_port, db or 0)
end

--- A test CA, a server certificate it signs for localhost and 127.0.0.1,
-- another CA that signed nothing here, and a client certificate, made with
-- the openssl command in `dir`.  Returns the paths, or raises.
local function make_certs(dir)
  local key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  local cmd = ("cd '%s' && exec >openssl.log 2>&1 && "
    .. "openssl req -x509 %s -keyout ca.key -out ca.crt -days 2 -subj '/CN=cbreaker test CA' && "
    .. "openssl req -x509 %s -keyout other-ca.key -out other-ca.crt -days 2 -subj '/CN=another CA' && "
    .. "openssl req %s -keyout server.key -out server.csr -subj '/CN=localhost' && "
    .. "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' >server.ext && "
    .. "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
    .. "-out server.crt -days 2 -extfile server.ext && "
    .. "openssl req %s -keyout client.key -out client.csr -subj '/CN=cbreaker client' && "
    .. "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
    .. "-out client.crt -days 2"):format(dir, key, key, key, key)
  if not sh(cmd) then error("openssl could not make test certificates: " .. (read(dir .. "/openssl.log") or ""), 3) end
  return { dir = dir, ca = dir .. "/ca.crt", other_ca = dir .. "/other-ca.crt",
           cert = dir .. "/client.crt", key = dir .. "/client.key" }
end

--- Runs redis-cli against this server; returns its output (trimmed).
function Server:cli(args)
  local auth = self.password and ("-a '%s' --no-auth-warning "):format(self.password) or ""
  local p = io.popen(("redis-cli -p %d %s%s 2>&1"):format(self.port, auth, args))
  local out = p:read("a")
  p:close()
  return (out:gsub("%s+$", ""))
end

function Server:pid()
  return tonumber(read(self.dir .. "/redis.pid") or "")
end

local function launch(self)
  local cmd = ("redis-server --port %d --bind 127.0.0.1 --dir %s --daemonize yes "
    .. "--pidfile %s/redis.pid --logfile %s/redis.log --save '' --appendonly no "
    .. "--unixsocket %s/redis.sock --unixsocketperm 700 %s"):format(
    self.port, self.dir, self.dir, self.dir, self.dir,
    self.password and ("--requirepass '%s'"):format(self.password) or "")
  if self.args then cmd = cmd .. " " .. self.args end
  if self.tls_port then  -- the plain port stays for redis-cli
    local d = self.certs.dir
    cmd = cmd .. (" --tls-port %d --tls-cert-file %s/server.crt --tls-key-file %s/server.key "
      .. "--tls-ca-cert-file %s/ca.crt --tls-auth-clients %s"):format(self.tls_port, d, d, d,
      self.tls_clients or "no")
  end
  if not sh(cmd) then return false end
  for _ = 1, 400 do  -- bounded: ~2 s of redis-cli round trips
    if self:cli("ping") == "PONG" then return true end
    local log = read(self.dir .. "/redis.log") or ""
    if log:find("Address already in use", 1, true) then return false end
  end
  return false
end

--- Starts a server on a free port.  `opts.password`: requirepass;
-- `opts.tls`: a TLS port too (server:tls_url(), server.certs), with
-- `opts.tls_clients = "yes"` asking clients for a certificate, and
-- `opts.certs`: another TLS server's certificates, shared (one CA).
function M.start(opts)
  if not have("redis-server") or not have("redis-cli") then
    error("redis-server/redis-cli not found: install the redis-server package "
      .. "(the #redis specs need a real server)", 2)
  end
  local p = io.popen("mktemp -d /tmp/cbreaker-redis.XXXXXX")
  local dir = p:read("l")
  p:close()
  assert(dir and dir ~= "", "mktemp failed")
  local seed = math.floor(os.time() + os.clock() * 1e6)
  math.randomseed(seed)
  local certs = opts and opts.tls and (opts.certs or make_certs(dir))
  local top = opts and opts.cluster and 55000 or 60000  -- a node's bus port is port + 10000
  for _ = 1, 20 do
    local self = setmetatable({ port = math.random(20000, top), dir = dir,
      password = opts and opts.password, certs = certs,
      tls_port = certs and math.random(20000, top) or nil,
      tls_clients = opts and opts.tls_clients, args = opts and opts.args }, Server)
    if opts and opts.cluster then
      self.args = ("--cluster-enabled yes --cluster-config-file %s/nodes.conf "
        .. "--cluster-node-timeout 2000 %s"):format(dir, self.args or "")
    end
    if launch(self) then
      running[self] = true
      return self
    end
    self:kill()
  end
  local log = read(dir .. "/redis.log") or ""
  sh("rm -rf '" .. dir .. "'")
  error(log:sub(-300) .. "\ncould not start redis-server", 2)
end

--- Waits `seconds` of real time: for an outside process (a sentinel's
-- failover) only; the specs' own timing uses the manual clock.
function M.nap(seconds)
  sh(("sleep %.3f"):format(seconds))
end

--- A Sentinel group on loopback: `master` (a started server), a replica
-- of it and three sentinels monitoring it as `name` with short timeouts
-- (down after 500 ms).  Returns the group once the sentinels see the
-- replica and each other (bounded), with group.sentinels ({"host:port"}),
-- group.replica and group:stop().  Raises without redis-sentinel.
function M.sentinel_group(master, name)
  if not have("redis-sentinel") then
    error("redis-sentinel not found: install the redis-sentinel package", 2)
  end
  local replica = M.start({ args = ("--replicaof 127.0.0.1 %d"):format(master.port) })
  -- Sentinels learn replicas from the master's INFO, every 10 s after the
  -- first: start them once the replica is linked, so the first one names it.
  for _ = 1, 100 do
    if replica:cli("info replication"):find("master_link_status:up", 1, true) then break end
    M.nap(0.05)
  end
  local group = { replica = replica, sentinels = {}, pids = {}, dir = replica.dir }
  running[group] = true  -- killed by the exit guard too
  function group.stop()
    running[group] = nil
    for _, pidfile in ipairs(group.pids) do
      local pid = tonumber(read(pidfile) or "")
      if pid then sh(("kill -9 %d 2>/dev/null"):format(pid)) end
    end
    replica:stop()
  end
  local function ping(port)
    local p = io.popen(("redis-cli -p %d ping 2>/dev/null"):format(port))
    local out = p:read("a")
    p:close()
    return out:match("PONG") ~= nil
  end
  for i = 1, 3 do
    local pidfile = ("%s/sentinel%d.pid"):format(replica.dir, i)
    for _ = 1, 10 do  -- a random port may be taken: then another
      local port = math.random(20000, 60000)
      local conf = ("%s/sentinel%d.conf"):format(replica.dir, i)
      local f = assert(io.open(conf, "w"))
      f:write(("port %d\nbind 127.0.0.1\ndaemonize yes\ndir %s\npidfile %s\n"
        .. "logfile %s/sentinel%d.log\nsentinel monitor %s 127.0.0.1 %d 2\n"
        .. "sentinel down-after-milliseconds %s 500\nsentinel failover-timeout %s 2000\n"):format(
        port, replica.dir, pidfile, replica.dir, i, name, master.port, name, name))
      f:close()
      if not ping(port) and sh(("redis-sentinel %s >/dev/null"):format(conf)) then
        for _ = 1, 40 do
          if ping(port) then break end
          M.nap(0.05)
        end
        if ping(port) then
          group.sentinels[i] = "127.0.0.1:" .. port
          break
        end
        local pid = tonumber(read(pidfile) or "")
        if pid then sh(("kill -9 %d 2>/dev/null"):format(pid)) end
      end
    end
    group.pids[i] = pidfile
    if not group.sentinels[i] then
      group.stop()
      error("redis-sentinel did not start: " .. (read(("%s/sentinel%d.log"):format(replica.dir, i)) or ""), 2)
    end
  end
  -- A failover needs the sentinels to know the replica and each other.
  local function field(addr, key)
    local p = io.popen(("redis-cli -p %s sentinel master %s 2>/dev/null"):format(addr:match(":(%d+)$"), name))
    local out = p:read("a")
    p:close()
    return tonumber(out:match(key .. "\n(%d+)"))
  end
  local seen = {}
  for _ = 1, 300 do  -- at most 30 s: sentinels say hello every 2 s
    local ready = true
    for i, addr in ipairs(group.sentinels) do
      local others, replicas = field(addr, "num%-other%-sentinels"), field(addr, "num%-slaves")
      seen[i] = ("%s: %s other sentinels, %s replicas"):format(addr, others, replicas)
      ready = ready and others == 2 and replicas == 1
    end
    if ready then return group end
    M.nap(0.1)
  end
  group.stop()
  error("the sentinels did not see the replica and each other within 30 s ("
    .. table.concat(seen, "; ") .. ")", 2)
end

-- The commands of the least-privilege user: the store's own (SELECT,
-- SUBSCRIBE, SCRIPT LOAD, EVALSHA, HGETALL, HGET, HKEYS, SET, SCAN), then its
-- scripts' (store_script.h).  The README shows this very line.
M.ACL_COMMANDS = "-@all +select +subscribe +script|load +evalsha +hgetall +hget +hkeys +set +scan"
  .. " +get +getrange +hstrlen +exists +del +hset +hdel +incr +pexpire +persist +publish"
  .. " +sadd +srem +scard +zadd +zcard +zremrangebyscore +time"

--- ACL SETUSER name on >password, the key patterns and channels given, and
-- M.ACL_COMMANDS plus `extra` (e.g. "+cluster|slots"), through the admin
-- (default) user; every word quoted for the shell.
function M.acl_user(server, name, password, keys, channels, extra)
  local shq = require("helpers.fixtures").shq
  local words = { "ACL", "SETUSER", name, "on", ">" .. password, "resetkeys" }
  for _, k in ipairs(keys) do words[#words + 1] = "~" .. k end
  words[#words + 1] = "resetchannels"
  for _, c in ipairs(channels) do words[#words + 1] = "&" .. c end
  for w in (M.ACL_COMMANDS .. " " .. (extra or "")):gmatch("%S+") do words[#words + 1] = w end
  for i, w in ipairs(words) do words[i] = shq(w) end
  local out = server:cli(table.concat(words, " "))
  assert(out == "OK", "ACL SETUSER: " .. out)
end

--- A Redis Cluster on loopback: `n` masters (3 by default) started with
-- --cluster-enabled and joined by `redis-cli --cluster create`.  Returns
-- it once every node says cluster_state:ok (bounded), with cluster.nodes
-- (servers), cluster.seeds ({"host:port"}), cluster:owner(slot) (the
-- node serving it), cluster:move_slot(slot, to, finish) and cluster.stop().
-- `opts.tls`: every node has a TLS port too (cluster.tls_seeds),
-- certificates from one CA (cluster.certs), and the cluster bus runs over
-- TLS (tls-cluster yes).
function M.cluster(n, opts)
  n = n or 3
  local tls = opts and opts.tls
  local cluster = { nodes = {}, seeds = {} }
  running[cluster] = true
  function cluster.stop()
    running[cluster] = nil
    for _, node in ipairs(cluster.nodes) do node:stop() end
  end
  for i = 1, n do
    cluster.nodes[i] = M.start({ cluster = true, tls = tls, certs = cluster.certs,
      args = tls and "--tls-cluster yes" or nil })
    cluster.certs = cluster.nodes[i].certs
    cluster.seeds[i] = "127.0.0.1:" .. cluster.nodes[i].port
    if tls then
      cluster.tls_seeds = cluster.tls_seeds or {}
      cluster.tls_seeds[i] = "127.0.0.1:" .. cluster.nodes[i].tls_port
    end
  end
  -- Over TLS the bus port is the TLS port + 10000: the nodes meet there.
  local out = cluster.nodes[1]:cli((tls and ("--tls --cacert %s "):format(cluster.certs.ca) or "")
    .. "--cluster create " .. table.concat(tls and cluster.tls_seeds or cluster.seeds, " ")
    .. " --cluster-replicas 0 --cluster-yes")
  for _ = 1, 200 do  -- at most ~10 s for the nodes to agree
    local ok = true
    for _, node in ipairs(cluster.nodes) do
      ok = ok and node:cli("cluster info"):find("cluster_state:ok", 1, true) ~= nil
    end
    if ok then return setmetatable(cluster, { __index = M.Cluster }) end
    M.nap(0.05)
  end
  cluster.stop()
  error("the cluster did not form: " .. out:sub(-300), 2)
end

M.Cluster = {}

function M.Cluster:id(node)
  return node:cli("cluster myid")
end

--- The node that serves `slot`, by what the first live node says.
function M.Cluster:owner(slot)
  for _, node in ipairs(self.nodes) do
    local slots = node:cli("cluster slots")
    for from, to, port in slots:gmatch("(%d+)\n(%d+)\n[^\n]*\n(%d+)") do
      if tonumber(from) <= slot and slot <= tonumber(to) then
        for _, other in ipairs(self.nodes) do
          if other.port == tonumber(port) then return other end
        end
      end
    end
  end
end

--- Moves `slot` to node `to` the way redis-cli --cluster reshard does:
-- IMPORTING/MIGRATING, MIGRATE of its keys, then SETSLOT NODE everywhere.
-- With `finish == false` it stops before the last step: the slot is then
-- being migrated, and its old owner answers ASK for keys it no longer has.
-- Returns a function that does the last step.
function M.Cluster:move_slot(slot, to, finish)
  local from = self:owner(slot)
  local to_id, from_id = self:id(to), self:id(from)
  assert(to:cli(("cluster setslot %d importing %s"):format(slot, from_id)) == "OK")
  assert(from:cli(("cluster setslot %d migrating %s"):format(slot, to_id)) == "OK")
  for _ = 1, 100 do
    local keys = from:cli(("cluster getkeysinslot %d 100"):format(slot))
    if keys == "" then break end
    local list = {}
    for k in keys:gmatch("[^\n]+") do list[#list + 1] = require("helpers.fixtures").shq(k) end
    local r = from:cli(("migrate 127.0.0.1 %d '' 0 5000 keys %s"):format(to.port,
      table.concat(list, " ")))
    assert(r == "OK", "MIGRATE: " .. r)
  end
  local function done()
    for _, node in ipairs(self.nodes) do
      node:cli(("cluster setslot %d node %s"):format(slot, to_id))
    end
  end
  if finish ~= false then done() end
  return done
end

--- kill -9, as a crash would.
function Server:kill()
  local pid = self:pid()
  if pid then sh(("kill -9 %d 2>/dev/null"):format(pid)) end
  os.remove(self.dir .. "/redis.pid")
  -- wait until the port is really free (bounded)
  for _ = 1, 200 do
    if self:cli("ping") ~= "PONG" then break end
  end
end

function Server:restart()
  self:kill()
  assert(launch(self), "redis-server did not come back on port " .. self.port)
end

function Server:pause()  -- a hung server: connections open, no replies
  sh(("kill -STOP %d"):format(self:pid()))
end

function Server:resume()
  sh(("kill -CONT %d"):format(self:pid()))
end

function Server:stop()
  if not running[self] then return end
  running[self] = nil
  local pid = self:pid()
  if pid then sh(("kill -CONT %d 2>/dev/null; kill -9 %d 2>/dev/null"):format(pid, pid)) end
  sh("rm -rf '" .. self.dir .. "'")
end

function M.stop_all()
  for s in pairs(running) do s:stop() end
end

-- The exit guard: a spec that errors before its teardown leaves nothing.
local ok, busted = pcall(require, "busted")
if ok and busted.subscribe then
  busted.subscribe({ "exit" }, function()
    M.stop_all()
    return nil, true
  end)
end

--- Gives the enclosing describe block a private server, started once, and
-- a fresh list of stores for each test, closed after it.  `set(server,
-- stores)` receives both before each test.  `opts` is start's, plus
-- `restart`: restart the server after each test (for specs that kill or
-- pause it) instead of flushing it before.
function M.use_server(set, opts)
  local server, stores
  busted.setup(function() server = M.start(opts) end)
  busted.teardown(function() if server then server:stop() end end)
  busted.before_each(function()
    if not (opts and opts.restart) then server:cli("flushall") end
    stores = {}
    set(server, stores)
  end)
  busted.after_each(function()
    for _, s in ipairs(stores) do s:close() end
    if opts and opts.restart then server:restart() end
  end)
end

--- The fault specs' store timeout, and the margin a call may take beyond
-- it: scheduling noise on a shared 2-core machine and sanitizers, plus
-- CB_TIME_SLACK_MS where everything is slower still (under valgrind).
M.TIMEOUT_MS = 100
M.SLACK_MS = tonumber(os.getenv("CB_TIME_SLACK_MS")) or 0
M.MARGIN_MS = 60 + M.SLACK_MS

--- Store options for the fault specs: calls bounded by TIMEOUT_MS, a
-- reconnect back-off of 1 to 8 s on the test's clock.
M.FAULT_STORE = { timeout_ms = M.TIMEOUT_MS, backoff_min = 1, backoff_max = 8 }

--- Runs fn(...), returns how long it took in ms (real time).
function M.timed(fn, ...)
  local t0 = cb.now()
  fn(...)
  return (cb.now() - t0) * 1000
end

--- use_server plus the two factories every #redis block writes: returns
-- store(id, extra) and breaker(s, name, extra), built on the current
-- test's server and clock.  `opts` is use_server's, plus `store` and
-- `breaker` (default options of each), and `clock` (each test gets a new
-- manual clock at that time; nil: none).  `set(server, stores, clock)`
-- receives the current test's objects before each test.
function M.fixture(opts, set)
  opts = opts or {}
  local server, stores, clock
  M.use_server(function(s, list)
    server, stores = s, list
    clock = opts.clock and cb.manual_clock(opts.clock) or nil
    if set then set(server, stores, clock) end
  end, opts)
  local function store(id, extra)
    local s = cb.redis(with(with({ url = server:url(), id = id, clock = clock }, opts.store), extra))
    stores[#stores + 1] = s
    return s
  end
  local function breaker(s, name, extra)
    return cb.new(with(with({ name = name or "svc", clock = clock, store = s }, opts.breaker), extra))
  end
  return store, breaker
end

--- Lets the stores' reconnect back-off elapse on `clock`, `step` seconds at
-- a time (at most 20 steps), until every store is connected again and
-- cond() holds (a loaded machine may time a handshake out: that costs one
-- more back-off).  `poll(s)` polls a store; s:poll() by default.
function M.reconnect(list, clock, step, cond, poll)
  for _ = 1, 20 do
    local all = true
    for _, s in ipairs(list) do
      s:wait(5)
      if poll then poll(s) else s:poll() end
      all = all and s:health().connected
    end
    if all and (not cond or cond()) then return true end
    clock:advance(step)
  end
  return false
end

--- Polls `stores` until cond() holds: at most `rounds` waits of 20 ms on
-- their subscriptions (so a lost message fails instead of hanging).
function M.eventually(cond, stores, rounds)
  for _ = 1, rounds or 50 do
    if cond() then return true end
    for _, s in ipairs(stores) do
      s:wait(20 / #stores)
      s:poll()
    end
  end
  return cond()
end

--- Polls every store until each had `quiet` empty polls in a row.
function M.drain(stores)
  for _, s in ipairs(stores) do
    for _ = 1, 20 do
      if not s:wait(10) then break end
      s:poll()
    end
  end
end

return M
