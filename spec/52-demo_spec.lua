local cb = require("cbreaker")
local fx = require("helpers.fixtures")

local host = fx.host
local source = fx.source

--- Runs the host with `args`; returns its exit status and output (both streams).
local function run(args)
  local f = assert(io.popen(("%s %s 2>&1; echo \"exit=$?\""):format(host, args)))
  local out = f:read("a")
  f:close()
  local status = tonumber(out:match("exit=(%d+)\n$"))
  return status, out:gsub("exit=%d+\n$", "")
end

describe("cbreaker demo", function()
  it("runs a small simulation and every claim of the summary holds", function()
    local status, out = run("demo --requests 600 --seed 3")
    assert.equal(0, status, out)
    assert.matches("summary %(seed 3, 600 requests", out)
    assert.matches("%[ok%] traffic moved off openai within %d+ requests? of its outage", out)
    assert.matches("%[ok%] openai came back after recovery", out)
    assert.matches("%[ok%] the runaway session tenant%-3/agent%-loop was stopped after 5 failed calls", out)
    assert.matches("%[ok%] other sessions unaffected: %d+ requests, 0 refused by a guardrail", out)
    assert.not_matches("%[!!%]", out)
    assert.not_matches("\27%[", out)  -- not a terminal: plain lines, no redraw
    assert.matches("100%%  request 600/600", out)
    for _, p in ipairs({"openai", "anthropic", "mistral", "local%-llama"}) do
      assert.matches("\n  " .. p .. " +%a", out)
    end
  end)

  it("redraws its table in place on a terminal", function()
    if not os.execute("command -v script >/dev/null 2>&1") then
      pending("util-linux script is not installed")
      return
    end
    local f = assert(io.popen(("script -qec '%s demo --requests 300' /dev/null 2>&1"):format(host)))
    local out = f:read("a")
    f:close()
    assert.matches("\27%[%d+A", out)   -- cursor up: the table is redrawn
    assert.matches("\27%[2K", out)     -- each line cleared first
    assert.matches("%[ok%] the runaway session", out)
  end)

  it("is reproducible with the same seed", function()
    local _, a = run("demo --requests 300 --seed 9")
    local _, b = run("demo --requests 300 --seed 9")
    assert.equal(a, b)
  end)

  it("holds its claims across seeds (in process)", function()
    local demo = require("cbreaker.demo")
    local sink = {write = function() end, flush = function() end}
    for seed = 1, 8 do
      local r = demo.run{requests = 1000, seed = seed, out = sink}
      assert.is_true(r.ok, "seed " .. seed)
      assert.equal(5, r.runaway_stopped_after)
      assert.is_true(r.moved_after <= 100)
    end
  end)

  it("explains its options and rejects bad ones", function()
    local status, out = run("demo --help")
    assert.equal(0, status)
    assert.matches("--requests N", out, 1, true)
    status, out = run("demo --request 5")
    assert.equal(2, status)
    assert.matches("unknown option '--request'", out, 1, true)
    status, out = run("demo --requests many")
    assert.equal(2, status)
    assert.matches("needs a whole number (got 'many')", out, 1, true)
    status, out = run("demo --requests")
    assert.equal(2, status)
    assert.matches("needs a value", out, 1, true)
  end)
end)

describe("cbreaker check", function()
  it("accepts the example policies", function()
    for _, name in ipairs({"policy_sessions.lua", "policy_routing.lua", "policy_pybreaker.lua"}) do
      local status, out = run("check " .. source .. "/examples/" .. name)
      assert.equal(0, status, out)
      assert.matches(": ok %(providers: ", out)
    end
  end)

  it("exits 1 naming the bad option", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write("return {providers = {openai = {failure_treshold = 3}}}\n")
    f:close()
    local status, out = run("check " .. path)
    os.remove(path)
    assert.equal(1, status)
    assert.matches("unknown option 'providers.openai.failure_treshold' (did you mean 'failure_threshold'?)", out, 1, true)
  end)

  it("exits 2 without a file", function()
    local status, out = run("check")
    assert.equal(2, status)
    assert.matches("usage: cbreaker check POLICY.lua", out, 1, true)
  end)
end)

