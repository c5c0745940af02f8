-- harness.lua -- timing for the Lua benchmarks: best of several rounds of
-- N iterations, in ns per iteration, on the monotonic clock.  Figures are
-- read as ratios against a baseline measured in the same run.
local cb = require("cbreaker")

local M = {}

M.rounds = tonumber(os.getenv("BENCH_ROUNDS")) or 7

-- `body(n)` runs n iterations; returns the best ns per iteration.
function M.measure(n, body)
  local best = math.huge
  body(math.max(1, n // 10))  -- warm up
  for _ = 1, M.rounds do
    local t0 = cb.now()
    body(n)
    local ns = (cb.now() - t0) * 1e9 / n
    if ns < best then best = ns end
  end
  return best
end

function M.row(label, ns, base_label, base_ns, goal)
  local ratio = ns / base_ns
  print(("%-44s %8.1f ns   %-26s %8.1f ns   ratio %5.2fx%s"):format(
    label, ns, base_label, base_ns, ratio, goal and ("   (goal <= " .. goal .. "x)") or ""))
  return ratio
end

-- A row with a goal: `goal` says it ("<= 1.2x", "<= 100 ns"), `met` whether
-- the figure meets it; `unit` is the figures' ("ns" when nil).  Returns `met`.
function M.goal(label, ns, base_label, base_ns, goal, met, unit)
  unit = unit or "ns"
  print(("%-44s %8.1f %-2s   %-26s %8.1f %-2s   ratio %5.2fx   goal %-10s %s"):format(
    label, ns, unit, base_label, base_ns, unit, ns / base_ns, goal, met and "met" or "NOT MET"))
  return met
end

-- Lets `require("nop")` find the baseline module built in build*/bench.
function M.cpath(build)
  package.cpath = (build or os.getenv("CB_BUILD_DIR") or "build") .. "/bench/?.so;" .. package.cpath
end

return M
