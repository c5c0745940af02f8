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

--- `n` iterations of a stress loop, scaled by CB_SPEC_SCALE (scripts/valgrind.sh
-- sets 0.05: memcheck runs code ~30x slower and finds a bad access in the
-- first thousand rounds as well as in the 200,000th).  At least `min`.
local scale = tonumber(os.getenv("CB_SPEC_SCALE")) or 1
function M.scaled(n, min)
  return math.max(min or 1, math.floor(n * scale))
end

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

--- `s` quoted for a POSIX shell.
function M.shq(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- HMAC-SHA256 of `body` under `key`, in hex, by the openssl command line:
-- an implementation apart from the store's, so a spec can sign a message.
function M.hmac(key, body)
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "wb"))
  f:write(body)
  f:close()
  local p = io.popen(("openssl dgst -sha256 -hmac %s -r < %s"):format(M.shq(key), tmp))
  local out = p:read("a")
  p:close()
  os.remove(tmp)
  return assert(out:match("^(%x+)"), "openssl dgst failed: " .. out)
end

--- Runs the host with `args` (after `env`, e.g. "VAR=x", when given).
-- Returns its exit status, stdout and stderr.
function M.run_host(args, env)
  local err = os.tmpname()
  local p = io.popen(("%s '%s' %s 2>%s"):format(env or "", M.host, args, err))
  local out = p:read("a")
  local ok, _, code = p:close()
  local f = io.open(err)
  local stderr = f:read("a")
  f:close()
  os.remove(err)
  return ok and 0 or code, out, stderr
end

--- Runs f with the collector set to finish a cycle at almost every
-- allocation, so a finalizer armed before a method call runs at the first
-- allocation inside that method; then restores the defaults.
function M.gc_at_every_allocation(f)
  collectgarbage("incremental", 1, 1000, 40)
  collectgarbage("collect")  -- applies the pause: the next allocation collects
  local ok, err = pcall(f)
  collectgarbage("incremental", 200, 100, 13)
  collectgarbage("collect")
  if not ok then error(err, 0) end
end

--- The error fn(...) raises; fails the test when it raises none.
function M.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  return err
end

--- A garbage object whose finalizer runs fn once.
function M.trap(fn)
  setmetatable({}, { __gc = function() fn() end })
end

return M
