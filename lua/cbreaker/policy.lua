--- cbreaker.policy: reads and checks an engine policy.
-- A policy is a table, or the path of a Lua file that returns one.  Every
-- option is checked here, so an error names the option's full path
-- (`providers.openai.failure_treshold`) and the closest valid name; the C
-- layer checks the breaker options again when the breakers are built.
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
--     redis     = {url=, prefix=, channel=, timeout_ms=, mode=, ...},  -- cb.redis
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

local floor, huge = math.floor, math.huge

local MAX_TIMEOUT = 1e9      -- the C core's bounds (src/core/breaker.c)
local MAX_WINDOW = 1000000
local MAX_COUNT = 4294967295
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
local closest = require("cbreaker.core").closest
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
  fail("'%s' must be %s (got %s)", path, what, typename(v))
end

local function number(lo, hi, what, lo_open)
  return function(v, path)
    if type(v) ~= "number" or v ~= v or v == huge or v == -huge then
      want(what, v, path)
    end
    if v < lo or v > hi or (lo_open and v == lo) then
      fail("'%s' must be %s (got %s)", path, what, tostring(v))
    end
    return v
  end
end

local function integer(lo, hi, what)
  return function(v, path)
    if type(v) ~= "number" then want(what, v, path) end
    if v ~= floor(v) then fail("'%s' must be %s (got %s)", path, what, tostring(v)) end
    v = math.tointeger(v)
    if not v or v < lo or v > hi then
      fail("'%s' must be %s (got %s)", path, what, tostring(v))
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
        fail("'%s' must be %s (got '%s'; did you mean '%s'?)", path, what, v, closest(v, set))
      end
      fail("'%s' must be %s (got %s)", path, what, type(v) == "string" and ("'" .. v .. "'") or typename(v))
    end
    return v
  end
end

local function clock(v, path)
  if typename(v) ~= "cbreaker.ManualClock" then want("a cbreaker.manual_clock", v, path) end
  return v
end

local seconds = number(0, MAX_TIMEOUT, "a number of seconds in [0, 1e9]")
local rate = number(0, 1, "a number in [0, 1]")

-- ---- sections ----------------------------------------------------------------

--- Breaker options (src/lua/lopts.c), with the core's ranges.
local breaker_fields = {
  name = oftype("string"),
  failure_threshold = integer(0, MAX_COUNT, "a whole number of failures >= 0"),
  reset_timeout = seconds,
  success_threshold = integer(1, MAX_COUNT, "a whole number >= 1"),
  half_open_max_calls = integer(1, MAX_COUNT, "a whole number >= 1"),
  probe_timeout = seconds,
  failure_rate = rate,
  slow_call_ms = number(0, MAX_TIMEOUT * 1000, "a number of milliseconds >= 0"),
  slow_call_rate = number(0, 1, "a number in (0, 1]", true),
  window = integer(1, MAX_WINDOW, "a number of calls in [1, 1000000]"),
  window_seconds = number(0, MAX_WINDOW, "a number of seconds in [0, 1000000]"),
  min_calls = integer(1, MAX_COUNT, "a whole number >= 1"),
  backoff_factor = number(1, 1000, "a number in [1, 1000]"),
  max_reset_timeout = seconds,
  jitter = rate,
  seed = integer(math.mininteger, math.maxinteger, "an integer"),
  classify = oftype("function"),
  clock = clock,
  on_change = oftype("function"),
}
M.breaker_fields = breaker_fields

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

--- Breaker options, minus `deny` (options the engine sets itself).
local function breaker_opts(deny)
  local fields = {}
  for k, f in pairs(breaker_fields) do
    if not deny[k] then fields[k] = f end
  end
  return function(t, path)
    for k in pairs(type(t) == "table" and t or {}) do
      if deny[k] then fail("'%s' cannot be set here (%s)", join(path, k), deny[k]) end
    end
    return section(t, path, fields)
  end
end

