-- registry.lua -- reg:get()+allow()+success() on an existing session from
-- Lua, against a lone breaker's allow()+success() in the same run.
--   build/cbreaker bench/registry.lua [N]
package.path = "bench/?.lua;" .. package.path
local h = require("harness")
local cb = require("cbreaker")
h.cpath(os.getenv("CB_BUILD_DIR"))
local nop = require("nop")()

local N = tonumber(arg and arg[1]) or 3000000

local br = cb.new{ name = "bench" }
local reg = cb.registry{}  -- the monotonic clock: one clock read per get
local keys = {}
for i = 1, 1000 do
  keys[i] = ("session-%07d"):format(i)
  reg:get("tenant-1", keys[i])
end
local one = keys[7]
local lone = {}  -- 1000 breakers without a registry: what rotating over them costs alone
for i = 1, 1000 do lone[i] = cb.new{ name = keys[i] } end

local pair, get1, getn, rot, floor = math.huge, math.huge, math.huge, math.huge, math.huge
for _ = 1, h.rounds do  -- interleaved: a busy machine skews all alike
  local r = h.rounds
  h.rounds = 1
  pair = math.min(pair, h.measure(N, function(n)
    for _ = 1, n do br:allow(); br:success() end
  end))
  get1 = math.min(get1, h.measure(N, function(n)
    for _ = 1, n do
      local b = reg:get("tenant-1", one)
      b:allow(); b:success()
    end
  end))
  getn = math.min(getn, h.measure(N, function(n)
    for i = 1, n do
      local b = reg:get("tenant-1", keys[i % 1000 + 1])
      b:allow(); b:success()
    end
  end))
  rot = math.min(rot, h.measure(N, function(n)
    for i = 1, n do
      local b = lone[i % 1000 + 1]
      b:allow(); b:success()
    end
  end))
  floor = math.min(floor, h.measure(N, function(n)
    for i = 1, n do
      nop:get_floor("tenant-1", keys[i % 1000 + 1])
      local b = lone[i % 1000 + 1]
      b:allow(); b:success()
    end
  end))
  h.rounds = r
end

print(("cbreaker %s, Lua registry benchmark, N = %d, best of %d rounds"):format(
  cb._VERSION, N, h.rounds))
h.goal("get()+allow()+success(), one session", get1, "lone allow()+success()", pair, "<= 2x",
  get1 <= 2 * pair)
h.goal("get()+allow()+success(), 1000 sessions", getn, "lone allow()+success()", pair, "<= 2x",
  getn <= 2 * pair)
print(("get() alone, about %.1f ns"):format(get1 - pair))
-- The 1000-session goal leaves get() one pair's time, and touching 1000
-- breakers' memory, with no registry at all, takes this much of it:
h.row("allow()+success() rotating 1000 lone breakers", rot, "lone allow()+success()", pair)
-- ...and with o:get_floor(tenant, key) (bench/nop.c) in place of get(), the
-- least a get through Lua's C API does: the 1000-session case's floor.
h.row("the same after o:get_floor(tenant, key)", floor, "lone allow()+success()", pair)
h.row("get()+allow()+success(), 1000 sessions", getn, "that floor", floor)
