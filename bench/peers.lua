-- peers.lua -- cbreaker against the pure-Lua breakers Lua users pick today,
-- dream11's lua-circuit-breaker and moonbreaker, in one process: each case
-- for each library in turn, round after round (5), best round kept, so a
-- busy moment on a shared machine hits all of them alike.  Then the issue's
-- goals for these paths, met or not.
--
--   CB_BUILD_DIR=build build/cbreaker bench/peers.lua [N]
--
-- The peers are loaded from the ignored folder peers/ (CB_PEERS_DIR), never
-- from the repository; bench/PEERS.md says how to fill it.  A missing peer
-- is skipped with a line saying why.
package.path = "bench/?.lua;" .. package.path
local h = require("harness")
h.cpath(os.getenv("CB_BUILD_DIR"))
local cb = require("cbreaker")
local nop = require("nop")()

local N = tonumber(arg and arg[1]) or 200000
local ROUNDS = 5
local SESSIONS = 1000

local dir = os.getenv("CB_PEERS_DIR") or "peers"
package.path = package.path .. (";%s/?.lua;%s/?/init.lua"):format(dir, dir)

local function ok_fn() return true end

-- ---- the libraries: each case as a body(n) --------------------------------------

local keys = {}
for i = 1, SESSIONS do keys[i] = ("session-%07d"):format(i) end  -- 15 bytes

--- cbreaker, through its Lua API.
local function cbreaker_cases()
  local br = cb.new{name = "closed"}
  local open = cb.new{name = "open", failure_threshold = 1, reset_timeout = 1e6}
  open:failure()
  local reg = cb.registry{max_entries = 10 * SESSIONS}
  for i = 1, SESSIONS do reg:get("tenant", keys[i]) end
  return {
    closed = function(n) for _ = 1, n do br:call(ok_fn) end end,
    sessions = function(n)
      for i = 1, n do reg:get("tenant", keys[i % SESSIONS + 1]):call(ok_fn) end
    end,
    open_allow = function(n) for _ = 1, n do open:allow() end end,
    open_call = function(n) for _ = 1, n do open:call(ok_fn) end end,
  }, {br = br, open = open, reg = reg}
end

--- dream11's lua-circuit-breaker: _before(), the call, _after(generation,
-- ok), as its README shows; a breaker per session from its factory.
local function dream11_cases()
  local ok, factory = pcall(require, "lua-circuit-breaker.factory")
  if not ok then return nil, "not found in " .. dir .. "/ (see bench/PEERS.md)" end
  local settings = {
    version = 1, window_time = 10, min_calls_in_window = 1,
    failure_percent_threshold = 50, wait_duration_in_open_state = 1e6,
    notify = function() end,
  }
  local function call(b, fn)
    local allowed, err = b:_before()
    if not allowed then return false, err end
    local gen = b._generation
    local res = pcall(fn)
    b:_after(gen, res)
    return res
  end
  local breakers = factory:new()
  local br = breakers:get_circuit_breaker("closed", "bench", settings)
  local open = breakers:get_circuit_breaker("open", "bench", settings)
  local print0 = print
  print = function() end  -- it prints every transition
  call(open, function() error("down") end)
  print = print0
  assert(open:state() == "open", "lua-circuit-breaker: the open breaker did not open")
  local sessions = factory:new()
  for i = 1, SESSIONS do sessions:get_circuit_breaker(keys[i], "tenant", settings) end
  return {
    closed = function(n) for _ = 1, n do call(br, ok_fn) end end,
    sessions = function(n)
      for i = 1, n do call(sessions:get_circuit_breaker(keys[i % SESSIONS + 1], "tenant", settings), ok_fn) end
    end,
    open_allow = function(n) for _ = 1, n do open:_before() end end,
    open_call = function(n) for _ = 1, n do call(open, ok_fn) end end,
  }
end

