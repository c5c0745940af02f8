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
-- Lua around the C objects; its common call is one C function (pool:caller,
-- see _classifiers).  fn may yield (an event loop's coroutine) wherever
-- engine:call runs.
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
local running = coroutine.running

--- An error value as text for a message.  A __tostring that raises or
-- yields must not stop the call that is recording outcomes.
local function describe(v)
  local ok, s = pcall(tostring, v)
  return ok and s or ("(a %s whose __tostring failed)"):format(type(v))
end

local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

--- The longest tenant or session id the registry takes (CB_REGISTRY_MAX_KEY).
local MAX_KEY = 1024

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
-- A closed engine says so, rather than naming the pool or registry inside.
local function check_self(self, method, closed_ok)
  if getmetatable(self) ~= Engine then
    error(("engine:%s: self must be a cbreaker.Engine (got %s)"):format(method, type(self)), 3)
  end
  if self.closed and not closed_ok then
    error(("engine:%s: the engine is closed"):format(method), 3)
  end
end

--- The breaker options the engine hands to the core for `name`.
local function provider_options(p, name)
  local o = policy.provider_options(p, name)
  o.on_change = nil  -- the engine's own callback calls the user's
  return o
end

--- Every provider breaker's change callback: counts the transition and
-- calls the policy's hook.  The pool discounts a provider's evidence on an
-- opening itself.  A hook that raises must not stop the call that caused
-- the change halfway (its permits would leak): its error is kept and
-- raised by that call once every outcome is recorded (see take_hook_error).
function Engine:_on_change(name, from, to, reason)
  local t = self.transitions[name]
  t[to] = (t[to] or 0) + 1
  local hook = self.hooks[name]
  if hook then
    if not self.in_pool[running()] then return hook(name, from, to, reason) end  -- raises as the breaker's
    local ok, err = pcall(hook, name, from, to, reason)
    if not ok and not self.hook_error then
      self.hook_error = "on_change callback failed: " .. describe(err)
    end
  end
end

--- A hook error kept since the last look, cleared; nil for none.  (The
-- engine's fields the hot path reads are never nil: a miss would look in
-- the class table too.)  Read right after each of call's pool calls
-- (made through pooled, so that only their hooks' errors are kept), so the
-- error goes to the call that ran it.
local function take_hook_error(self)
  local err = self.hook_error
  if err then self.hook_error = false end
  return err or nil
end

--- pool:method(a, b, c, d) as one of call's pool calls: a hook it runs
-- has its error kept for the call (see _on_change), not raised.  Returns
-- the method's two results.  A raise (a closed pool) is the caller's, and
-- leaves nothing counted.
local function pooled(self, method, a, b, c, d)
  local co, depth = running(), self.in_pool
  depth[co] = (depth[co] or 0) + 1
  local ok, r1, r2 = pcall(self.pool[method], self.pool, a, b, c, d)
  local n = depth[co] - 1
  depth[co] = n > 0 and n or nil
  if not ok then error(r1, 0) end
  return r1, r2
end

local none_open, session_refused, with_session  -- below, with call

--- cb.engine(policy): policy is a table or the path of a Lua file returning
-- one (see cbreaker.policy).  Raises on an invalid policy, naming the option.
function M.new(src)
  local p = policy.load(src, 2)
  local self = setmetatable({
    policy = p,
    names = p.names,  -- provider index -> name (the pool's indices)
    breakers = {},    -- provider name -> its breaker (the pool's)
    hooks = {},
    transitions = {},
    bypassed = {},
    probes = {},
    requests = {ok = 0, error = 0, all_open = 0, session_open = 0, registry_full = 0,
                key_too_long = 0},
    measure = {},   -- index -> time calls (slow-call tracking is on)
    classify = {},  -- index -> the provider's classifier, or false
    max_attempts = p.max_attempts,
    closed = false,
    plain = false,       -- calls take pool:run (see _classifiers)
    fast = false,        -- plain, no hook, open: call is all in C (pool:caller)
    caller = false,      -- that C call, installed as `call` while fast
    hooked = false,      -- some provider has an on_change hook
    hook_error = false,  -- a provider hook's error, kept for the call that ran it
    in_pool = setmetatable({}, {__mode = "k"}),  -- coroutine -> its call's pool calls under
                         -- way (a hook may yield in one): keep hook errors.  Per coroutine, so
                         -- another's direct breaker calls still raise, and weak, so a
                         -- coroutine closed inside a hook leaves nothing behind
  }, Engine)
  local clock = p.clock
  self.now = clock and function() return clock:now() end or core.now
  self.store = p.redis and parts.store(p.redis, clock) or false
  self.pool = selection.pool(p.selection, clock)
  for i, name in ipairs(p.names) do
    self.transitions[name] = {}
    self.bypassed[name] = 0
    self.probes[name] = {failures = 0}
    local o = provider_options(p, name)
    o.name = name
    o.clock = clock
    o.store = self.store or nil
    local k, br = self.pool:add(o)
    assert(k == i, "the pool numbers providers in the order of names")
    self.breakers[name] = br
    self.hooks[name] = policy.provider_options(p, name).on_change
    self.hooked = self.hooked or self.hooks[name] ~= nil
    br:on_change(function(...) return self:_on_change(...) end)
  end
  self.sessions = p.sessions and parts.registry(p.sessions, clock) or false
  -- engine:call is C's (pool:caller) while `fast`: see _classifiers.  (Sessions
  -- never come or go on reload.)
  self.caller = self.pool:caller(self, Engine.call, none_open, session_refused, with_session,
    self.sessions or nil)
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

--- The provider for this session's next request: a provider name, or nil,
-- "all providers open" (or "session open"), and the seconds until a call
-- may be allowed.  Takes no permit and records nothing.
function Engine:pick(tenant, session)
  check_self(self, "pick")
  if self.sessions and tenant ~= nil then
    checkkey(tenant, "tenant", 2)
    checkkey(session, "session", 2)
    if #tenant > MAX_KEY or #session > MAX_KEY then return nil, "key too long", huge end
    local sbr = self.sessions:get(tenant, session)
    if sbr then
      local ra = sbr:retry_after()
      if ra > 0 then return nil, "session open", ra end
    end
  end
  local i, soonest = self.pool:pick(0)  -- a hook that raises here raises here
  if i then return self.names[i] end
  return nil, "all providers open", soonest
end

-- ---- calls ------------------------------------------------------------------------------------

--- Records `outcome` on the session breaker `sbr`, unless the registry
-- removed it meanwhile (fn, or another coroutine while fn yielded, evicted
-- the session): then there is nothing left to record on, and the reply
-- must not be lost for it.
local function session_record(sbr, outcome, ra)
  pcall(sbr.record, sbr, outcome, nil, ra)
end

--- A call whose fn turned out not to be callable (in the general case
-- checked only once pcall failed, so a good call pays nothing for it):
-- misuse, not a provider failure.  The permits are given back (recorded
-- as ignored) and the error raised.
local function callable(fn)
  if type(fn) == "function" then return true end
  local mt = debug.getmetatable(fn)  -- as C and the call see it: past a __metatable
  return mt ~= nil and rawget(mt, "__call") ~= nil
end

local function misuse(self, sbr, i, fn, level)
  if not self.closed then
    pooled(self, "record", i, "ignore")
  end
  if sbr then session_record(sbr, "ignore") end
  take_hook_error(self)
  error(("bad argument #3 to 'call' (function expected, got %s)"):format(type(fn)),
    level and level + 1 or 0)
end

--- Records provider `i`'s outcome of (ok, ...) on the pool (its breaker and
-- the bandit).  Returns the outcome, or false and a message when the
-- classifier misbehaved (recorded as a failure).
local function record(self, i, t0, ok, ...)
  local ms = t0 and (self.now() - t0) * 1000 or nil
  local outcome, ra = classify(self.classify[i] or nil, ok, ...)
  if not outcome then
    pooled(self, "record", i, "failure", ms)
    return false, ra
  end
  pooled(self, "record", i, outcome, ms, ra)
  return outcome
end

--- Records the final result on the session and the totals, then returns
-- it.  `bad` is a misbehaving classifier's message, `herr` a provider
-- hook's: each is raised once everything is recorded.
local function finish(self, sbr, bad, herr, ok, ...)
  if sbr then
    local outcome, ra = classify(self.session_classify or nil, ok, ...)
    if not outcome then
      session_record(sbr, "failure")
      bad = bad or ra
    else
      session_record(sbr, outcome, ra)
    end
  end
  herr = herr or take_hook_error(self)
  if bad then error(bad, 3) end
  local r = self.requests
  if ok then r.ok = r.ok + 1 else r.error = r.error + 1 end
  if herr then error(herr, 0) end
  return ok, ...
end

--- The last attempt: its result flows through as is (no table).  Without
-- classifiers, straight through.
local function last(self, sbr, i, t0, herr, fn, ok, ...)
  if not ok and not callable(fn) then misuse(self, sbr, i, fn) end
  if self.closed then return ok, ... end  -- fn closed the engine: nothing to record on
  if self.classify[i] or (sbr and self.session_classify) then
    local outcome, bad = record(self, i, t0, ok, ...)
    return finish(self, sbr, not outcome and bad or nil, herr or take_hook_error(self), ok, ...)
  end
  pooled(self, "record", i, ok, t0 and (self.now() - t0) * 1000 or nil)
  herr = herr or self.hook_error
  if sbr then session_record(sbr, ok and "success" or "failure") end
  local r = self.requests
  if ok then r.ok = r.ok + 1 else r.error = r.error + 1 end
  if herr then
    self.hook_error = false
    error(herr, 0)
  end
  return ok, ...
end

--- The pool's acquire(tried) for a call that holds the session's permit
-- (sbr, or false): when a callback the acquire runs raises, the acquire
-- has given its own permit back, and the session's is given back too
-- before the error goes on.
local function acquire(self, sbr, tried)
  if sbr then
    local ok, i, t = pcall(acquire, self, false, tried)
    if not ok then
      session_record(sbr, "ignore")
      error(i, 0)
    end
    return i, t
  end
  if self.hooked then  -- a hook run by acquire may raise: keep its error for this call
    return pooled(self, "acquire", tried)
  end
  return self.pool:acquire(tried)
end

--- When no provider may take the call: the policy's on_all_open.  Returns
-- a packed result, nil and the seconds waited to try again, or false.
local function all_open(self, soonest, waited, fn, ...)
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
      if not callable(fn) then  -- misuse: raised as the caller's, the session's permit given back
        error(("bad argument #3 to 'call' (function expected, got %s)"):format(type(fn)), 0)
      end
      self.bypassed[best] = self.bypassed[best] + 1
      return pack(pcall(fn, best, ...))
    end
  end
  return false
end

--- The general case of a call: fallbacks (max_attempts > 1) and what to do
-- when no provider may take the call.  `i, t` is the first acquire's.
local function fallbacks(self, sbr, i, t, tenant, session, fn, ...)
  local pool, max_attempts = self.pool, self.max_attempts
  local tried = 0  -- a local bit set, so a nested call cannot disturb it
  local attempts, waited, res, bad, herr = 0, 0, nil, nil, take_hook_error(self)
  while true do
    if not i then
      if attempts > 0 then break end
      local fine, r, w = pcall(all_open, self, t, waited, fn, ...)
      herr = herr or take_hook_error(self)
      if not fine then  -- the policy's sleep raised: give the session's permit back
        if sbr then session_record(sbr, "ignore") end
        error(r, 0)
      end
      waited = w
      if r == false then
        self.requests.all_open = self.requests.all_open + 1
        if sbr then session_record(sbr, "ignore") end
        if herr then error(herr, 0) end
        return false, rejection("all providers open", t, tenant, session)
      end
      if r then res = r; break end
    else
      tried = t
      attempts = attempts + 1
      local t0 = self.measure[i] and self.now() or nil
      if attempts == max_attempts then  -- no fallback after this one
        return last(self, sbr, i, t0, herr, fn, pcall(fn, self.names[i], ...))
      end
      res = pack(pcall(fn, self.names[i], ...))
      if not res[1] and not callable(fn) then misuse(self, sbr, i, fn) end
      if self.closed then return unpack(res, 1, res.n) end
      local outcome, why = record(self, i, t0, unpack(res, 1, res.n))
      herr = herr or take_hook_error(self)
      if not outcome then bad = why; break end
      if outcome ~= "failure" then break end  -- success or ignore: no fallback
    end
    if attempts >= max_attempts then break end
    i, t = acquire(self, sbr, tried)
    herr = herr or take_hook_error(self)
  end
  return finish(self, sbr, bad, herr, unpack(res, 1, res.n))
end

--- The session breaker of (tenant, session) with its permit taken, or
-- nil and the rejection to return (the refusal counted).
local function session_permit(self, tenant, session)
  local r = self.requests
  if #session > MAX_KEY or #tenant > MAX_KEY then
    r.key_too_long = r.key_too_long + 1
    return nil, rejection("key too long", huge, tenant:sub(1, 64), session:sub(1, 64))
  end
  local sbr, err = self.sessions:get(tenant, session)
  if not sbr or not sbr:allow() then
    return nil, select(2, session_refused(self, sbr or false, tenant, session, err))
  end
  return sbr
end

--- A call the session's breaker `sbr` refused, or the registry (sbr false,
-- `why` its reason): counted, and its answer.
function session_refused(self, sbr, tenant, session, why)
  local r = self.requests
  if not sbr then
    r.registry_full = r.registry_full + 1
    return false, rejection(why or "registry full", huge, tenant, session)
  end
  r.session_open = r.session_open + 1
  return false, rejection("session open", sbr:retry_after(), tenant, session)
end

--- A fast call (see pool:caller) that no provider may take: the general
-- case's answer (on_all_open).  `sbr` is the session's breaker, its permit
-- taken, or false.
function none_open(self, sbr, retry_after, tenant, session, fn, ...)
  return fallbacks(self, sbr, nil, retry_after, tenant, session, fn, ...)
end

--- engine:call(tenant, session, fn, ...): pcall-shaped, `true, ...` with
-- fn(provider, ...)'s results, or `false, err` with fn's error or a
-- rejection (cb.is_rejection(err); err.reason is "session open", "all
-- providers open", "registry full", "tenant full" or "key too long").
-- fn may yield.  Once fn has returned, its results are returned even if
-- the session's breaker was removed meanwhile.  A provider's on_change
-- hook that raises does not stop the call: every outcome is recorded
-- first, then the hook's error is raised ("on_change callback failed:
-- ..."), as a misbehaving classifier's is.
function Engine:call(tenant, session, fn, ...)
  if getmetatable(self) ~= Engine or self.closed then check_self(self, "call") end
  local sbr = false
  if self.sessions then
    if type(tenant) ~= "string" then checkkey(tenant, "tenant", 2) end
    if type(session) ~= "string" then checkkey(session, "session", 2) end
    local refusal
    sbr, refusal = session_permit(self, tenant, session)
    if not sbr then return false, refusal end
    -- From here a session permit is out: every path records on sbr.
  else  -- unused without sessions, but a nil is a caller's bug
    if tenant == nil then checkkey(tenant, "tenant", 2) end
    if session == nil then checkkey(session, "session", 2) end
  end
  return with_session(self, sbr, tenant, session, fn, ...)  -- a tail call: errors at level 2
end

--- The rest of engine:call once the session's permit is taken (sbr, or
-- false): the provider's permit, fn and the outcomes.  The C call comes
-- here too when the session's callbacks changed the policy (see
-- pool:caller).
function with_session(self, sbr, tenant, session, fn, ...)
  local i, t = acquire(self, sbr, 0)
  if i and self.plain and not self.hook_error then  -- the common call: the rest in one C call
    if not callable(fn) then misuse(self, sbr, i, fn, 2) end  -- said at the caller's line
    return self.pool:run(i, sbr, fn, ...)
  end
  return fallbacks(self, sbr, i, t, tenant, session, fn, ...)
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
      self.pool:reset(self.pool:find(provider))
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
  self.hooked = false
  for _, name in ipairs(p.names) do
    self.breakers[name]:configure(configure_options(p, name))
    self.hooks[name] = policy.provider_options(p, name).on_change
    self.hooked = self.hooked or self.hooks[name] ~= nil
  end
  selection.configure(self.pool, p.selection)
  self.policy = p
  self:_classifiers()
  return true
