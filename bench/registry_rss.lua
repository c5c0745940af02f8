-- registry_rss.lua -- what a session costs in memory when made from Lua:
-- N sessions (default 1M; tenant 8 bytes, key 15 bytes) through cb.registry,
-- the process's RSS read from /proc/self/statm before and after, per
-- session, keys included.  The baseline is the same figure for the C core
-- alone (bench_registry's first memory case, run as a child process).
--   CB_BUILD_DIR=build build/cbreaker bench/registry_rss.lua [N]
-- Run it in a process of its own: RSS only shows what this one allocated.
package.path = "bench/?.lua;" .. package.path
local h = require("harness")
local cb = require("cbreaker")

local N = tonumber(arg and arg[1]) or 1000000
local build = os.getenv("CB_BUILD_DIR") or "build"
local GOAL = 250  -- bytes per session

local function pagesize()
  local p = io.popen("getconf PAGESIZE")
  local n = p and tonumber(p:read("l"))
  if p then p:close() end
  return n or 4096
end
local PAGE = pagesize()

local function rss()
  local f = assert(io.open("/proc/self/statm"))
  local _, resident = f:read("n", "n")
  f:close()
  return resident * PAGE
end

collectgarbage("collect")
local before, heap0 = rss(), collectgarbage("count")
local reg = cb.registry{ max_entries = 0 }
for i = 1, N do
  reg:get("tenant-1", ("session-%07d"):format(i))  -- the box is dropped: Lua holds none
end
collectgarbage("collect")
collectgarbage("collect")
local after, heap1 = rss(), collectgarbage("count")
assert(reg:size() == N, "every session is there")
local per = (after - before) / N

-- The C core's figure, in the same conditions (a fresh process).
local c_per
local p = io.popen(("%s/bench/bench_registry %d memory 2>/dev/null"):format(build, N))
if p then
  c_per = tonumber((p:read("a") or ""):match("([%d.]+) bytes/entry"))
  p:close()
end

print(("cbreaker %s, Lua registry memory, %d sessions (tenant 8 B + key 15 B)"):format(
  cb._VERSION, N))
print(("RSS %.1f -> %.1f MiB; Lua heap %.1f -> %.1f MiB (%.1f B a session)"):format(
  before / 2^20, after / 2^20, heap0 / 1024, heap1 / 1024, (heap1 - heap0) * 1024 / N))
if c_per then
  h.goal("RSS per session from Lua, keys included", per, "C core alone (bench_registry)",
    c_per, "<= " .. GOAL .. " B", per <= GOAL, "B")
else
  print(("RSS per session from Lua, keys included %8.1f B   goal <= %d B %s   (no C baseline: %s/bench/bench_registry not run)")
    :format(per, GOAL, per <= GOAL and "met" or "NOT MET", build))
end
reg:close()
