-- breaker.lua -- the cost of a breaker from Lua, against empty method calls.
--   build/cbreaker bench/breaker.lua [N]
package.path = "bench/?.lua;" .. package.path
local h = require("harness")
h.cpath(os.getenv("CB_BUILD_DIR"))
local cb = require("cbreaker")
local nop = require("nop")()

local N = tonumber(arg and arg[1]) or 5000000

local br = cb.new{ name = "bench" }
local open = cb.new{ name = "open", failure_threshold = 1, reset_timeout = 1e6 }
open:failure()
local function trivial() return 1 end

local nop2 = h.measure(N, function(n) for _ = 1, n do nop:nop(); nop:nop() end end)
local pair = h.measure(N, function(n) for _ = 1, n do br:allow(); br:success() end end)
local nop1 = h.measure(N, function(n) for _ = 1, n do nop:nop() end end)
local rej = h.measure(N, function(n) for _ = 1, n do open:allow() end end)
local floor = h.measure(N, function(n) for _ = 1, n do nop:reject_floor() end end)
local pc = h.measure(N, function(n) for _ = 1, n do pcall(trivial) end end)
local call = h.measure(N, function(n) for _ = 1, n do br:call(trivial) end end)
local rejcall = h.measure(N, function(n) for _ = 1, n do open:call(trivial) end end)
local forced = cb.new{ name = "forced" }
forced:force_open()
local fcall = h.measure(N, function(n) for _ = 1, n do forced:call(trivial) end end)
local fallow = h.measure(N, function(n) for _ = 1, n do forced:allow() end end)

print(("cbreaker %s, Lua breaker benchmark, N = %d, best of %d rounds"):format(
  cb._VERSION, N, h.rounds))
h.row("allow()+success() pair", pair, "2x o:nop()", nop2, 1.5)
h.row("br:call(fn), trivial fn", call, "pcall(fn)", pc, 2.5)
h.row("rejected allow() on an open breaker", rej, "1x o:nop()", nop1)
print(("rejected allow() - one o:nop() = %.1f ns"):format(rej - nop1))
-- What any rejected allow() pays through the C API (bench/nop.c): the goal
-- below cannot be met while this floor is itself over o:nop() + 10 ns.
h.row("rejected allow() on an open breaker", rej, "its API floor", floor)
print(("its API floor - one o:nop() = %.1f ns; rejected allow() - its floor = %.1f ns"):format(
  floor - nop1, rej - floor))
h.goal("br:call(fn) on an open breaker", rejcall, "allow() on it", rej, "<= 1.2x",
  rejcall <= 1.2 * rej)
h.goal("br:call(fn) on a forced-open breaker", fcall, "allow() on it", fallow, "<= 1.2x",
  fcall <= 1.2 * fallow)
h.goal("rejected allow() on an open breaker", rej, "o:nop() (+ 10 ns)", nop1, "<= +10 ns",
  rej <= nop1 + 10)
