--- cbreaker.demo: `cbreaker demo`, an LLM gateway simulated on a manual
-- clock.  Four providers with different success rates and latencies serve
-- many tenants' agent sessions through one engine; one provider has an
-- outage in the middle of the run and recovers; one session is stuck in a
-- tool-call loop.  A table per provider is shown while it runs, and a
-- summary checks what should have happened.
local cb = require("cbreaker")

local M = {}

local floor, max, min = math.floor, math.max, math.min

-- ---- the simulated world ---------------------------------------------------------

--- Seeded uniform [0, 1) numbers (a 48-bit LCG is plenty for a simulation,
-- and never touches math.random).
local function rng(seed)
  local x = (seed * 2862933555777941757 + 3037000493) & 0xFFFFFFFFFFFF
  return function()
    x = (x * 25214903917 + 11) & 0xFFFFFFFFFFFF
    return (x >> 16) / 4294967296
  end
end

M.providers = {
  {name = "openai", success = 0.985, latency = 900},
  {name = "anthropic", success = 0.975, latency = 1100},
  {name = "mistral", success = 0.95, latency = 600},
  {name = "local-llama", success = 0.85, latency = 350},
}
M.outage = "openai"  -- down from 30% to 55% of the run

--- Provider breakers count the provider's faults, not the request's.
local function provider_fault(ok, err)
  if ok then return "success" end
  if type(err) == "table" and err.status and err.status < 500 then return "ignore" end
  return "failure"
end

--- Session guardrails count the session's own faults: an outage is the
-- providers' business (the fallback handles it), a tool loop is not.
local function session_fault(ok, err)
  if ok then return "success" end
  if type(err) == "table" and err.status and err.status >= 500 then return "ignore" end
  return "failure"
end

function M.policy(clock, seed, redis, secret, hash_tag)
  local providers = {}
  for _, p in ipairs(M.providers) do providers[p.name] = {} end
  return {
    clock = clock,
    defaults = {failure_threshold = 5, reset_timeout = 10, success_threshold = 2,
                failure_rate = 0.5, window = 40, min_calls = 20,
                backoff_factor = 2, max_reset_timeout = 60, classify = provider_fault},
    providers = providers,
    sessions = {max_entries = 2000, cleanup_every = 100, idle_ttl = 600,
                defaults = {failure_threshold = 5, reset_timeout = 120, classify = session_fault}},
    selection = {strategy = "thompson", decay = 0.98, seed = seed},
    sentinel = {force_open_after = 2},
    max_attempts = 2,
    redis = redis and {url = redis, secret = secret, hash_tag = hash_tag or nil} or nil,
  }
end

-- ---- display ------------------------------------------------------------------------

local function plural(n, word)
  return ("%d %s%s"):format(n, word, n == 1 and "" or "s")
end

local function bar(share, width)
  local n = floor(share * width + 0.5)
  return ("#"):rep(n) .. ("."):rep(width - n)
end

local function table_lines(e, done, total, clock, recent)
  local st = e:stats()
  local lines = {}
  local pct = done / total
  lines[1] = ("[%s] %3d%%  request %d/%d  t=%.0fs"):format(bar(pct, 30), floor(pct * 100 + 0.5),
    done, total, clock:now())
  lines[2] = ("  %-12s %-11s %7s %7s %7s  %s"):format("provider", "state", "calls", "fails",
    "share", "share of the last 200 requests")
  for _, name in ipairs(st.names) do
    local p = st.providers[name]
    lines[#lines + 1] = ("  %-12s %-11s %7d %7d %6.1f%%  %s"):format(name, p.state, p.selected,
      p.failures, (recent[name] or 0) * 100, bar(recent[name] or 0, 20))
  end
  local r = st.requests
  lines[#lines + 1] = ("  requests ok %d, errors %d, refused: session %d, all open %d"):format(
    r.ok, r.error, r.session_open, r.all_open)
  return lines
end

-- ---- the run --------------------------------------------------------------------------

