-- The bad-input matrix: every public function and method, every option,
-- called with every kind of wrong value; every option name misspelt.  Each
-- call must raise a clear error naming the option or argument (or succeed
-- where the value happens to be valid), never crash, never leak a Lua
-- runtime error ("attempt to index a nil value") out of the library.
local cb = require("cbreaker")

local NOWHERE = "unix:///nonexistent/cbreaker-60.sock"  -- cb.redis without a network

local function escape(s)
  return (s:gsub("%p", "%%%0"))
end

local BAD = {
  { "nil", nil }, { "NaN", 0 / 0 }, { "inf", 1 / 0 }, { "-inf", -1 / 0 }, { "-1", -1 },
  { "-0.5", -0.5 }, { "huge", 1e300 }, { "maxinteger", math.maxinteger },
  { "mininteger", math.mininteger }, { "fraction", 0.5 }, { "zero", 0 },
  { "empty string", "" }, { "binary string", "a\0b" }, { "numeric string", "5" },
  { "long string", ("x"):rep(5000) }, { "true", true }, { "false", false },
  { "table", {} }, { "array", { 1, 2 } }, { "function", function() end },
  { "coroutine", coroutine.create(function() end) }, { "file", io.stdout },
}

-- A Lua runtime error escaping the library is never a clear answer.
local function unclear(msg)
  if type(msg) ~= "string" or msg == "" then return true end
  for _, what in ipairs({ "index", "call", "perform", "compare", "concatenate" }) do
    if msg:find("attempt to " .. what, 1, true) then return true end
  end
  return false
end

