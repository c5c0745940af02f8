-- registry_rss.lua -- what a session costs in memory when made from Lua:
-- N sessions (default 1M; tenant 8 bytes, key 15 bytes) through cb.registry,
-- the process's RSS read from /proc/self/statm before and after, per
-- session, keys included.  The baseline is the same figure for the C core
-- alone (bench_registry's first memory case, run as a child process).
-- Each of Lua's two collectors is measured in a process of its own (this
-- script runs itself with the mode): the boxes that gets hand out and Lua
-- drops are garbage, and where a collector lets it pile up between the
-- entries it leaves holes that RSS keeps (the registry paces the collector
-- with its sessions' C memory so that it does not: lregistry.c, pace).
--   CB_BUILD_DIR=build build/cbreaker bench/registry_rss.lua [N [MODE]]
package.path = "bench/?.lua;" .. package.path
local h = require("harness")
local cb = require("cbreaker")

local N = tonumber(arg and arg[1]) or 1000000
local MODE = arg and arg[2]
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

if MODE then  -- the child: one collector, one figure ("per heap")
  collectgarbage(MODE)
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
  print(("%.1f %.1f"):format((after - before) / N, (heap1 - heap0) * 1024 / N))
  reg:close()
  return
end

-- The C core's figure, in the same conditions (a fresh process).
local c_per
local p = io.popen(("%s/bench/bench_registry %d memory 2>/dev/null"):format(build, N))
if p then
  c_per = tonumber((p:read("a") or ""):match("([%d.]+) bytes/entry"))
  p:close()
end

print(("cbreaker %s, Lua registry memory, %d sessions (tenant 8 B + key 15 B), a process per collector"):format(
  cb._VERSION, N))
local self_cmd = ("%s/cbreaker %s %d"):format(build, arg[0], N)
for _, mode in ipairs({"incremental", "generational"}) do
  local q = assert(io.popen(("%s %s"):format(self_cmd, mode)))
  local out = q:read("a") or ""
  q:close()
  local per, heap = out:match("^([%d.]+) ([%d.]+)")
  per, heap = tonumber(per), tonumber(heap)
  assert(per, "the " .. mode .. " run failed: " .. out)
  local label = ("RSS per session, %s GC (Lua heap %.0f B)"):format(mode, heap)
  if c_per then
    h.goal(label, per, "C core alone (bench_registry)", c_per, "<= " .. GOAL .. " B",
      per <= GOAL, "B")
  else
    print(("%-46s %8.1f B   goal <= %d B %s   (no C baseline: %s/bench/bench_registry not run)")
      :format(label, per, GOAL, per <= GOAL and "met" or "NOT MET", build))
  end
end
