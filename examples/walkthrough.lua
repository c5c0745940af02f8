-- walkthrough.lua -- one breaker's life, narrated.  Runs on a manual clock,
-- so the 30 s open timeout passes at once.
--   cbreaker examples/walkthrough.lua
local cb = require("cbreaker")

local clock = cb.manual_clock(0)
local br = cb.new{
  name = "llm-provider",     -- pybreaker's defaults: 5 failures open it,
  clock = clock,             -- 30 s later it is half-open, 2 successes close it
  on_change = function(name, from, to, why)
    print(("  [t=%5.1fs] %s: %s -> %s (%s)"):format(clock:now(), name, from, to, why))
  end,
}

-- A provider that fails while `down` is true.
local down = false
local function provider(prompt)
  if down then error("503 Service Unavailable", 0) end
  return "answer to " .. prompt
end

local function request(i)
  local ok, res = br:call(provider, "prompt " .. i)
  if ok then
    print(("  request %2d: ok       %s"):format(i, res))
  elseif cb.is_rejection(res) then
    print(("  request %2d: rejected %s"):format(i, tostring(res)))
  else
    print(("  request %2d: failed   %s"):format(i, res))
  end
end

print("1. The provider is healthy: calls go through.")
for i = 1, 3 do request(i) end

print("2. It goes down: five failures in a row open the breaker.")
down = true
for i = 4, 8 do request(i) end

print("3. While open, calls are refused at once, without touching the provider.")
for i = 9, 10 do request(i) end

print("4. 30 seconds later the breaker lets one probe through (half-open).")
clock:advance(30)
down = false
request(11)
print("5. A second success closes it.")
request(12)

local st = br:stats()
print(("Done: %d calls, %d failures, %d rejected, opened %d time(s); state %s."):format(
  st.calls, st.failures, st.rejections, st.opens, st.state))
