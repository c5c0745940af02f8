--- cbreaker.engine: routes calls across providers under a policy.
--
--   local engine = cb.engine(policy)          -- a table or a policy file
--   local ok, reply = engine:call(tenant, session, function(provider, req)
--     return http_post(endpoints[provider], req)
--   end, request)
--
-- Each call passes the session's guardrail breaker (one session in an error
-- loop is stopped without touching the other sessions), picks a provider
-- whose breaker allows a call (cbreaker.selection: Thompson sampling by
-- default), runs
-- the function under that provider's breaker, and records the outcome on the
-- session, the provider and the selector.  Permits are never leaked: every
-- allow() that succeeds is followed by exactly one record().  The engine is
-- plain Lua around the C objects, so fn may yield (an event loop's
-- coroutine) wherever engine:call runs.
local core = require("cbreaker.core")
local metrics = require("cbreaker.metrics")
local policy = require("cbreaker.policy")
local selection = require("cbreaker.selection")

local M = {}

local huge, pack, unpack = math.huge, table.pack, table.unpack

-- ---- the parts built by other modules ------------------------------------------
-- The engine's only contact with the registry and the store (the selector
-- comes from cbreaker.selection).

local function copy(t)
  local o = {}
  for k, v in pairs(t) do o[k] = v end
  return o
end

local parts = {}

--- The per-session guardrail breakers.  Their classifier runs in the engine.
function parts.registry(sessions, clock)
  local o = copy(sessions)
  o.defaults = copy(sessions.defaults)
  o.defaults.classify = nil
  o.clock = clock
  return core.registry(o)
end

function parts.store(redis, clock)
  local o = copy(redis)
  o.clock = clock
  return core.redis(o)
end

-- ---- rejections ------------------------------------------------------------------

--- The error of a call the engine refused: a cbreaker.Rejection, the
-- breakers' own type (cb.is_rejection), with the call's tenant and session.
local function rejection(reason, retry_after, tenant, session)
  return core.rejection({reason = reason, retry_after = retry_after,
                         tenant = tenant, session = session})
end

-- ---- helpers ------------------------------------------------------------------------

--- The outcome of a call that returned (ok, ...): the classifier's answer
-- when there is one (false and a message when it misbehaved), else ok's.
-- The breaker's own classifier contract, in C.
local classify = core.classify

local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function checkkey(v, what, level)
  if type(v) ~= "string" then
    error(("%s must be a string (got %s)"):format(what, type(v)), level + 1)
  end
end

-- ---- construction ---------------------------------------------------------------------

local Engine = {}
Engine.__index = Engine
Engine.__name = "cbreaker.Engine"

--- Every public method starts with this: a method called on anything but
-- an engine says so, at the caller (level 3: past this function and the
-- method), instead of "attempt to index a nil value" from deep inside.
local function check_self(self, method)
  if getmetatable(self) ~= Engine then
    error(("engine:%s: self must be a cbreaker.Engine (got %s)"):format(method, type(self)), 3)
  end
end

--- The breaker options the engine hands to the core for `name`.
local function provider_options(p, name)
  local o = policy.provider_options(p, name)
  o.on_change = nil  -- the engine's own callback calls the user's
  return o
end

function Engine:_on_change(name, from, to, reason)
  local t = self.transitions[name]
  t[to] = (t[to] or 0) + 1
  if to == "open" or to == "forced-open" then
    -- Wins from before an outage must not route traffic back into it.
    self.selector:discount(name, self.policy.selection.discount)
  end
  local hook = self.hooks[name]
  if hook then hook(name, from, to, reason) end
end

local function new_breaker(self, name)
  local p = self.policy
  local o = provider_options(p, name)
  o.name = name
  o.clock = p.clock
  o.store = self.store
  local br = core.new(o)
  self.hooks[name] = policy.provider_options(p, name).on_change
  br:on_change(function(...) return self:_on_change(...) end)
  return br
end

--- cb.engine(policy): policy is a table or the path of a Lua file returning
-- one (see cbreaker.policy).  Raises on an invalid policy, naming the option.
function M.new(src)
  local p = policy.load(src, 2)
  local self = setmetatable({
    policy = p,
    names = p.names,
    breakers = {},
    hooks = {},
    transitions = {},
    selected = {},
    bypassed = {},
    probes = {},
    requests = {ok = 0, error = 0, all_open = 0, session_open = 0, registry_full = 0},
    brs = {},       -- breakers by provider index (the order of names)
    index = {},     -- provider name -> index
    measure = {},   -- index -> time calls (slow-call tracking is on)
    scratch = {},
    eligible = {},  -- n -> a reusable list of n names for the selector
  }, Engine)
  local clock = p.clock
  self.now = clock and function() return clock:now() end or core.now
  self.store = p.redis and parts.store(p.redis, clock) or nil
  self.selector = selection.new(p.selection, p.names, clock)
  for _, name in ipairs(p.names) do
    self.transitions[name] = {}
    self.selected[name] = 0
    self.bypassed[name] = 0
    self.probes[name] = {failures = 0}
    self.breakers[name] = new_breaker(self, name)
  end
  for i, name in ipairs(p.names) do
    self.brs[i] = self.breakers[name]
    self.index[name] = i
    self.eligible[i] = {}
  end
  self.sessions = p.sessions and parts.registry(p.sessions, clock) or nil
  self:_classifiers()
  return self
