-- soak/worker.lua URL SECONDS ID -- one instance of the soak (soak.sh runs
-- several): an engine over a shared Redis with churn of sessions (ever-new
-- session ids against a bounded registry), of providers (reloads, and new
-- engines with another provider set) and of store attachments (breakers made, used and
-- dropped), until SECONDS have passed.  Prints one summary line at the end.
local cb = require("cbreaker")

local url, seconds, id = arg[1], tonumber(arg[2]), arg[3]
assert(url and seconds and id, "usage: worker.lua URL SECONDS ID")

local rng_state = 0
for c in id:gmatch(".") do rng_state = rng_state * 31 + c:byte() end
local function rand(n)  -- a small LCG: reproducible per worker, no math.random state
  rng_state = (rng_state * 1103515245 + 12345) % 2147483648
  return rng_state % n + 1
end

local ALL = { "p1", "p2", "p3", "p4", "p5", "p6" }
local function policy(k, threshold)
  local providers = {}
  for i = 1, 3 + k % 4 do providers[ALL[(k + i) % #ALL + 1]] = {
    failure_threshold = threshold or 3, reset_timeout = 0.2 } end
  return {
    providers = providers,
    sessions = { max_entries = 500, max_per_tenant = 50, idle_ttl = 0.05, unused_ttl = 0.05 },
    redis = { url = url, timeout_ms = 50, backoff_min = 0.05, backoff_max = 0.5, id = id },
    max_attempts = 2,
  }
end

local engine = cb.engine(policy(0))
local store = cb.redis{ url = url, timeout_ms = 50, backoff_min = 0.05, backoff_max = 0.5,
  id = id .. ":extra" }
local reasons = {}
local down = {}  -- provider -> failing until this time
local calls, ok_calls, rejected, reloads, made, slowest, engines = 0, 0, 0, 0, 0, 0, 1
local t_end = cb.now() + seconds
local next_outage, next_reload, next_engine, generation = 0, 0, cb.now() + 1, 0
local k = 0

local function provider_call(provider)
  if (down[provider] or 0) > cb.now() then error("provider down") end
  if rand(100) <= 3 then error("flaky") end
  return true
end

while cb.now() < t_end do
  k = k + 1
  local t0 = cb.now()
  -- ever-new sessions (each used ~10 times), expiring: the registry churns
  local ok, err = engine:call("t" .. rand(20), "s" .. (k // 10 + rand(5)), provider_call)
  local ms = (cb.now() - t0) * 1000
  if ms > slowest then slowest = ms end
  calls = calls + 1
  if ok then
    ok_calls = ok_calls + 1
  elseif cb.is_rejection(err) then
    rejected = rejected + 1
    reasons[err.reason] = (reasons[err.reason] or 0) + 1
  end
  if k % 1000 == 0 then  -- time-driven churn, checked every 1000 calls
    local now = cb.now()
    if now >= next_outage then  -- a provider fails for 0.3 s, twice a second
      down[ALL[rand(#ALL)]] = now + 0.3
      next_outage = now + 0.5
    end
    if now >= next_reload then  -- the same providers, other options
      engine:reload(policy(generation, 2 + rand(4)))
      reloads = reloads + 1
      next_reload = now + 0.25
    end
    if now >= next_engine then  -- another provider set: a new engine, the old one closed
      engine:close()
      generation = generation + 1
      engine = cb.engine(policy(generation))
      engines = engines + 1
      next_engine = now + 1
    end
  end
  if k % 50 == 0 then  -- a breaker attached, used, dropped
    local br = cb.new{ name = "dyn:" .. rand(200), store = store, failure_threshold = 2 }
    br:failure(); br:failure()
    if rand(4) == 1 then br:reset() end
    br:close()
    made = made + 1
    store:poll()
  end
  if k % 200 == 0 then collectgarbage("step") end
end
local h = store:health()
local why = {}
for r, n in pairs(reasons) do why[#why + 1] = ("%s:%d"):format(r:gsub(" ", "_"), n) end
table.sort(why)
print(("%s calls=%d ok=%d rejected=%d reloads=%d engines=%d breakers=%d slowest_ms=%.1f "
  .. "reconnects=%d failures=%d %s"):format(id, calls, ok_calls, rejected, reloads, engines, made,
  slowest, h.reconnects, h.failures, table.concat(why, " ")))
engine:close()
store:close()