local provider_opts = breaker_opts({
  name = "a provider's breaker is named after its key in 'providers'",
  clock = "set 'clock' at the top of the policy",
})
local session_opts = breaker_opts({
  name = "a session's breaker is named after its tenant and session",
  clock = "set 'clock' at the top of the policy",
  on_change = "session breakers take no callback; see engine:stats().sessions",
})

local function providers(t, path)
  if type(t) ~= "table" then want("a table of provider name -> options", t, path) end
  local out, n = {}, 0
  for name, opts in pairs(t) do
    if type(name) ~= "string" or name == "" then
      fail("'%s' must be keyed by provider names (got %s key %s)", path, type(name), tostring(name))
    end
    local p = join(path, name)
    out[name] = provider_opts(opts, p)
    n = n + 1
  end
  if n == 0 then fail("'%s' must name at least one provider", path) end
  if n > M.MAX_PROVIDERS then
    fail("'%s' names %d providers; at most %d", path, n, M.MAX_PROVIDERS)
  end
  return out
end

-- cb.registry options (src/lua/lregistry.c); the clock is the policy's.
local sessions_fields = {
  defaults = session_opts,
  max_entries = integer(0, math.maxinteger, "a whole number >= 0 (0: no cap)"),
  max_per_tenant = integer(0, math.maxinteger, "a whole number >= 0 (0: no cap)"),
  idle_ttl = function(v, path)  -- math.huge: never swept
    if v == huge then return v end
    return number(0, MAX_TIMEOUT, "a number of seconds > 0 (math.huge: never)", true)(v, path)
  end,
  unused_ttl = seconds,
  cleanup_every = integer(0, MAX_COUNT, "a whole number >= 0 (0: only on request)"),
  seed = integer(0, math.maxinteger, "an integer >= 0"),
}

local function sessions(t, path)
  if t == false then return false end  -- no per-session guardrails
  return section(t, path, sessions_fields)
end

local function prior(v, path)
  if type(v) ~= "table" then want("a pair {alpha, beta}", v, path) end
  for k in pairs(v) do
    if k ~= 1 and k ~= 2 then fail("'%s' must be a pair {alpha, beta} (got key %s)", path, tostring(k)) end
  end
  local pos = number(0.001, 1e6, "a number in [0.001, 1e6]")
  return {pos(v[1], path .. "[1]"), pos(v[2], path .. "[2]")}
end

local selection_fields = {
  strategy = oneof("thompson", "round_robin"),
  prior = prior,
  decay = number(0, 1, "a number in (0, 1]", true),     -- per update, every arm
  half_life = seconds,                                   -- evidence halves in this time
  discount = number(0, 1, "a number in [0, 1]"),         -- on a breaker opening
  seed = integer(math.mininteger, math.maxinteger, "an integer"),
}

-- cb.redis options (src/lua/lstore.c); the clock is the policy's.
local redis_fields = {
  url = oftype("string"),
  prefix = oftype("string"),
  channel = oftype("string"),
  password = oftype("string"),
  id = oftype("string"),
  timeout_ms = number(0, MAX_TIMEOUT, "a number of milliseconds > 0", true),
  ttl = number(0, MAX_TIMEOUT, "a number of seconds > 0", true),
  backoff_min = seconds,
  backoff_max = seconds,
  mode = oneof("broadcast", "shared"),
  quorum = integer(1, 10000, "a whole number in [1, 10000]"),
}

local sentinel_fields = {
  force_open_after = integer(0, MAX_COUNT, "a whole number of failed probes >= 0 (0: never)"),
}

local top_fields = {
  defaults = provider_opts,
  providers = providers,
  sessions = sessions,
  selection = function(t, path) return section(t, path, selection_fields) end,
  redis = function(t, path) return section(t, path, redis_fields) end,
  sentinel = function(t, path) return section(t, path, sentinel_fields) end,
  clock = clock,
  on_all_open = oneof("fail", "wait", "bypass"),
  max_attempts = integer(1, 100, "a whole number in [1, 100]"),
  max_wait = seconds,
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