--- Runs the simulation.  opts: requests (default 3000), seed (1), redis
-- (a URL or nil), hash_tag (with redis: the store's option, for a
-- redis+cluster:// URL), secret (the fleet's, with redis; nil: unsigned), out (a
-- file, default io.stdout), live (redraw in place: a terminal), pace
-- (seconds to sleep between redraws, terminal only).
-- Returns a report table; `report.ok` says whether every claim held.
function M.run(opts)
  opts = opts or {}
  local total = opts.requests or 3000
  local seed = opts.seed or 1
  local out = opts.out or io.stdout
  local clock = cb.manual_clock(0)
  local e = cb.engine(M.policy(clock, seed, opts.redis, opts.secret, opts.hash_tag))
  local rand = rng(seed)
  local by_name = {}
  for _, p in ipairs(M.providers) do by_name[p.name] = p end

  local outage_from, outage_to = floor(total * 0.30) + 1, floor(total * 0.55)
  local down = false
  local chosen = {}          -- request index -> provider of its first attempt
  local runaway = {tenant = "tenant-3", session = "agent-loop"}
  local runaway_ran, runaway_refused, runaway_stopped_after = 0, 0, nil
  local others_failed, others_refused, others = 0, 0, 0
  local probe_every = max(20, total // 40)

  local function provider_call(name, req)
    local p = by_name[name]
    chosen[req.i] = chosen[req.i] or name
    clock:advance(p.latency * (0.5 + rand()) / 1000 / 20)  -- 20 calls in flight
    if req.runaway then
      runaway_ran = runaway_ran + 1
      error({status = 400, message = "tool call loop: context too long"})
    end
    if down and name == M.outage then error({status = 503, message = name .. " outage"}) end
    if rand() >= p.success then error({status = 500, message = name .. " error"}) end
    return "completion from " .. name
  end

  local live = opts.live
  local frame_every = live and max(1, total // 100) or max(1, total // 10)
  local drawn = 0
  local function draw(i)
    local recent, n = {}, 0
    for k = max(1, i - 199), i do
      local c = chosen[k]
      if c then recent[c] = (recent[c] or 0) + 1; n = n + 1 end
    end
    for name, c in pairs(recent) do recent[name] = c / n end
    local lines = table_lines(e, i, total, clock, recent)
    if live then
      if drawn > 0 then out:write(("\27[%dA"):format(drawn)) end
      for _, l in ipairs(lines) do out:write("\27[2K", l, "\n") end
      drawn = #lines
      if opts.pace then opts.pace() end
    else
      for _, l in ipairs(lines) do out:write(l, "\n") end
    end
    out:flush()
  end

  for i = 1, total do
    down = i >= outage_from and i <= outage_to
    local req = {i = i}
    local tenant, session
    if i % 25 == 0 then
      tenant, session, req.runaway = runaway.tenant, runaway.session, true
    else
      tenant = "tenant-" .. floor(rand() * 5)
      session = "session-" .. floor(rand() * 60)
    end
    local ok, err = e:call(tenant, session, provider_call, req)
    if req.runaway then
      if not ok and cb.is_rejection(err) and err.reason == "session open" then
        runaway_refused = runaway_refused + 1
        runaway_stopped_after = runaway_stopped_after or runaway_ran
      end
    else
      others = others + 1
      if not ok then
        if cb.is_rejection(err) and err.reason == "session open" then
          others_refused = others_refused + 1
        else
          others_failed = others_failed + 1
        end
      end
    end
    if i % probe_every == 0 then  -- the health sentinel
      for _, p in ipairs(M.providers) do
        e:probe(p.name, not (down and p.name == M.outage))
      end
    end
    if i % frame_every == 0 or i == total then draw(i) end
  end

  -- ---- what happened -------------------------------------------------------------------
  local function share(from, to)
    local n, hit = 0, 0
    for i = from, to do
      if chosen[i] then
        n = n + 1
        if chosen[i] == M.outage then hit = hit + 1 end
      end
    end
    return n > 0 and hit / n or 0
  end
  -- Requests into the outage until the failing provider's share of the
  -- following 100 requests stays under 5%.
  local moved_after
  for i = outage_from, outage_to do
    if share(i, min(i + 99, outage_to)) < 0.05 then
      moved_after = i - outage_from + 1  -- requests into the outage, this one included
      break
    end
  end
  local outage_calls = 0
  for i = outage_from, outage_to do
    if chosen[i] == M.outage then outage_calls = outage_calls + 1 end
  end
  local back_at
  for i = outage_to + 1, total do
    if chosen[i] == M.outage then back_at = i - outage_to; break end
  end
  local before = share(1, outage_from - 1)
  local tail = share(outage_to + floor((total - outage_to) / 2), total)
  local st = e:stats()
  local report = {
    requests = total, seed = seed, outage = {from = outage_from, to = outage_to},
    moved_after = moved_after, outage_calls = outage_calls, back_at = back_at,
    share_before = before, share_after = tail,
    runaway_ran = runaway_ran, runaway_refused = runaway_refused,
    runaway_stopped_after = runaway_stopped_after,
    others = others, others_failed = others_failed, others_refused = others_refused,
    stats = st, engine = e,
  }
  local claims = {
    {moved_after ~= nil and moved_after <= 100,
     ("traffic moved off %s within %s of its outage (it took %d of %d outage requests)"):format(
       M.outage, moved_after and plural(moved_after, "request") or "(never)", outage_calls,
       outage_to - outage_from + 1)},
    {back_at ~= nil and tail >= 0.05,
     ("%s came back after recovery: first call %s later, %.1f%% of traffic at the end (%.1f%% before)"):format(
       M.outage, back_at and plural(back_at, "request") or "(never)", tail * 100, before * 100)},
    {runaway_stopped_after == 5,
     ("the runaway session %s/%s was stopped after %s failed calls; %d more were refused, %s let through"):format(
       runaway.tenant, runaway.session, tostring(runaway_stopped_after), runaway_refused,
       plural(runaway_ran - (runaway_stopped_after or runaway_ran), "half-open probe"))},
    {others_refused == 0 and others_failed / max(1, others) < 0.02,
     ("other sessions unaffected: %d requests, %d refused by a guardrail, %d failed (%.2f%%)"):format(
       others, others_refused, others_failed, others_failed / max(1, others) * 100)},
  }
  report.ok = true
  out:write("\nsummary (seed ", tostring(seed), ", ", tostring(total), " requests, ",
    ("%.0f"):format(clock:now()), " simulated seconds):\n")
  for _, c in ipairs(claims) do
    out:write(c[1] and "  [ok] " or "  [!!] ", c[2], "\n")
    report.ok = report.ok and c[1]
  end
  if e.store then  -- with --redis: what this process shared with its peers
    local h = e.store:health()
    out:write(("  redis: %s, %s published, %s applied\n"):format(
      h.connected and "connected" or "not connected (" .. tostring(h.last_error) .. ")",
      plural(h.published, "state change"), plural(h.applied, "peer message")))
  end
  out:flush()
  return report
end

return M
