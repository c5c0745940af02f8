-- lua_options.lua -- the Lua side of fuzz_lua_options.c: turns the fuzz
-- bytes into option tables and argument lists for every public function and
-- method, each called under pcall.  A Lua error is fine (bad input must
-- raise); a crash, a sanitizer report or a hang is not.
local cb = require("cbreaker")

local NOWHERE = "unix:///nonexistent/cbreaker-fuzz.sock"  -- never the network

local names = {
  -- cb.new / configure
  "name", "failure_threshold", "reset_timeout", "success_threshold", "half_open_max_calls",
  "probe_timeout", "failure_rate", "slow_call_ms", "slow_call_rate", "window",
  "window_seconds", "min_calls", "backoff_factor", "max_reset_timeout", "jitter", "seed",
  "classify", "clock", "on_change", "store",
  -- cb.bandit
  "arms", "prior", "decay", "half_life",
  -- cb.redis
  "url", "prefix", "channel", "timeout_ms", "password", "mode", "quorum", "ttl", "id",
  "backoff_min", "backoff_max", "secret", "replay_window_ms",
  -- cb.registry
  "defaults", "max_entries", "max_per_tenant", "idle_ttl", "unused_ttl", "cleanup_every",
  -- cb.engine (policy.lua)
  "providers", "sessions", "selection", "sentinel", "redis", "on_all_open", "max_wait",
  "sleep", "max_attempts", "strategy", "discount", "force_open_after", "openai", "anthropic",
  -- misspelt
  "failure_treshold", "resettimeout", "Name", "", "urll", "secrte", "arm",
}

local clock = cb.manual_clock(0)
local values = {
  0, 1, -1, 2, 0.5, 1e308, -1e308, 1 / 0, -1 / 0, 0 / 0, 2 ^ 53, 2 ^ 63,
  math.mininteger, math.maxinteger, 1e-300, 10, 100, 3,
  "", "x", "\0", "a\0b", "svc", "closed", "open", "shared", "broadcast", "success",
  "failure", "thompson", "round_robin", "fail", "wait", "bypass", "openai", ("z"):rep(300), NOWHERE, "redis://127.0.0.1:1/0", "0123456789abcdef-secret",
  true, false, {}, { "a", "b" }, { a = 1 }, function() end, function() error("boom") end,
  function() return true end, clock, coroutine.create(function() end), io.stdout,
}

-- Every `url` anywhere in an option table (cb.redis's, a policy's redis)
-- points nowhere, and Redis calls give up at once.
local function nowhere(t, depth)
  if type(t) ~= "table" or depth > 4 then return end
  if t.url ~= nil then t.url = NOWHERE end
  if type(t.redis) == "table" then t.redis.url = NOWHERE end  -- never the default 6379
  if t.timeout_ms ~= nil then t.timeout_ms = 1 end
  for _, v in pairs(t) do nowhere(v, depth + 1) end
end

local function run(bytes)
  local pos = 1
  local function byte()
    local b = bytes:byte(pos) or 0
    pos = pos + 1
    return b
  end
  local value, make_table
  function value(depth)
    local k = byte() % (#values + 3) + 1
    if k == #values + 1 then
      local n = byte() % 24
      local s = bytes:sub(pos, pos + n - 1)
      pos = pos + n
      return s
    elseif k == #values + 2 then
      local s = bytes:sub(pos, pos + 7) .. ("\0"):rep(8)
      pos = pos + 8
      return (string.unpack("<d", s))
    elseif k == #values + 3 then
      if depth < 3 then return make_table(depth + 1) end
      return nil
    end
    return values[k]
  end
  function make_table(depth)
    local t = {}
    for _ = 1, byte() % 8 do
      local key
      if byte() % 5 == 0 then key = value(depth) else key = names[byte() % #names + 1] end
      if key ~= nil and key == key then t[key] = value(depth) end
    end
    return t
  end
  local function args(depth)
    local a, n = {}, byte() % 4
    for i = 1, n do a[i] = value(depth) end
    return a, n
  end

  local ctors = { "new", "bandit", "redis", "manual_clock", "is_rejection", "registry",
    "engine", "now" }
  local made = {}
  for _ = 1, 1 + byte() % 4 do
    local fname = ctors[byte() % #ctors + 1]
    local f = cb[fname]
    if f then
      local arg = byte() % 4 == 0 and value(0) or make_table(0)
      if fname == "engine" and type(arg) ~= "table" then arg = {} end  -- a string is a path
      if fname == "redis" then
        if type(arg) ~= "table" then arg = {} end
        arg.url = NOWHERE
      end
      nowhere(arg, 0)
      if fname == "now" then arg = nil end
      local ok, obj = pcall(f, arg)
      if ok and (type(obj) == "userdata" or type(obj) == "table") then made[#made + 1] = obj end
    end
  end
  for _ = 1, byte() % 16 do
    local obj = made[byte() % math.max(#made, 1) + 1]
    if obj == nil then break end
    local mt = getmetatable(obj)
    local index = type(mt) == "table" and type(mt.__index) == "table" and mt.__index
      or (type(obj) == "table" and obj) or {}
    local methods = {}
    for k, v in pairs(index) do
      if type(v) == "function" and k ~= "wait" then methods[#methods + 1] = k end
    end
    table.sort(methods)
    if #methods > 0 then
      local m = methods[byte() % #methods + 1]
      local a, n = args(0)
      for i = 1, n do nowhere(a[i], 0) end
      if m == "reload" and type(a[1]) ~= "table" then a[1] = {} end  -- a string is a path
      pcall(index[m], obj, table.unpack(a, 1, n))
    end
    if byte() % 8 == 0 then clock:advance(byte()) end
  end
  for _, obj in ipairs(made) do
    if type(obj) == "userdata" or type(obj) == "table" then
      pcall(function() obj:close() end)
    end
  end
end

return run
