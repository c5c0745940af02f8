--- cbreaker.policy: reads and checks an engine policy.
-- A policy is a table, or the path of a Lua file that returns one.  The
-- policy's own keys are checked here; the options of the objects it builds
-- (breakers, the session registry, the bandit, the Redis store) by the C
-- option schema (core.check_options), the one that checks them again when
-- they are built.  Either way an error names the option's full path
-- (`providers.openai.failure_treshold`) and the closest valid name.
--
--   {
--     defaults  = {<breaker options>},          -- for every provider
--     providers = {openai = {<overrides>}, ...}, -- the keys are the provider set (1..64)
--     sessions  = {max_entries=, max_per_tenant=, idle_ttl=, unused_ttl=,
--                  cleanup_every=, seed=, defaults = {<breaker options>}}
--                 | false,                      -- per-session guardrails (default {})
--     selection = {strategy = "thompson" | "round_robin", prior = {a, b},
--                  decay=, half_life=, discount = 0.5, seed = 0},
--     sentinel  = {force_open_after = 3},       -- engine:probe; 0 = never force open
--     redis     = {<cb.redis options but clock>},  -- url=, secret=, replay_window_ms=, ...
--     clock     = cb.manual_clock(...),         -- for tests; default monotonic
--     on_all_open = "fail" | "wait" | "bypass", -- default "fail"
--     max_wait = 30, sleep = function(s) end,   -- only with "wait"
--     max_attempts = 1,                         -- > 1: fall back to other providers
--   }
--
-- Breaker options are cb.new's (failure_threshold, reset_timeout, ...,
-- classify, on_change) without name and clock.  A session's classify runs
-- in the engine; session breakers take no on_change.
local M = {}

local core = require("cbreaker.core")
local check_options = core.check_options  -- the C option schema (src/core/optspec.c)

local floor = math.floor

M.MAX_PROVIDERS = 64         -- the engine keeps a call's tried providers in one integer

-- ---- errors ----------------------------------------------------------------

-- A policy error travels as a table until the public entry points turn it
-- into a message raised at the caller's level.
local PolicyError = {}
PolicyError.__index = PolicyError
PolicyError.__tostring = function(e) return e.message end

local function fail(fmt, ...)
  error(setmetatable({message = fmt:format(...)}, PolicyError), 0)
end

