--- cbreaker.cli: the host's subcommands (`cbreaker demo`, `cbreaker help`).
local M = {}

local host = package.loaded["cbreaker.host"] or {}

local usage = [[
usage: cbreaker SCRIPT.lua [args]   run a Lua script with cbreaker available
       cbreaker demo [options]       run the bundled demonstration
       cbreaker help                 this text
       cbreaker version              print the version]]

local commands = {}

function commands.help()
  print(usage)
  return 0
end

function commands.version()
  print("cbreaker " .. (host.version or require("cbreaker")._VERSION))
  return 0
end

function commands.demo(...)
  local path = (host.examples or "examples") .. "/walkthrough.lua"
  local chunk, err = loadfile(path)
  if not chunk then error("demo: " .. err, 0) end
  return chunk(...)
end

--- Runs `command` with its arguments; returns the exit status.
function M.main(command, ...)
  if command == nil or command == "-h" or command == "--help" then
    return commands.help()
  end
  local fn = commands[command]
  if not fn then
    io.stderr:write(("cbreaker: unknown command '%s'\n%s\n"):format(command, usage))
    return 2
  end
  return fn(...) or 0
end

return M