--- moonbreaker: breaker:execute(fn), what a wrapped function calls (one
-- indirection fewer than its documented breaker(fn)(...)); sessions in a
-- plain table, as it has no map of its own.
local function moonbreaker_cases()
  if not package.searchpath("moonbreaker", package.path) then
    return nil, "not found in " .. dir .. "/ (see bench/PEERS.md)"
  end
  local ok, moonbreaker = pcall(require, "moonbreaker")
  if not ok then
    return nil, "it needs lua-stdlib's std.table (and std.normalize), which Debian 12 " ..
      "does not package; see bench/PEERS.md (" .. tostring(moonbreaker):match("[^\n]*") .. ")"
  end
  local br = moonbreaker{limit = 5, timeout = 30}
  local open = moonbreaker{limit = 1, timeout = 1e6}
  open:execute(function() return nil end)  -- a falsy result is its failure
  assert(open:state() == "open", "moonbreaker: the open breaker did not open")
  local sessions = {}
  local function get(key)
    local b = sessions[key]
    if not b then
      b = moonbreaker{limit = 5, timeout = 30}
      sessions[key] = b
    end
    return b
  end
  for i = 1, SESSIONS do get(keys[i]) end
  return {
    closed = function(n) for _ = 1, n do br:execute(ok_fn) end end,
    sessions = function(n) for i = 1, n do get(keys[i % SESSIONS + 1]):execute(ok_fn) end end,
    open_allow = function(n) for _ = 1, n do open:_before() end end,
    open_call = function(n) for _ = 1, n do open:execute(ok_fn) end end,
  }
end

-- ---- measuring ---------------------------------------------------------------------

local CASES = {
  {"closed", "guarded call, closed, success"},
  {"sessions", "1000 rotating sessions, get + call"},
  {"open_allow", "allow() on an open breaker"},
  {"open_call", "br:call(fn) on an open breaker"},
}

local mine, parts = cbreaker_cases()
local libs = {{name = "cbreaker", cases = mine}}
for _, peer in ipairs{{"lua-circuit-breaker", dream11_cases}, {"moonbreaker", moonbreaker_cases}} do
  local cases, why = peer[2]()
  if cases then
    libs[#libs + 1] = {name = peer[1], cases = cases}
  else
    print(("skipped %s: %s"):format(peer[1], why))
  end
end

-- The goals' baselines, measured in the same rounds.
local reg, br, open = parts.reg, parts.br, parts.open
local baselines = {
  nop = function(n) for _ = 1, n do nop:nop() end end,
  pcall = function(n) for _ = 1, n do pcall(ok_fn) end end,
  pair = function(n) for _ = 1, n do br:allow(); br:success() end end,
  sessions_pair = function(n)
    for i = 1, n do
      local b = reg:get("tenant", keys[i % SESSIONS + 1])
      b:allow(); b:success()
    end
  end,
}

local best = {}
local function keep(key, body)
  local r = h.rounds
  h.rounds = 1
  local ns = h.measure(N, body)
  h.rounds = r
  if not best[key] or ns < best[key] then best[key] = ns end
end

for _ = 1, ROUNDS do
  for _, c in ipairs(CASES) do
    for _, lib in ipairs(libs) do keep(lib.name .. "." .. c[1], lib.cases[c[1]]) end
  end
  for k, body in pairs(baselines) do keep(k, body) end
end

-- ---- report ------------------------------------------------------------------------

print(("cbreaker %s against its peers, N = %d, %d interleaved rounds, best of %d"):format(
  cb._VERSION, N, ROUNDS, ROUNDS))
for _, c in ipairs(CASES) do
  local mine_ns = best["cbreaker." .. c[1]]
  if #libs == 1 then print(("%-44s %8.1f ns"):format(c[2], mine_ns)) end
  for k = 2, #libs do
    local label = k == 2 and c[2] or ""
    if c[1] == "open_call" then  -- the issue's goal: faster than both peers
      local peer_ns = best[libs[k].name .. "." .. c[1]]
      h.goal(label, mine_ns, libs[k].name, peer_ns, "< 1x", mine_ns < peer_ns)
    else
      h.row(label, mine_ns, libs[k].name, best[libs[k].name .. "." .. c[1]])
    end
  end
end

print()
print("the issue's goals for these paths, against baselines from the same rounds:")
local open_allow, open_call = best["cbreaker.open_allow"], best["cbreaker.open_call"]
local closed = best["cbreaker.closed"]
h.goal("br:call(fn) on an open breaker", open_call, "allow() on it", open_allow, "<= 1.2x",
  open_call <= 1.2 * open_allow)
h.goal("allow() on an open breaker", open_allow, "o:nop() (+ 10 ns)", best.nop, "<= +10 ns",
  open_allow <= best.nop + 10)
h.goal("closed br:call(fn)", closed, "pcall(fn)", best.pcall, "<= 2.5x", closed <= 2.5 * best.pcall)
h.goal("closed br:call(fn)", closed, "100 ns", 100, "<= 100 ns", closed <= 100)
h.goal("1000 sessions, get + allow + success", best.sessions_pair, "lone allow()+success()",
  best.pair, "<= 2x", best.sessions_pair <= 2 * best.pair)
-- For the case without a goal of its own (get + call, which the binding's
-- next round changes), the figure above is printed only.
