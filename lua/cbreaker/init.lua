--- cbreaker: circuit breakers for Lua 5.4, on a C core.
-- `require("cbreaker")` returns the table of `cbreaker.core`, extended with
-- the Lua layer (LuaSocket's `socket.core` + `socket.lua` shape).
local core = require("cbreaker.core")
local engine = require("cbreaker.engine")

local M = core

--- cb.engine(policy): the policy layer (cbreaker.engine).
M.engine = engine.new

return M
