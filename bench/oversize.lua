-- bench/oversize.lua -- an attacker with PUBLISH re-sends a channel message
-- over the reply bound every 100 ms for 5 s; how long is an instance
-- connected, how often does it reconnect, and how long does the longest
-- allow() take (reconnect work runs from allow's automatic poll)?
--
--   build/cbreaker bench/oversize.lua [SECONDS] [BYTES]
package.path = "spec/?.lua;" .. package.path
local cb = require("cbreaker")
local helper = require("helpers.redis")

local seconds = tonumber(arg and arg[1]) or 5
local bytes = tonumber(arg and arg[2]) or 100 * 1024
local server = helper.start()

local ok, err = pcall(function()
  local store = cb.redis{ url = server:url(), id = "victim" }
  assert(store:health().connected, store:health().last_error)
  local br = cb.new{ name = "svc", store = store }
  local publish = ("redis-cli -p %d eval \"redis.call('publish', 'circuit_breaker:events', "
    .. "string.rep('x', %d))\" 0 >/dev/null"):format(server.port, bytes)
  local t0 = cb.now()
  local next_pub, samples, up, worst, calls = t0, 0, 0, 0, 0
  while cb.now() - t0 < seconds do
    local now = cb.now()
    if now >= next_pub then
      os.execute(publish)
      next_pub = next_pub + 0.1
    end
    local a = cb.now()
    br:allow()
    local dt = cb.now() - a
    if dt > worst then worst = dt end
    calls = calls + 1
    samples = samples + 1
    if store:health().connected then up = up + 1 end
  end
  local h = store:health()
  print(("%d-byte message every 100 ms for %g s: connected %.0f%% of %d samples, "
    .. "%d reconnects, %d failures, %d malformed, longest allow() %.1f ms over %d calls")
    :format(bytes, seconds, 100 * up / samples, samples, h.reconnects, h.failures,
      h.malformed, worst * 1000, calls))
  if h.last_error ~= "" then print("last error: " .. h.last_error) end
  store:close()
end)
server:stop()
if not ok then error(err, 0) end