local function ident(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end

--- `base.key`, or `base["odd key"]` for keys that are not identifiers.
local function join(base, key)
  if ident(key) then
    return base == "" and key or base .. "." .. key
  end
  return ("%s[%q]"):format(base, tostring(key))
end

--- The name in `names` (a set) closest to `s`, or nil when none is close
-- enough to be a typo: the C layer's rule (cbreaker.core.closest).
local closest = core.closest
M.closest = closest

local function unknown(path, key, names)
  local near = type(key) == "string" and closest(key, names)
  if near then
    fail("unknown option '%s' (did you mean '%s'?)", join(path, key), near)
  end
  fail("unknown option '%s'", join(path, key))
end

-- ---- value checks ------------------------------------------------------------
-- Each takes (value, path) and returns the value to keep, or fails.

local function typename(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and type(mt.__name) == "string" then return mt.__name end
  return type(v)
end

local function want(what, v, path)
  fail("option '%s' must be %s (got %s)", path, what, typename(v))
end

local function number(lo, hi, what)
  return function(v, path)
    if type(v) ~= "number" or v ~= v then want(what, v, path) end
    if v < lo or v > hi then fail("option '%s' must be %s (got %s)", path, what, tostring(v)) end
    return v
  end
end

local function integer(lo, hi, what)
  return function(v, path)
    if type(v) ~= "number" then want(what, v, path) end
    v = v == floor(v) and math.tointeger(v) or nil
    if not v or v < lo or v > hi then
      fail("option '%s' must be %s (got %s)", path, what, tostring(v))
    end
    return v
  end
end

local function oftype(t)
  return function(v, path)
    if type(v) ~= t then want("a " .. t, v, path) end
    return v
  end
end

local function oneof(...)
  local set, list = {}, {}
  for _, s in ipairs({...}) do set[s] = true; list[#list + 1] = ("'%s'"):format(s) end
  local what = "one of " .. table.concat(list, ", ")
  return function(v, path)
    if not set[v] then
      if type(v) == "string" and closest(v, set) then
        fail("option '%s' must be %s (got '%s'; did you mean '%s'?)", path, what, v, closest(v, set))
      end
      fail("option '%s' must be %s (got %s)", path, what, type(v) == "string" and ("'" .. v .. "'") or typename(v))
    end
    return v
  end
end

local function clock(v, path)
  if typename(v) ~= "cbreaker.ManualClock" then want("a cbreaker.manual_clock", v, path) end
  return v
end

-- ---- sections ----------------------------------------------------------------

--- Checks the table `t` at `path` against `fields` (name -> check); returns
-- a copy holding the checked values.
local function section(t, path, fields)
  if type(t) ~= "table" then want("a table", t, path) end
  local out = {}
  for k, v in pairs(t) do
    local check = fields[k]
    if not check then unknown(path, k, fields) end
    out[k] = check(v, join(path, k))
  end
  return out
end

--- Checks `t`, the options of a C object of `kind` at `path`, with the C
-- schema (ranges live there only), after refusing the keys of `deny`
-- (key -> why), which the policy sets elsewhere; the keys of `own` (key ->
-- check) are the policy's and checked here.  Returns a copy.
local function options(kind, deny, own)
  own = own or {}
  local names = {}  -- for core.check_options: handled (true) or refused (false)
  for k in pairs(deny) do names[k] = false end
  for k in pairs(own) do names[k] = true end
  return function(t, path)
    if type(t) ~= "table" then want("a table", t, path) end
    local out = {}
    for k, v in pairs(t) do
      if deny[k] then fail("option '%s' cannot be set here (%s)", join(path, k), deny[k]) end
      out[k] = v
    end
    local ok, err = pcall(check_options, kind, t, path, names)
    if not ok then fail("%s", err) end
    for k, check in pairs(own) do
      if t[k] ~= nil then out[k] = check(t[k], join(path, k)) end
    end
    return out
  end
end

local TOP_CLOCK = "set 'clock' at the top of the policy"
local TOP_REDIS = "set 'redis' at the top of the policy"

local provider_opts = options("breaker", {
  name = "a provider's breaker is named after its key in 'providers'",
  clock = TOP_CLOCK, store = TOP_REDIS,
})
local session_breaker_opts = options("breaker", {
  name = "a session's breaker is named after its tenant and session",
  clock = TOP_CLOCK, store = TOP_REDIS,
  on_change = "session breakers take no callback; see engine:stats().sessions",
})

local function providers(t, path)
  if type(t) ~= "table" then want("a table of provider name -> options", t, path) end
  local out, n = {}, 0
  for name, opts in pairs(t) do
    if type(name) ~= "string" or name == "" then
      fail("'%s' must be keyed by provider names (got %s key %s)", path, type(name), tostring(name))
    end
    out[name] = provider_opts(opts, join(path, name))
    n = n + 1
  end
  if n == 0 then fail("'%s' must name at least one provider", path) end
  if n > M.MAX_PROVIDERS then
    fail("'%s' names %d providers; at most %d", path, n, M.MAX_PROVIDERS)
  end
  return out
end

-- cb.registry options; a session's classify runs in the engine, so the
-- defaults are checked as breaker options.
local session_opts = options("registry", {clock = TOP_CLOCK}, {defaults = session_breaker_opts})

local function sessions(t, path)
  if t == false then return false end  -- no per-session guardrails
  return session_opts(t, path)
end

-- cb.bandit options, plus the engine's own: the strategy and the discount
-- on a breaker opening.
local selection = options("bandit", {
  arms = "the providers are the arms", clock = TOP_CLOCK,
}, {
  strategy = oneof("thompson", "round_robin"),
  discount = number(0, 1, "a number in [0, 1]"),
})

local sentinel_fields = {
  force_open_after = integer(0, 4294967295, "a whole number of failed probes >= 0 (0: never)"),
}

local top_fields = {
  defaults = provider_opts,
  providers = providers,
  sessions = sessions,
  selection = selection,
  redis = options("redis", {clock = TOP_CLOCK}),
  sentinel = function(t, path) return section(t, path, sentinel_fields) end,
  clock = clock,
  on_all_open = oneof("fail", "wait", "bypass"),
  max_attempts = integer(1, 100, "a whole number in [1, 100]"),
  max_wait = number(0, 1e9, "a number of seconds in [0, 1e9]"),
  sleep = oftype("function"),
}

-- ---- defaults ----------------------------------------------------------------

local function fill(t, defaults)
  for k, v in pairs(defaults) do
    if t[k] == nil then t[k] = v end
  end
  return t
end

--- Checks `p` and returns a new table with the defaults filled in.
local function normalize(p)
  local out = section(p, "", top_fields)
  if out.providers == nil then fail("'providers' is missing: name at least one provider") end
  out.defaults = out.defaults or {}
  out.sessions = out.sessions == nil and {} or out.sessions
  if out.sessions then out.sessions.defaults = out.sessions.defaults or {} end
  out.selection = fill(out.selection or {}, {
    strategy = "thompson", prior = {1, 1}, discount = 0.5, seed = 0,
  })
  out.sentinel = fill(out.sentinel or {}, {force_open_after = 3})
  out.on_all_open = out.on_all_open or "fail"
  out.max_attempts = out.max_attempts or 1
  if out.on_all_open == "wait" then
    if not out.sleep then
      fail("on_all_open = 'wait' needs 'sleep', a function(seconds) that waits")
    end
    out.max_wait = out.max_wait or 30
  elseif out.max_wait or out.sleep then
    fail("'%s' only applies with on_all_open = 'wait'", out.max_wait and "max_wait" or "sleep")
  end
  local names = {}
  for name in pairs(out.providers) do names[#names + 1] = name end
  table.sort(names)
  out.names = names  -- the provider set, in a stable order
  return out
end

-- ---- public ------------------------------------------------------------------

--- Loads `src` (a table, or the path of a file returning one) without
-- checking it.  Returns the table and a label for messages.
local function load_source(src)
  if type(src) == "table" then return src, "policy" end
  if type(src) ~= "string" then
    fail("policy must be a table or the path of a Lua file (got %s)", typename(src))
  end
  local chunk, err = loadfile(src, "t")
  if not chunk then fail("%s", err) end
  local ok, p = pcall(chunk)
  if not ok then fail("%s: %s", src, tostring(p)) end
  if type(p) ~= "table" then fail("%s: must return a policy table (got %s)", src, typename(p)) end
  return p, src
end

local function check(src)
  local p, label = load_source(src)
  local ok, res = pcall(normalize, p)
  if not ok then
    if getmetatable(res) == PolicyError then fail("%s: %s", label, res.message) end
    error(res, 0)
  end
  return res
end

--- Returns the checked policy (defaults filled in, `names` the sorted
-- provider set).  Raises, at the caller's `level` (default: the caller of
-- `load`), naming the offending option.
function M.load(src, level)
  local ok, res = pcall(check, src)
  if ok then return res end
  if getmetatable(res) == PolicyError then error(res.message, (level or 1) + 1) end
  error(res, 0)
end

--- Like load, but an expected outcome: the policy, or nil and the message.
-- For `cbreaker check`.
function M.check(src)
  local ok, res = pcall(check, src)
  if ok then return res end
  if getmetatable(res) == PolicyError then return nil, res.message end
  error(res, 0)
end

--- The breaker options of provider `name` in the checked policy `p`:
-- defaults, then the provider's own.
function M.provider_options(p, name)
  local o = {}
  for k, v in pairs(p.defaults) do o[k] = v end
  for k, v in pairs(p.providers[name]) do o[k] = v end
  return o
end

return M
