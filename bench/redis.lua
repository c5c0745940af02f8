-- bench/redis.lua -- the Redis store's costs, against baselines measured in
-- the same run, on a private redis-server (started and killed here).
--
--   build/cbreaker bench/redis.lua [N]
--
-- 1. broadcast mode: allow+success with a store attached vs without;
-- 2. shared mode: records/s vs redis-benchmark's PING rate (1 client, as the
--    store's one connection; and 50 clients, redis-benchmark's default);
-- 3. propagation: force_open() on one instance -> a peer's poll() sees it,
--    median and p99 over 10k trials;
-- 4. TLS (the same server's TLS port, certificates made with openssl): the
--    broadcast hot path with a TLS store vs a plain one, and shared-mode
--    records/s over TLS vs plain.
package.path = "spec/?.lua;" .. package.path
local cb = require("cbreaker")
local helper = require("helpers.redis")

local N = tonumber(arg and arg[1]) or 2000000
local server = helper.start({ tls = true })

local function best_of(runs, fn)
  local best = math.huge
  for _ = 1, runs do
    local t0 = cb.now()
    fn()
    local dt = cb.now() - t0
    if dt < best then best = dt end
  end
  return best
end

local function hot_loop(br, n)
  return function()
    for _ = 1, n do
      if br:allow() then br:success() end
    end
  end
end

local ok, err = pcall(function()
  -- 1. broadcast hot path -------------------------------------------------
  local store = cb.redis{ url = server:url(), id = "bench-a" }
  assert(store:health().connected, store:health().last_error)
  local plain = cb.new{ name = "svc" }
  local attached = cb.new{ name = "svc", store = store }
  local t_plain, t_store = math.huge, math.huge
  for _ = 1, 5 do  -- interleaved, best of each
    t_plain = math.min(t_plain, best_of(1, hot_loop(plain, N)))
    t_store = math.min(t_store, best_of(1, hot_loop(attached, N)))
  end
  print(("broadcast allow+success: without store %.1f M/s, with store %.1f M/s, ratio %.3f")
    :format(N / t_plain / 1e6, N / t_store / 1e6, t_plain / t_store))
  store:close()

  -- 2. shared mode round trips ---------------------------------------------
  local shared = cb.redis{ url = server:url(), id = "bench-s", mode = "shared" }
  local sb = cb.new{ name = "shared-svc", store = shared, failure_threshold = 0 }
  local R = 50000
  local t_shared = best_of(3, function()
    for _ = 1, R do sb:success() end
  end)
  assert(shared:health().connected, shared:health().last_error)
  shared:close()
  local function ping_rate(clients)
    local p = io.popen(("redis-benchmark -p %d -t ping -n 100000 -c %d -q 2>&1")
      :format(server.port, clients))
    local out = p:read("a")
    p:close()
    local rates = {}
    for r in out:gmatch("([%d%.]+) requests per second") do rates[#rates + 1] = tonumber(r) end
    return rates[#rates] or 0, out  -- PING_MBULK, a RESP command like EVALSHA
  end
  local ping1 = ping_rate(1)
  local ping50 = ping_rate(50)
  print(("shared records: %.0f records/s; redis-benchmark PING_MBULK -c 1: %.0f/s "
    .. "(ratio %.2f); -c 50: %.0f/s"):format(R / t_shared, ping1, R / t_shared / ping1, ping50))

  -- 3. propagation -----------------------------------------------------------
  local a = cb.redis{ url = server:url(), id = "prop-a" }
  local b = cb.redis{ url = server:url(), id = "prop-b" }
  local ba = cb.new{ name = "prop", store = a }
  local bb = cb.new{ name = "prop", store = b }
  local T = 10000
  local lat = {}
  local function settle(want)
    for _ = 1, 1000 do
      if bb:state() == want then return true end
      b:wait(50)
      b:poll()
    end
    error("peer never saw " .. want)
  end
  for i = 1, T do
    local t0 = cb.now()
    ba:force_open()
    settle("forced-open")
    lat[i] = (cb.now() - t0) * 1e6
    ba:reset()
    settle("closed")
    a:poll()  -- read A's replies and own messages
  end
  table.sort(lat)
  print(("propagation force_open -> peer poll over %d trials: median %.0f us, p99 %.0f us, max %.0f us")
    :format(T, lat[T // 2], lat[math.ceil(T * 0.99)], lat[T]))
  a:close(); b:close()

  -- 4. TLS --------------------------------------------------------------------
  local tls = { ca_file = server.certs.ca }
  local ts = cb.redis{ url = server:tls_url(), tls = tls, id = "bench-tls" }
  local ps = cb.redis{ url = server:url(), id = "bench-plain" }
  assert(ts:health().connected, ts:health().last_error)
  local on_tls = cb.new{ name = "svc-tls", store = ts }
  local on_plain = cb.new{ name = "svc-plain", store = ps }
  local t_tls, t_plain2 = math.huge, math.huge
  for _ = 1, 5 do
    t_plain2 = math.min(t_plain2, best_of(1, hot_loop(on_plain, N)))
    t_tls = math.min(t_tls, best_of(1, hot_loop(on_tls, N)))
  end
  print(("TLS, broadcast allow+success: plain store %.1f M/s, TLS store %.1f M/s, ratio %.3f"
    .. " (goal >= 0.9: %s)"):format(N / t_plain2 / 1e6, N / t_tls / 1e6, t_plain2 / t_tls,
    t_plain2 / t_tls >= 0.9 and "met" or "NOT MET"))
  ts:close(); ps:close()
  local function shared_rate(url, opts)
    local st = cb.redis{ url = url, tls = opts, id = "bench-shared", mode = "shared" }
    assert(st:health().connected, st:health().last_error)
    local br = cb.new{ name = "shared-" .. tostring(opts ~= nil), store = st, failure_threshold = 0 }
    local t = best_of(3, function() for _ = 1, R do br:success() end end)
    st:close()
    return R / t
  end
  local r_plain, r_tls = shared_rate(server:url()), shared_rate(server:tls_url(), tls)
  print(("TLS, shared records: plain %.0f records/s (%.1f us each), TLS %.0f records/s"
    .. " (%.1f us each), TLS / plain %.2f"):format(r_plain, 1e6 / r_plain, r_tls, 1e6 / r_tls,
    r_tls / r_plain))
end)
server:stop()
if not ok then error(err, 0) end
