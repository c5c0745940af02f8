-- bench/bandit.lua -- ns per Thompson-sampling select over 8 eligible arms:
-- cb.bandit (C core) against a straightforward pure-Lua sampler (Marsaglia-
-- Tsang gamma with the a < 1 boost, Marsaglia's polar normals, Beta as
-- X / (X + Y), on math.random), measured in the same run.
--
--   CB_BUILD_DIR=build build/cbreaker bench/bandit.lua [selects]
package.path = "bench/?.lua;" .. package.path
local h = require("harness")
h.cpath(os.getenv("CB_BUILD_DIR"))
local cb = require("cbreaker")
local nop = require("nop")()

local N = tonumber(arg and arg[1]) or 200000  -- the pure-Lua sampler runs N / 10
local now = cb.now

local names = { "openai", "anthropic", "mistral", "google", "cohere", "groq",
  "deepseek", "local" }
local rates = { 0.9, 0.85, 0.8, 0.7, 0.6, 0.95, 0.5, 0.75 }

-- ---- a straightforward Thompson sampler in Lua ---------------------------------

local function lua_bandit(seed)
  local random, log, sqrt = math.random, math.log, math.sqrt
  math.randomseed(seed)
  local alpha, beta = {}, {}
  for _, n in ipairs(names) do alpha[n], beta[n] = 1, 1 end
  local spare
  local function normal()
    if spare then
      local z = spare
      spare = nil
      return z
    end
    local u, v, q
    repeat
      u, v = 2 * random() - 1, 2 * random() - 1
      q = u * u + v * v
    until q < 1 and q > 0
    local f = sqrt(-2 * log(q) / q)
    spare = v * f
    return u * f
  end
  local function gamma(a)
    local boost = 1
    if a < 1 then
      boost = (1 - random()) ^ (1 / a)
      a = a + 1
    end
    local d = a - 1 / 3
    local c = 1 / sqrt(9 * d)
    while true do
      local x, v
      repeat
        x = normal()
        v = 1 + c * x
      until v > 0
      v = v * v * v
      local u = random()
      if u < 1 - 0.0331 * x ^ 4 or log(u) < 0.5 * x * x + d * (1 - v + log(v)) then
        return d * v * boost
      end
    end
  end
  local self = {}
  function self.update(arm, reward)
    alpha[arm] = alpha[arm] + reward
    beta[arm] = beta[arm] + 1 - reward
  end
  function self.select(eligible)
    local best, top = nil, -1
    for i = 1, #eligible do
      local arm = eligible[i]
      local x, y = gamma(alpha[arm]), gamma(beta[arm])
      local s = x / (x + y)
      if s > top then best, top = arm, s end
    end
    return best
  end
  return self
end

-- ---- the same evidence in both ------------------------------------------------------

local c_bandit = cb.bandit{ arms = names, seed = 1 }
local l_bandit = lua_bandit(1)
math.randomseed(2)
for _ = 1, 200 do  -- a few hundred observations per arm, as after warm-up
  for i, n in ipairs(names) do
    local r = math.random() < rates[i] and 1 or 0
    c_bandit:update(n, r)
    l_bandit.update(n, r)
  end
end

local eligible = names
local sink

-- Each variant: a loop of n calls.  The variants run in turns, round after
-- round, and each keeps its best round, so a busy moment on a shared
-- machine hits all of them alike and the ratio stays fair.
local variants = {
  { name = "c_list", n = N, fn = function(n)
    local b = c_bandit
    for _ = 1, n do sink = b:select(eligible) end
  end },
  { name = "c_all", n = N, fn = function(n)
    local b = c_bandit
    for _ = 1, n do sink = b:select() end
  end },
  { name = "lua_list", n = N // 10, fn = function(n)
    local select = l_bandit.select
    for _ = 1, n do sink = select(eligible) end
  end },
  { name = "nop", n = N, fn = function(n)
    local o = nop
    for _ = 1, n do sink = o:nop() or o end
  end },
}
local ROUNDS = h.rounds
local best = {}
for _, v in ipairs(variants) do
  v.fn(v.n // 10)  -- warm up
  best[v.name] = math.huge
end
for _ = 1, ROUNDS do
  for _, v in ipairs(variants) do
    local t0 = now()
    v.fn(v.n)
    local ns = (now() - t0) / v.n * 1e9
    if ns < best[v.name] then best[v.name] = ns end
  end
end
assert(sink)
local c_list, c_all, lua_list, nop1 = best.c_list, best.c_all, best.lua_list, best.nop

print(("cbreaker %s, Thompson select over 8 eligible arms, N = %d (pure Lua: N / 10),"
  .. " best of %d interleaved rounds"):format(cb._VERSION, N, ROUNDS))
h.row("b:select(list of 8 names)", c_list, "pure-Lua sampler", lua_list)
h.row("b:select() (all 8 arms)", c_all, "b:select(list of 8 names)", c_list)
h.row("b:select(list of 8 names)", c_list, "1x o:nop()", nop1)
h.goal("b:select(list of 8 names)", c_list, "pure-Lua sampler", lua_list, "< 400 ns", c_list < 400)
