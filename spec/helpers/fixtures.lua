--- Fixtures the specs share: objects on a manual clock and the loops that
-- drive a breaker.  `require("helpers.fixtures")` (.busted puts spec/ on
-- the path).
local assert = require("luassert")
local cb = require("cbreaker")

local M = {}

--- Where the specs find the source tree and the host (tests/CMakeLists.txt
-- sets both; these defaults serve `busted` from the source root).
M.source = os.getenv("CB_SOURCE_DIR") or "."
M.host = os.getenv("CB_HOST") or "build/cbreaker"

--- A new table: `base`'s fields, then `extra`'s over them.
function M.with(base, extra)
  local o = {}
  for k, v in pairs(base or {}) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

--- A breaker named "svc" on a manual clock at t = 1000, with `opts` on
-- top.  Returns the breaker and its clock.
function M.breaker(opts)
  local clock = cb.manual_clock(1000)
  return cb.new(M.with({ name = "svc", clock = clock }, opts)), clock
end

--- A registry on a manual clock at t = 1000 with a fixed seed, with `opts`
-- on top.  Returns the registry and its clock.
function M.registry(opts)
  local clock = cb.manual_clock(1000)
  return cb.registry(M.with({ clock = clock, seed = 7 }, opts)), clock
end

--- `n` allowed calls that fail.
function M.fail(br, n)
  for _ = 1, n do
    assert.is_true((br:allow()))
    br:failure()
  end
end

--- `n` (default 1) allowed calls that succeed.
function M.succeed(br, n)
  for _ = 1, n or 1 do
    assert.is_true((br:allow()))
    br:success()
  end
end

--- Fails allowed calls until the breaker leaves "closed".
function M.trip(br)
  while br:state() == "closed" do
    assert.is_true(br:allow())
    br:failure()
  end
end

return M
