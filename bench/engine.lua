-- engine.lua -- the cost of routing a call through cb.engine, against calling
-- the function directly (and against pcall and one breaker's call), each
-- case interleaved over the rounds (best of them), so a busy machine slows
-- every case alike.
--   build/cbreaker bench/engine.lua [N]
package.path = "bench/?.lua;" .. package.path
local h = require("harness")
local cb = require("cbreaker")

local N = tonumber(arg and arg[1]) or 200000

local function fn(provider, x) return provider, x end
local providers = {openai = {}, anthropic = {}, mistral = {}, ["local-llama"] = {}}

local full = cb.engine{providers = providers, selection = {seed = 1}}
local bare = cb.engine{providers = providers, selection = {seed = 1}, sessions = false}
local one = cb.engine{providers = {openai = {}}, sessions = false}
local rr = cb.engine{providers = providers, selection = {strategy = "round_robin"}, sessions = false}
local br = cb.new{name = "bench"}

local cases = {
  {"direct", function(n) for i = 1, n do fn("openai", i) end end},
  {"pcall", function(n) for i = 1, n do pcall(fn, "openai", i) end end},
  {"brcall", function(n) for i = 1, n do br:call(fn, "openai", i) end end},
  {"one", function(n) for i = 1, n do one:call("t", "s", fn, i) end end},
  {"rr", function(n) for i = 1, n do rr:call("t", "s", fn, i) end end},
  {"bare", function(n) for i = 1, n do bare:call("t", "s", fn, i) end end},
  {"full", function(n) for i = 1, n do full:call("tenant", "session", fn, i) end end},
  {"pick", function(n) for _ = 1, n do bare:pick() end end},
}

-- Best ns per iteration of each case, the cases interleaved in every round.
local best = {}
for _, c in ipairs(cases) do
  c[2](math.max(1, N // 10))  -- warm up
  best[c[1]] = math.huge
end
for _ = 1, h.rounds do
  for _, c in ipairs(cases) do
    local t0 = cb.now()
    c[2](N)
    local ns = (cb.now() - t0) * 1e9 / N
    if ns < best[c[1]] then best[c[1]] = ns end
  end
end
local b = best

print(("cbreaker %s, engine benchmark, N = %d, best of %d interleaved rounds"):format(
  cb._VERSION, N, h.rounds))
h.row("br:call(fn)", b.brcall, "fn() directly", b.direct)
h.row("engine:call, 1 provider, no sessions", b.one, "fn() directly", b.direct)
h.row("engine:call, 4 providers round robin", b.rr, "fn() directly", b.direct)
h.row("engine:call, 4 providers Thompson", b.bare, "fn() directly", b.direct)
h.row("engine:call, 4 Thompson + session guard", b.full, "fn() directly", b.direct)
h.row("engine:call, 4 Thompson + session guard", b.full, "pcall(fn)", b.pcall)
h.row("engine:call, 4 Thompson + session guard", b.full, "br:call(fn)", b.brcall)
h.row("engine:pick(), 4 providers Thompson", b.pick, "fn() directly", b.direct)
local over_full, over_one = b.full - b.direct, b.one - b.direct
h.goal("engine:call overhead, 4 Thompson + session", over_full, "fn() directly", b.direct,
  "<= 400 ns", over_full <= 400)
h.goal("engine:call overhead, 1 provider", over_one, "fn() directly", b.direct,
  "<= 250 ns", over_one <= 250)