end

-- ---- selection --------------------------------------------------------------------------

--- The breaker of `provider`; raises for a provider not in the policy.
function Engine:breaker(provider)
  check_self(self, "breaker")
  local br = self.breakers[provider]
  if br then return br end
  local set = {}
  for _, n in ipairs(self.names) do set[n] = true end
  local near = type(provider) == "string" and policy.closest(provider, set)
  error(("unknown provider '%s'%s"):format(tostring(provider),
    near and (" (did you mean '%s'?)"):format(near) or ""), 2)
end

--- The selector's choice among the providers that may take a call now and
-- are not in `tried` (a bit set: bit i - 1 for provider i), or nil and the
-- seconds until the soonest may.  Takes no permit: retry_after() is 0
-- exactly when allow() would grant one.  Allocates nothing.
function Engine:_choose(tried)
  local names, brs = self.names, self.brs
  local list, n, soonest = self.scratch, 0, huge
  for i = 1, #names do
    if tried & (1 << (i - 1)) == 0 then
      local ra = brs[i]:retry_after()
      if ra == 0 then
        n = n + 1
        list[n] = i
      elseif ra < soonest then
        soonest = ra
      end
    end
  end
  if n == 0 then return nil, soonest end
  if n == 1 then return list[1] end
  local eligible = self.eligible[n]  -- one reusable list per size
  for k = 1, n do eligible[k] = names[list[k]] end
  return self.index[self.selector:select(eligible)]
end

--- The provider for this session's next request: a provider name, or nil,
-- "all providers open" (or "session open"), and the seconds until a call
-- may be allowed.  Takes no permit and records nothing.
function Engine:pick(tenant, session)
  check_self(self, "pick")
  if self.sessions and tenant ~= nil then
    checkkey(tenant, "tenant", 2)
    checkkey(session, "session", 2)
    local sbr = self.sessions:get(tenant, session)
    if sbr then
      local ra = sbr:retry_after()
      if ra > 0 then return nil, "session open", ra end
    end
  end
  local i, soonest = self:_choose(0)
  if i then return self.names[i] end
  return nil, "all providers open", soonest
end

-- ---- calls ------------------------------------------------------------------------------------

--- Records provider `i`'s outcome of (ok, ...) on its breaker and the
-- selector.  Returns the outcome, or false and a message when the
-- classifier misbehaved (recorded as a failure).
function Engine:_record(i, t0, ok, ...)
  local name, br = self.names[i], self.brs[i]
  local ms = t0 and (self.now() - t0) * 1000 or nil
  local outcome, ra = classify(self.classify[name], ok, ...)
  -- The selector first: a failure that opens the breaker counts in full
  -- before the discount (on_change) shrinks the evidence.
  if not outcome then
    self.selector:update(name, 0)
    br:record("failure", ms)
    return false, ra
  end
  if outcome ~= "ignore" then self.selector:update(name, outcome == "success" and 1 or 0) end
  br:record(outcome, ms, ra)
  return outcome
end

--- Records the final result on the session and the totals, then returns
-- it.  `bad` is a misbehaving classifier's message, raised after recording.
function Engine:_finish(sbr, bad, ok, ...)
  if sbr then
    local outcome, ra = classify(self.session_classify, ok, ...)
    if not outcome then
      sbr:record("failure")
      bad = bad or ra
    else
      sbr:record(outcome, nil, ra)
    end
  end
  if bad then error(bad, 3) end
  local r = self.requests
  if ok then r.ok = r.ok + 1 else r.error = r.error + 1 end
  return ok, ...
end

--- The last attempt: its result flows through as is (no table).  Without
-- classifiers, straight through.
function Engine:_last(sbr, i, t0, ok, ...)
  local name = self.names[i]
  if self.classify[name] or (sbr and self.session_classify) then
    local outcome, bad = self:_record(i, t0, ok, ...)
    return self:_finish(sbr, not outcome and bad or nil, ok, ...)
  end
  local outcome = ok and "success" or "failure"
  self.selector:update(name, ok and 1 or 0)
  self.brs[i]:record(outcome, t0 and (self.now() - t0) * 1000 or nil)
  if sbr then sbr:record(outcome) end
  local r = self.requests
  if ok then r.ok = r.ok + 1 else r.error = r.error + 1 end
  return ok, ...
