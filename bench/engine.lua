-- engine.lua -- the cost of routing a call through cb.engine, against calling
-- the function directly (and against pcall and one breaker's call).
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

local direct = h.measure(N, function(n) for i = 1, n do fn("openai", i) end end)
local pc = h.measure(N, function(n) for i = 1, n do pcall(fn, "openai", i) end end)
local brcall = h.measure(N, function(n) for i = 1, n do br:call(fn, "openai", i) end end)
local e_one = h.measure(N, function(n) for i = 1, n do one:call("t", "s", fn, i) end end)
local e_rr = h.measure(N, function(n) for i = 1, n do rr:call("t", "s", fn, i) end end)
local e_bare = h.measure(N, function(n) for i = 1, n do bare:call("t", "s", fn, i) end end)
local e_full = h.measure(N, function(n)
  for i = 1, n do full:call("tenant", "session", fn, i) end
end)
local pick = h.measure(N, function(n) for _ = 1, n do bare:pick() end end)

print(("cbreaker %s, engine benchmark, N = %d, best of %d rounds"):format(cb._VERSION, N, h.rounds))
h.row("br:call(fn)", brcall, "fn() directly", direct)
h.row("engine:call, 1 provider, no sessions", e_one, "fn() directly", direct)
h.row("engine:call, 4 providers round robin", e_rr, "fn() directly", direct)
h.row("engine:call, 4 providers Thompson", e_bare, "fn() directly", direct)
h.row("engine:call, 4 Thompson + session guard", e_full, "fn() directly", direct)
h.row("engine:call, 4 Thompson + session guard", e_full, "pcall(fn)", pc)
h.row("engine:pick(), 4 providers Thompson", pick, "fn() directly", direct)
print(("engine:call overhead over fn(): %.0f ns (full), %.0f ns (1 provider)"):format(
  e_full - direct, e_one - direct))