-- Misspellings of `name`: a letter dropped, two swapped, one doubled, and
-- the name in capitals.
local function misspellings(name)
  local out = {}
  if #name > 3 then out[#out + 1] = name:sub(1, 2) .. name:sub(4) end
  if #name > 3 then out[#out + 1] = name:sub(1, 1) .. name:sub(3, 3) .. name:sub(2, 2) .. name:sub(4) end
  out[#out + 1] = name .. name:sub(-1)
  out[#out + 1] = name:upper()
  for i = #out, 1, -1 do
    if out[i] == name then table.remove(out, i) end  -- "seed" swapped is "seed"
  end
  return out
end

-- Calls ctor(base + {[opt] = value}) for every bad value and every option;
-- returns the failures as strings (empty when all is well).
local function option_matrix(label, ctor, base, options, path)
  local failures, errors = {}, 0
  for _, opt in ipairs(options) do
    for _, bad in ipairs(BAD) do
      local o = {}
      for k, v in pairs(base) do o[k] = v end
      local target = o
      if path then  -- a nested table: policy.providers.a, policy.sessions ...
        for _, step in ipairs(path) do
          local t = {}
          for k, v in pairs(target[step] or {}) do t[k] = v end
          target[step] = t
          target = t
        end
      end
      target[opt] = bad[2]
      local ok, res = pcall(ctor, o)
      if not ok then
        errors = errors + 1
        if unclear(res) or not res:find(opt, 1, true) then
          failures[#failures + 1] = ("%s %s = %s: %s"):format(label, opt, bad[1], tostring(res))
        end
      elseif type(res) == "userdata" or type(res) == "table" then
        pcall(function() res:close() end)
      end
    end
  end
  return failures, errors
end

local function misspelt_matrix(label, ctor, base, options, path)
  local failures = {}
  for _, opt in ipairs(options) do
    for _, miss in ipairs(misspellings(opt)) do
      local o = {}
      for k, v in pairs(base) do o[k] = v end
      local target = o
      for _, step in ipairs(path or {}) do
        local t = {}
        for k, v in pairs(target[step] or {}) do t[k] = v end
        target[step] = t
        target = t
      end
      target[miss] = 1
      local ok, res = pcall(ctor, o)
      local near = cb.closest(miss, options)
      if ok then
        failures[#failures + 1] = ("%s: misspelt '%s' accepted"):format(label, miss)
        pcall(function() res:close() end)
      elseif unclear(res) or not res:find("unknown option", 1, true)
          or not res:find(miss, 1, true)
          or (near and not res:find("did you mean '" .. near .. "'", 1, true)) then
        failures[#failures + 1] = ("%s: misspelt '%s': %s"):format(label, miss, tostring(res))
      end
    end
  end
  return failures
end

local BREAKER = { "name", "failure_threshold", "reset_timeout", "success_threshold",
  "half_open_max_calls", "probe_timeout", "failure_rate", "slow_call_ms", "slow_call_rate",
  "window", "window_seconds", "min_calls", "backoff_factor", "max_reset_timeout", "jitter",
  "seed", "classify", "clock", "on_change", "store" }
local BANDIT = { "arms", "prior", "decay", "half_life", "seed", "clock" }
local STORE = { "url", "prefix", "channel", "timeout_ms", "password", "mode", "quorum", "ttl",
  "id", "clock", "backoff_min", "backoff_max", "secret", "replay_window_ms" }
local REGISTRY = { "defaults", "max_entries", "max_per_tenant", "idle_ttl", "unused_ttl",
  "cleanup_every", "clock", "seed" }
local POLICY = { "defaults", "providers", "sessions", "selection", "sentinel", "redis", "clock",
  "on_all_open", "max_wait", "sleep", "max_attempts" }
local SESSIONS = { "max_entries", "max_per_tenant", "idle_ttl", "unused_ttl", "cleanup_every",
  "seed", "defaults" }
local SELECTION = { "strategy", "prior", "decay", "half_life", "discount", "seed" }
local PROVIDER = { "failure_threshold", "reset_timeout", "success_threshold",
  "half_open_max_calls", "probe_timeout", "failure_rate", "slow_call_ms", "slow_call_rate",
  "window", "window_seconds", "min_calls", "backoff_factor", "max_reset_timeout", "jitter",
  "seed", "classify", "on_change" }

local function redis(o)
  o.url = o.url == nil and NOWHERE or o.url
  if type(o.url) == "string" and o.url:find("^redis://") then o.url = NOWHERE end
  o.timeout_ms = o.timeout_ms == nil and 1 or o.timeout_ms
  return cb.redis(o)
end

local CTORS = {
  { "cb.new", cb.new, { name = "x" }, BREAKER },
  { "cb.bandit", cb.bandit, { arms = { "a", "b" } }, BANDIT },
  { "cb.redis", redis, {}, STORE },
  { "cb.registry", cb.registry, {}, REGISTRY },
  { "cb.engine", cb.engine, { providers = { a = {} } }, POLICY },
  { "cb.engine providers.a", cb.engine, { providers = { a = {} } }, PROVIDER, { "providers", "a" } },
  { "cb.engine defaults", cb.engine, { providers = { a = {} } }, PROVIDER, { "defaults" } },
  { "cb.engine sessions", cb.engine, { providers = { a = {} } }, SESSIONS, { "sessions" } },
  { "cb.engine selection", cb.engine, { providers = { a = {} } }, SELECTION, { "selection" } },
}

describe("bad-input matrix", function()
  it("has every public constructor (registry and engine merged)", function()
    for _, f in ipairs({ "new", "bandit", "redis", "registry", "engine", "manual_clock",
                         "is_rejection", "now", "closest" }) do
      assert.is_function(cb[f], f)
    end
  end)

  for _, c in ipairs(CTORS) do
    local label, ctor, base, options, path = c[1], c[2], c[3], c[4], c[5]

    it(label .. ": every option, every wrong value: an error naming the option", function()
      local failures, errors = option_matrix(label, ctor, base, options, path)
      assert.same({}, failures)
      -- most of the matrix must be refused, or the ctor checks nothing
      assert.is_true(errors > #options * #BAD / 2,
        ("%s refused only %d of %d"):format(label, errors, #options * #BAD))
    end)

    it(label .. ": every option misspelt: unknown option, did you mean", function()
      assert.same({}, misspelt_matrix(label, ctor, base, options, path))
    end)
  end

  it("integer options say what is wrong with a number that is not one", function()
    for _, case in ipairs({ { 0 / 0, "%-?nan" }, { 1 / 0, "inf" }, { 1e300, "1e%+300" },
                            { 2.5, "2%.5" } }) do
      local ok, err = pcall(cb.new, { failure_threshold = case[1] })
      assert.is_false(ok)
      assert.matches("option 'failure_threshold' must be a whole number of failures >= 0 %(got "
                     .. case[2] .. "%)", err)
    end
  end)

  it("constructors refuse a non-table where a table is due", function()
    for _, c in ipairs({ { "cb.new", cb.new }, { "cb.bandit", cb.bandit },
                         { "cb.registry", cb.registry }, { "cb.redis", cb.redis },
                         { "cb.engine", cb.engine } }) do
      for _, bad in ipairs(BAD) do
        local v = bad[2]
        if v ~= nil and type(v) ~= "table" and type(v) ~= "string" then
          local ok, err = pcall(c[2], v)
          assert.is_false(ok, c[1] .. "(" .. bad[1] .. ")")
          assert.is_false(unclear(err), c[1] .. "(" .. bad[1] .. "): " .. tostring(err))
        end
      end
    end
    -- option names must be strings
    for _, ctor in ipairs({ cb.new, cb.bandit, cb.registry, redis }) do
      local ok, err = pcall(ctor, { [1] = 5, [true] = 1 })
      assert.is_false(ok)
      assert.matches("option names must be strings", err)
    end
  end)

  -- Every method of every object, with a wrong self and with every bad
  -- value in each of its first two arguments.
  local function objects()
    local clock = cb.manual_clock(0)
    local store = redis({ clock = clock })
    return {
      breaker = cb.new({ name = "x", clock = clock }),
      bandit = cb.bandit({ arms = { "a", "b" }, clock = clock }),
      clock = clock,
      store = store,
      registry = cb.registry({ clock = clock }),
      engine = cb.engine({ providers = { a = {}, b = {} }, clock = clock }),
    }
  end

  local function methods_of(obj)
    local mt = getmetatable(obj)
    local index = type(mt) == "table" and mt.__index
    local names = {}
    for k, v in pairs(type(index) == "table" and index or {}) do
      if type(v) == "function" and not k:find("^_") then names[#names + 1] = k end
    end
    table.sort(names)
    return index, names
  end

  it("every method refuses a wrong self with a clear error", function()
    local objs = objects()
    local failures = {}
    for kind, obj in pairs(objs) do
      local index, names = methods_of(obj)
      for _, m in ipairs(names) do
        for _, self in ipairs({ 42, "s", {}, true, io.stdout }) do
          local ok, err = pcall(index[m], self)
          if ok and m ~= "close" then
            failures[#failures + 1] = ("%s:%s with self %s succeeded"):format(kind, m, tostring(self))
          elseif not ok and unclear(err) then
            failures[#failures + 1] = ("%s:%s self %s: %s"):format(kind, m, type(self), tostring(err))
          end
        end
        -- another object type as self
        local other = kind == "breaker" and objs.bandit or objs.breaker
        local ok, err = pcall(index[m], other)
        if not ok and unclear(err) then
          failures[#failures + 1] = ("%s:%s with a %s self: %s"):format(kind, m, tostring(other), err)
        end
      end
    end
    assert.same({}, failures)
  end)

  it("every method, every bad argument: raises clearly or copes, never crashes", function()
    local failures, calls = {}, 0
    for _, position in ipairs({ 1, 2, 3 }) do
      local objs = objects()  -- fresh each round: close and reset change state
      for kind, obj in pairs(objs) do
        local index, names = methods_of(obj)
        for _, m in ipairs(names) do
          if m ~= "close" and m ~= "wait" then
            for _, bad in ipairs(BAD) do
              local args = { "a", "a", "a" }
              if kind == "engine" and m == "call" then args[3] = function() return true end end
              args[position] = bad[2]
              calls = calls + 1
              local ok, err = pcall(index[m], obj, args[1], args[2], args[3])
              if not ok and unclear(err) then
                failures[#failures + 1] = ("%s:%s(arg %d = %s): %s"):format(kind, m, position,
                  bad[1], tostring(err))
              end
            end
          end
        end
      end
      for _, obj in pairs(objs) do pcall(function() obj:close() end) end
    end
    assert.is_true(calls > 500)
    assert.same({}, failures)
  end)

  it("store:wait refuses bad milliseconds, and closed objects say so", function()
    local o = objects()
    for _, bad in ipairs({ 0 / 0, -1, "x", {}, nil }) do
      local ok, err = pcall(o.store.wait, o.store, bad)
      assert.is_false(ok)
      assert.is_false(unclear(err))
    end
    for kind, obj in pairs(o) do
      if kind ~= "clock" then
        obj:close()
        obj:close()  -- idempotent
        local index, names = methods_of(obj)
        for _, m in ipairs(names) do
          if m ~= "close" then
            local ok, err = pcall(index[m], obj, "a", "a")
            assert.is_true(ok or not unclear(err), kind .. ":" .. m .. " closed: " .. tostring(err))
          end
        end
      end
    end
  end)

  it("cb.manual_clock, cb.is_rejection, cb.closest with bad input", function()
    for _, bad in ipairs(BAD) do
      local ok, err = pcall(cb.manual_clock, bad[2])
      if not ok then assert.is_false(unclear(err), "manual_clock(" .. bad[1] .. "): " .. err) end
      if ok then
        -- a clock that was accepted holds a finite time
        local t = err:now()
        assert.is_true(t == t and t > -math.huge and t < math.huge, bad[1])
      end
      assert.is_boolean(cb.is_rejection(bad[2]))
      local clock = cb.manual_clock(0)
      for _, m in ipairs({ "advance", "set" }) do
        ok, err = pcall(clock[m], clock, bad[2])
        if not ok then assert.is_false(unclear(err), m .. "(" .. bad[1] .. "): " .. err) end
        local t = clock:now()
        assert.is_true(t == t and t > -math.huge and t < math.huge, m .. "(" .. bad[1] .. ")")
      end
      ok, err = pcall(cb.closest, bad[2], { "a" })
      if not ok then assert.is_false(unclear(err), "closest(" .. bad[1] .. "): " .. err) end
    end
  end)
end)