end

function Engine:_classifiers()
  local p = self.policy
  self.classify = {}
  self.max_attempts = p.max_attempts
  for i, name in ipairs(p.names) do
    local o = policy.provider_options(p, name)
    self.classify[i] = o.classify or false
    self.measure[i] = (o.slow_call_ms or 0) > 0
  end
  self.session_classify = p.sessions and p.sessions.defaults.classify or false
  -- One attempt and no classifier: pool:run records the call as pcall sees it.
  local plain = self.max_attempts == 1 and not self.session_classify
  for i = 1, #p.names do plain = plain and not self.classify[i] end
  self.plain = plain
  self.fast = plain and not self.hooked and not self.closed
  self.pool:fast(self.fast)
  -- the C call only while it runs calls itself: else Engine.call, one C level less
  self.call = self.fast and self.caller or nil
end

-- ---- reporting ------------------------------------------------------------------------------

--- A table: per provider its breaker's stats plus selections, traffic
-- share, transitions and bypasses; the request totals; the sessions.
function Engine:stats()
  check_self(self, "stats")
  local out = {providers = {}, requests = copy(self.requests)}
  local ran_ok, ran_error = self.pool:ran()  -- the calls pool:run counted
  out.requests.ok = out.requests.ok + ran_ok
  out.requests.error = out.requests.error + ran_error
  local pool = self.pool:stats()
  local total = 0
  for _, ps in ipairs(pool) do total = total + ps.acquired end
  for i, name in ipairs(self.names) do
    local st, ps = self.breakers[name]:stats(), pool[i]
    st.selected = ps.acquired
    st.share = total > 0 and ps.acquired / total or 0
    st.transitions = copy(self.transitions[name])
    st.bypassed = self.bypassed[name]
    st.selector = ps.bandit or {selections = ps.picked}  -- round robin learns nothing
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

--- Releases the engine's pool (its breakers), sessions and store (closing
-- its Redis connections) now rather than at garbage collection.  The
-- engine cannot be used afterwards.
function Engine:close()
  check_self(self, "close", true)
  if self.closed then return end
  self.closed = true
  self.fast = false
  self.call = nil
  self.pool:close()  -- and its breakers
  if self.sessions then self.sessions:close() end
  if self.store then self.store:close() end
end
Engine.__close = Engine.close

function Engine:__tostring()
  return ("cbreaker.Engine (%s)"):format(table.concat(self.names, ", "))
end

return M