end

--- When no provider may take the call: the policy's on_all_open.  Returns
-- a packed result, nil and the seconds waited to try again, or false.
function Engine:_all_open(soonest, waited, fn, ...)
  local p = self.policy
  if p.on_all_open == "wait" and soonest ~= huge and waited + soonest <= p.max_wait then
    p.sleep(soonest)
    return nil, waited + soonest
  end
  if p.on_all_open == "bypass" then
    local best, best_ra = nil, huge  -- the provider due back first; never a forced-open one
    for _, name in ipairs(self.names) do
      local ra = self.breakers[name]:retry_after()
      if ra < best_ra then best, best_ra = name, ra end
    end
    if best then
      self.bypassed[best] = self.bypassed[best] + 1
      return pack(pcall(fn, best, ...))
    end
  end
  return false
end

--- engine:call(tenant, session, fn, ...): pcall-shaped, `true, ...` with
-- fn(provider, ...)'s results, or `false, err` with fn's error or a
-- rejection (cb.is_rejection(err); err.reason is "session open", "all
-- providers open", "registry full" or "tenant full").
function Engine:call(tenant, session, fn, ...)
  check_self(self, "call")
  if type(tenant) ~= "string" then checkkey(tenant, "tenant", 2) end
  if type(session) ~= "string" then checkkey(session, "session", 2) end
  if type(fn) ~= "function" then
    local mt = getmetatable(fn)
    if not (mt and mt.__call) then
      error(("bad argument #3 to 'call' (function expected, got %s)"):format(type(fn)), 2)
    end
  end
  local sbr
  local sessions = self.sessions
  if sessions then
    local err
    sbr, err = sessions:get(tenant, session)
    if not sbr then
      self.requests.registry_full = self.requests.registry_full + 1
      return false, rejection(err or "registry full", huge, tenant, session)
    end
    if not sbr:allow() then
      self.requests.session_open = self.requests.session_open + 1
      return false, rejection("session open", sbr:retry_after(), tenant, session)
    end
  end
  -- From here a session permit may be out: every path records on sbr.
  local max_attempts, brs = self.policy.max_attempts, self.brs
  local tried = 0  -- a local bit set, so a nested call cannot disturb it
  local attempts, waited, res, bad = 0, 0, nil, nil
  while attempts < max_attempts do
    local i, soonest = self:_choose(tried)
    if not i then
      if attempts > 0 then break end
      local fine, r, w = pcall(self._all_open, self, soonest, waited, fn, ...)
      if not fine then  -- the policy's sleep raised: give the session's permit back
        if sbr then sbr:record("ignore") end
        error(r, 0)
      end
      waited = w
      if r == false then
        self.requests.all_open = self.requests.all_open + 1
        if sbr then sbr:record("ignore") end
        return false, rejection("all providers open", soonest, tenant, session)
      end
      if r then res = r; break end
    else
      tried = tried | (1 << (i - 1))
      if brs[i]:allow() then
        attempts = attempts + 1
        local sel = self.selected
        local name = self.names[i]
        sel[name] = sel[name] + 1
        local t0 = self.measure[i] and self.now() or nil
        if attempts == max_attempts then  -- no fallback after this one
          return self:_last(sbr, i, t0, pcall(fn, name, ...))
        end
        res = pack(pcall(fn, name, ...))
        local outcome, why = self:_record(i, t0, unpack(res, 1, res.n))
        if not outcome then bad = why; break end
        if outcome ~= "failure" then break end  -- success or ignore: no fallback
      end
    end
  end
  return self:_finish(sbr, bad, unpack(res, 1, res.n))
end

-- ---- sentinel ----------------------------------------------------------------------------

--- engine:probe(provider, healthy): a health probe's verdict.  The
-- verdict comes from the probe alone, never from the breakers' states, so
-- open breakers cannot keep a provider down by themselves (a sentinel that
-- read them would hold a provider forced open with no traffic failing).  A healthy
-- probe resets a forced-open provider (with a store, peers hear
-- "recovered") and gives its selector statistics a fresh start; failed
-- probes force it open after sentinel.force_open_after in a row.  Returns
-- what it did: "recovered", "healthy", "forced-open" or "unhealthy".
function Engine:probe(provider, healthy)
  check_self(self, "probe")
  local br = self:breaker(provider)
  if type(healthy) ~= "boolean" then
    error(("bad argument #2 to 'probe' (boolean expected, got %s)"):format(type(healthy)), 2)
  end
  local pr = self.probes[provider]
  pr.last, pr.healthy = self.now(), healthy
  if healthy then
    pr.failures = 0
    if br:state() == "forced-open" then
      br:reset()
      self.selector:reset(provider)
      return "recovered"
    end
    return "healthy"
  end
  pr.failures = pr.failures + 1
  local limit = self.policy.sentinel.force_open_after
  if limit > 0 and pr.failures >= limit and br:state() ~= "forced-open" then
    br:force_open()
    return "forced-open"
  end
  return "unhealthy"
end

-- ---- reload ------------------------------------------------------------------------------

--- cb.new's defaults, for options a reloaded policy no longer sets.
local breaker_defaults
local function defaults()
  if not breaker_defaults then
    local br <close> = core.new{}
    breaker_defaults = br:options()
    breaker_defaults.name = nil
  end
  return breaker_defaults
end

--- The full options for br:configure (which keeps what it is not given):
-- the policy's, then cb.new's defaults.
local function configure_options(p, name)
  local o = provider_options(p, name)
  o.clock = nil
  for k, v in pairs(defaults()) do
    if o[k] == nil then o[k] = v end
  end
  return o
end

--- The sessions options a running registry cannot change (the session
-- classifier runs in the engine and can).
local function sessions_shape(p)
  if not p.sessions then return false end
  local s = copy(p.sessions)
  s.defaults = copy(s.defaults)
  s.defaults.classify = nil
  return s
end

--- engine:reload(policy): new thresholds for the same providers; breaker
-- states, counters and selector statistics are kept.  Raises (changing
-- nothing) when the new policy is invalid or changes what cannot change.
function Engine:reload(src)
  check_self(self, "reload")
  local p = policy.load(src, 2)
  local old = self.policy
  if not same(p.names, old.names) then
    error("reload: the provider set cannot change (was " .. table.concat(old.names, ", ") ..
      "; now " .. table.concat(p.names, ", ") .. ")", 2)
  end
  if p.selection.strategy ~= old.selection.strategy or p.selection.seed ~= old.selection.seed then
    error("reload: 'selection.strategy' and 'selection.seed' cannot change", 2)
  end
  if p.clock ~= old.clock then error("reload: 'clock' cannot change", 2) end
  if not same(p.redis, old.redis) then error("reload: 'redis' cannot change", 2) end
  if not same(sessions_shape(p), sessions_shape(old)) then
    error("reload: 'sessions' cannot change, except 'sessions.defaults.classify'", 2)
  end
  -- Check every provider's options before changing any.
  for _, name in ipairs(p.names) do
    local ok, err = pcall(core.new, configure_options(p, name))
    if not ok then error("reload: providers." .. name .. ": " .. tostring(err), 2) end
  end
  for _, name in ipairs(p.names) do
    self.breakers[name]:configure(configure_options(p, name))
    self.hooks[name] = policy.provider_options(p, name).on_change
  end
  selection.configure(self.selector, p.selection)
  self.policy = p
  self:_classifiers()
  return true
end

function Engine:_classifiers()
  local p = self.policy
  self.classify = {}
  for i, name in ipairs(p.names) do
    local o = policy.provider_options(p, name)
    self.classify[name] = o.classify
    self.measure[i] = (o.slow_call_ms or 0) > 0
  end
  self.session_classify = p.sessions and p.sessions.defaults.classify or nil
end

-- ---- reporting ------------------------------------------------------------------------------

--- A table: per provider its breaker's stats plus selections, traffic
-- share, transitions and bypasses; the request totals; the sessions.
function Engine:stats()
  check_self(self, "stats")
  local out = {providers = {}, requests = copy(self.requests)}
  local total = 0
  for _, name in ipairs(self.names) do total = total + self.selected[name] end
  local sel = self.selector:stats()
  for _, name in ipairs(self.names) do
    local st = self.breakers[name]:stats()
    st.selected = self.selected[name]
    st.share = total > 0 and self.selected[name] / total or 0
    st.transitions = copy(self.transitions[name])
    st.bypassed = self.bypassed[name]
    st.selector = type(sel) == "table" and sel[name] or nil
    st.probe = copy(self.probes[name])
    out.providers[name] = st
  end
  out.names = copy(self.names)
  if self.sessions then out.sessions = self.sessions:stats() end
  return out
end

--- Prometheus text exposition (format 0.0.4) of the engine's state.
function Engine:metrics()
  check_self(self, "metrics")
  return metrics.text(self:stats())
end

--- Releases the engine's breakers, sessions, selector and store (closing
-- its Redis connections) now rather than at garbage collection.  The
-- engine cannot be used afterwards.
function Engine:close()
  check_self(self, "close")
  if self.closed then return end
  self.closed = true
  for _, br in ipairs(self.brs) do br:close() end
  if self.sessions then self.sessions:close() end
  self.selector:close()
  if self.store then self.store:close() end
end
Engine.__close = Engine.close

function Engine:__tostring()
  return ("cbreaker.Engine (%s)"):format(table.concat(self.names, ", "))
end

return M
