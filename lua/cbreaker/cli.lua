--- cbreaker.cli: the host's subcommands (`cbreaker demo`, `cbreaker check`,
-- `cbreaker help`, ...).  Each returns the process's exit status.
local M = {}

local host = package.loaded["cbreaker.host"] or {}

local usage = [[
usage: cbreaker SCRIPT.lua [args]   run a Lua script with cbreaker available
       cbreaker demo [options]       simulate an LLM gateway (cbreaker demo --help)
       cbreaker walkthrough          one breaker's life, narrated
       cbreaker check POLICY.lua     validate an engine policy file
       cbreaker status [NAME...] --redis URL  breakers' shared states
                                     (no names: every breaker held open, by
                                     cbreaker or by a peer's keys alone)
       cbreaker status --policy POLICY.lua --redis URL
       cbreaker reset NAME --redis URL        close it everywhere (peers hear "recovered")
       cbreaker force-open NAME --redis URL   open it everywhere until a reset
         (operators' commands also take --prefix P --channel C,
          --tls-ca FILE: the CA of a rediss:// server (else the system's),
          --hash-tag: the keys are '{prefix}:...' (a store with hash_tag;
          a redis+cluster:// URL needs it),
          and --secret-file PATH or $CBREAKER_SECRET: the fleet's secret,
          to sign what they publish and check what they read)
       cbreaker help                 this text
       cbreaker version              print the version]]

local demo_usage = [[
usage: cbreaker demo [--requests N] [--seed S] [--redis URL] [--hash-tag] [--secret-file PATH]

Simulates an LLM gateway on a manual clock: four providers with different
success rates and latencies, one of which has an outage mid-run and
recovers, many tenants' sessions and one runaway session, all routed by
cb.engine.  Shows a table per provider while it runs and ends with a
summary; the exit status is 0 when every claim in the summary held.

  --requests N   requests to simulate (default 3000)
  --seed S       seed of the simulation and of the selector (default 1)
  --redis URL    keep breaker state in Redis, so two demos share it
  --hash-tag     keys '{prefix}:...' (a redis+cluster:// URL needs it)
  --secret-file PATH  the fleet's secret (else $CBREAKER_SECRET): sign what
                 is published, refuse what is not signed
  --help         this text]]

local function die(fmt, ...)
  io.stderr:write("cbreaker: ", fmt:format(...), "\n")
  return 2
end

--- Parses `--name value` / `--name=value` options.  `spec` maps each name
-- to "number", "string" or "flag".  Returns a table, or nil and a message.
local function options(spec, ...)
  local args, out, i = {...}, {}, 1
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^%-%-([%w-]+)=(.*)$")
    name = name or a:match("^%-%-([%w-]+)$")
    if not name then return nil, ("unexpected argument '%s'"):format(a) end
    local kind = spec[name]
    if not kind then return nil, ("unknown option '--%s'"):format(name) end
    if kind == "flag" then
      if value then return nil, ("option '--%s' takes no value"):format(name) end
      out[name] = true
    else
      if not value then
        i = i + 1
        value = args[i]
        if value == nil then return nil, ("option '--%s' needs a value"):format(name) end
      end
      if kind == "number" then
        local n = math.tointeger(tonumber(value))
        if not n then return nil, ("option '--%s' needs a whole number (got '%s')"):format(name, value) end
        value = n
      end
      out[name] = value
    end
    i = i + 1
  end
  return out
end
M.options = options

--- The fleet's shared secret: --secret-file PATH (its first line), else
-- the environment's CBREAKER_SECRET, else nil (plain messages).  Returns
-- secret or nil, or false and why not.
local function secret_of(o)
  local path = o["secret-file"]
  if not path then
    local env = os.getenv("CBREAKER_SECRET")
    return env ~= "" and env or nil
  end
  local f, err = io.open(path, "rb")
  if not f then return false, ("cannot read --secret-file: %s"):format(err) end
  local s = f:read("a")
  f:close()
  s = s:gsub("\r?\n$", "")  -- `echo secret > file` leaves one newline
  if s == "" then return false, ("--secret-file %s is empty"):format(path) end
  return s
end

local commands = {}

function commands.help()
  print(usage)
  return 0
end

function commands.version()
  print("cbreaker " .. (host.version or require("cbreaker")._VERSION))
  return 0
end

--- A terminal on stdout?  The shell's test inherits our stdout.
local function stdout_is_tty()
  return os.execute("[ -t 1 ]") == true
end

function commands.demo(...)
  local o, err = options({requests = "number", seed = "number", redis = "string",
    ["secret-file"] = "string", ["hash-tag"] = "flag", help = "flag"}, ...)
  if not o then return die("demo: %s\n%s", err, demo_usage) end
  local secret, why = secret_of(o)
  if secret == false then return die("demo: %s", why) end
  if o.help then
    print(demo_usage)
    return 0
  end
  if o.requests and (o.requests < 100 or o.requests > 10000000) then
    return die("demo: --requests must be in [100, 10000000] (got %d)", o.requests)
  end
  local live = stdout_is_tty()
  local ok, report = pcall(require("cbreaker.demo").run, {
    requests = o.requests, seed = o.seed, redis = o.redis, live = live,
    secret = o.redis and secret or nil, hash_tag = o["hash-tag"],
    pace = live and function() os.execute("sleep 0.03") end or nil,
  })
  if not ok then return die("demo: %s", tostring(report)) end  -- a bad URL or secret
  return report.ok and 0 or 1
end

function commands.walkthrough(...)
  local path = (host.examples or "examples") .. "/walkthrough.lua"
  local chunk, err = loadfile(path)
  if not chunk then error("walkthrough: " .. err, 0) end
  return chunk(...)
end

function commands.check(path, extra)
  if not path or extra then return die("usage: cbreaker check POLICY.lua") end
  local p, err = require("cbreaker.policy").check(path)
  if not p then
    io.stderr:write("cbreaker: ", err, "\n")
    return 1
  end
  print(("%s: ok (providers: %s)"):format(path, table.concat(p.names, ", ")))
  return 0
end

-- ---- operators' commands (a Redis store) ---------------------------------------------

local ops_spec = {redis = "string", prefix = "string", channel = "string", policy = "string",
  ["secret-file"] = "string", ["tls-ca"] = "string", ["hash-tag"] = "flag"}


--- Splits NAME arguments from options.
local function names_and_options(cmd, ...)
  local names, rest = {}, {}
  local args = {...}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a:sub(1, 2) == "--" then
      rest[#rest + 1] = a
      if not a:find("=", 1, true) and args[i + 1] and ops_spec[a:sub(3)] ~= "flag" then
        rest[#rest + 1] = args[i + 1]
        i = i + 1
      end
    else
      names[#names + 1] = a
    end
    i = i + 1
  end
  local o, err = options(ops_spec, table.unpack(rest))
  if not o then return nil, ("%s: %s"):format(cmd, err) end
  if not o.redis then return nil, ("%s: --redis URL is required"):format(cmd) end
  local secret, why = secret_of(o)
  if secret == false then return nil, ("%s: %s"):format(cmd, why) end
  o.secret = secret
  return names, o
end

--- `url` as it may be shown: its password masked (an error message ends
-- up in logs and terminals that the secret must not reach).
local function shown(url)
  return (url:gsub("^([%w+.-]+://[^:/@]*):[^@]*@", "%1:***@"))
end

--- A connected store, or nil and why not.
local function connect(o)
  local cb = require("cbreaker")
  local ok, store = pcall(cb.redis, {url = o.redis, prefix = o.prefix, channel = o.channel,
    secret = o.secret, tls = o["tls-ca"] and {ca_file = o["tls-ca"]} or nil,
    hash_tag = o["hash-tag"] or nil})
  if not ok then return nil, (tostring(store):gsub("^cbreaker%.redis: ", "")) end
  local h = store:health()
  if not h.connected then
    store:close()
    return nil, ("cannot reach %s: %s"):format(shown(o.redis), h.last_error)
  end
  return store
end

--- The breaker `name` as the store knows it (its open state imported), or
-- nil and why not (a name no breaker can have: anyone with HSET on the
-- boot hash can write one).
local function attached(store, name)
  local ok, br = pcall(require("cbreaker").new, {name = name, store = store})
  if ok then return br end
  if #name >= 256 then
    return nil, ("a name of %d bytes (breaker names are shorter than 256)"):format(#name)
  end
  return nil, "not a breaker name"
end

--- `s` fit for a terminal line: control bytes, backslashes and bytes
-- outside printable ASCII as \xNN escapes, at most `max` characters shown.
local function printable(s, max)
  local out = s:gsub("[%c\\\128-\255]", function(c) return ("\\x%02x"):format(c:byte()) end)
  if #out > max then out = out:sub(1, max - 3) .. "..." end
  return out
end

--- Waits, boundedly, until what was published has been written.
local function flush(store, before)
  for _ = 1, 40 do
    store:poll()
    if store:health().published > before then return true end
    store:wait(25)
  end
  return false
end

function commands.status(...)
  local names, o = names_and_options("status", ...)
  if not names then return die("%s", o) end
  if o.policy then
    local p, err = require("cbreaker.policy").check(o.policy)
    if not p then return die("status: %s", err) end
    for _, n in ipairs(p.names) do names[#names + 1] = n end
  end
  local store, err = connect(o)
  if not store then
    io.stderr:write("cbreaker: status: ", err, "\n")
    return 1
  end
  local source = {}  -- name -> who holds it open, when the store can say
  local partial = false  -- the scan of the per-field keys did not finish
  if #names == 0 then  -- every breaker held open: announced, or only in its keys
    local listed, lerr
    if store.list then  -- {name, source} pairs (cb_store_list)
      local entries
      entries, lerr = store:list()
      if entries then
        listed = {}
        for _, e in ipairs(entries) do
          if e.source == "partial" then  -- the key scan stopped at its cap
            partial = true
          else
            source[e.name] = e.source == "keys" and "peer (keys only)" or e.source
            listed[#listed + 1] = e.name
          end
        end
      end
    else
      listed, lerr = store:names()
    end
    if partial then
      io.stderr:write("cbreaker: status: the list is partial: the scan of the per-field keys "
        .. "stopped after 10 M keys\n")
    end
    if not listed or #listed == 0 then
      store:close()
      if not listed then return die("status: %s", lerr) end
      print(partial and "no breaker found open in the keys scanned"
        or "no breaker is open or forced open")
      return 0
    end
    names = listed
  end
  print(("%-32s %-12s %-12s %s"):format("breaker", "state", "retry after", "source"))
  local skipped = 0
  for _, name in ipairs(names) do
    local br, why = attached(store, name)  -- imports its boot entry and its per-field keys
    local shown = printable(name, 60)
    if br then
      local ra = br:retry_after()
      print(("%-32s %-12s %-12s %s"):format(shown, br:state(),
        ra == math.huge and "until reset" or ra > 0 and ("%.1fs"):format(ra) or "-",
        source[name] or "-"))
      br:close()
    else
      skipped = skipped + 1
      print(("%-32s %-12s %-12s %s"):format(shown, "?", "-", "skipped: " .. why))
    end
  end
  if skipped > 0 then
    io.stderr:write(("cbreaker: status: %d name%s skipped (not a breaker's name; written "
      .. "by something else sharing the prefix?)\n"):format(skipped, skipped == 1 and "" or "s"))
  end
  store:close()
  return 0
end

local function operate(cmd, verb, ...)
  local names, o = names_and_options(cmd, ...)
  if not names then return die("%s", o) end
  if #names ~= 1 or o.policy then return die("usage: cbreaker %s NAME --redis URL", cmd) end
  local store, err = connect(o)
  if not store then
    io.stderr:write("cbreaker: ", cmd, ": ", err, "\n")
    return 1
  end
  local br = attached(store, names[1])
  local before = store:health().published
  br[verb](br)
  local sent = flush(store, before)
  print(("%s: %s%s"):format(names[1], br:state(), sent and "" or " (not yet confirmed by Redis)"))
  br:close()
  store:close()
  return sent and 0 or 1
end

commands.reset = function(...) return operate("reset", "reset", ...) end
commands["force-open"] = function(...) return operate("force-open", "force_open", ...) end

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