describe("#redis operators' commands and a shared engine", function()
  local helper = require("helpers.redis")
  local server
  helper.use_server(function(s) server = s end)

  it("force-open, status and reset act on every peer", function()
    local url = server:url()
    local peer_store = cb.redis{url = url, id = "peer", timeout_ms = 200}
    local peer = cb.new{name = "openai", store = peer_store}
    local status, out = run("force-open openai --redis " .. url)
    assert.equal(0, status, out)
    assert.matches("openai: forced%-open", out)
    assert.is_true(helper.eventually(function() return peer:state() == "forced-open" end, {peer_store}))
    status, out = run("status openai anthropic --redis " .. url)
    assert.equal(0, status, out)
    assert.matches("openai%s+forced%-open%s+until reset", out)
    assert.matches("anthropic%s+closed%s+%-", out)
    status, out = run("reset openai --redis " .. url)
    assert.equal(0, status, out)
    assert.matches("openai: closed", out)
    assert.is_true(helper.eventually(function() return peer:state() == "closed" end, {peer_store}))
    status, out = run("status --policy " .. source .. "/examples/policy_routing.lua --redis " .. url)
    assert.equal(0, status, out)
    assert.matches("openai%s+closed", out)
    assert.matches("deepseek%-chat%s+closed", out)
    peer:close()
    peer_store:close()
  end)

  it("status without names lists every breaker held open, and only those", function()
    local url = server:url()
    local status, out = run("status --redis " .. url)
    assert.equal(0, status, out)
    assert.matches("no breaker is open or forced open", out)
    local s = cb.redis{url = url, id = "owner", timeout_ms = 200}
    local tripped = cb.new{name = "mistral", store = s, failure_threshold = 1, reset_timeout = 600}
    local fine = cb.new{name = "anthropic", store = s}
    tripped:failure()
    fine:success()
    helper.drain({s})
    assert.equal(0, (run("force-open deepseek-chat --redis " .. url)))
    assert.same({"deepseek-chat", "mistral"}, s:names())
    status, out = run("status --redis " .. url)
    assert.equal(0, status, out)
    assert.matches("deepseek%-chat%s+forced%-open%s+until reset", out)
    assert.matches("mistral%s+open%s+%d", out)
    assert.is_nil(out:find("anthropic", 1, true))
    tripped:close(); fine:close(); s:close()
  end)

  it("explains what is missing", function()
    local status, out = run("status openai")
    assert.equal(2, status)
    assert.matches("--redis URL is required", out, 1, true)
    status, out = run("reset --redis " .. server:url())
    assert.equal(2, status)
    assert.matches("usage: cbreaker reset NAME --redis URL", out, 1, true)
    status, out = run("status openai --redis redis://127.0.0.1:1/0")
    assert.equal(1, status)
    assert.matches("cannot reach redis://127.0.0.1:1/0", out, 1, true)
    status, out = run("status openai --redis redis://ops:hunter2@127.0.0.1:1/0")
    assert.equal(1, status)
    assert.matches("cannot reach redis://ops:***@127.0.0.1:1/0", out, 1, true)
    assert.is_nil(out:find("hunter2", 1, true))  -- a password never reaches a terminal
  end)

  it("two engines share a sentinel's verdicts across tasks", function()
    local function engine(id)
      return cb.engine{providers = {deepseek = {}, openai = {}}, sentinel = {force_open_after = 1},
                       redis = {url = server:url(), id = id, timeout_ms = 200}}
    end
    local a, b = engine("task-a"), engine("task-b")
    assert.equal("forced-open", a:probe("deepseek", false))
    local sa, sb = a.store, b.store
    assert.is_true(helper.eventually(function()
      return b:breaker("deepseek"):state() == "forced-open"
    end, {sa, sb}))
    -- task-b's sentinel sees a healthy probe: it resets, and task-a hears it.
    assert.equal("recovered", b:probe("deepseek", true))
    assert.is_true(helper.eventually(function()
      return a:breaker("deepseek"):state() == "closed"
    end, {sa, sb}))
    -- task-a's stale view never re-opens it: its own probe says healthy.
    assert.equal("healthy", a:probe("deepseek", true))
    assert.equal("closed", b:breaker("deepseek"):state())
  end)

  it("runs the demo against Redis", function()
    local status, out = run("demo --requests 1000 --seed 2 --redis " .. server:url())
    assert.equal(0, status, out)
    assert.not_matches("%[!!%]", out)
    assert.matches("redis: connected, %d+ state changes? published", out)
  end)
end)
