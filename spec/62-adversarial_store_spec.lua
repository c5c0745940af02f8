-- The store binding under callbacks and finalizers that close the store
-- while a method is using it (run this file under the ASan build too).
local cb = require("cbreaker")
local fx = require("helpers.fixtures")
local helper = require("helpers.redis")

local gc_at_every_allocation, trap = fx.gc_at_every_allocation, fx.trap

describe("#redis the store while a callback or a finalizer closes it", function()
  local store, breaker = helper.fixture({ clock = 1000, store = { timeout_ms = 200 } })

  local function open_some(s, n)
    local keep = {}
    for i = 1, n do
      keep[i] = breaker(s, "svc" .. i, { failure_threshold = 1, reset_timeout = 30 })
      keep[i]:failure()
    end
    return keep
  end

  it("store:names() and store:list()", function()
    local a = store("A")
    local keep = open_some(a, 20)
    assert.equal(20, #a:names())
    for _, method in ipairs({ "names", "list", "health" }) do
      local s = store("S" .. method)
      gc_at_every_allocation(function()
        trap(function() s:close() end)
        local ok, r = pcall(s[method], s)
        -- the finalizer ran at the first allocation: inside the method or
        -- before it, so the call raised, or it answered in full
        if ok then assert.is_table(r) else assert.matches("closed store", r) end
      end)
      assert.has_error(function() s:health() end, "attempt to use a closed store")
    end
    assert.equal(20, #keep)
  end)

  it("store:poll() when a callback closes the store", function()
    local a, b = store("A"), store("B")
    local ba = breaker(a, "svc", { reset_timeout = 30 })
    local heard = 0
    local bb = breaker(b, "svc", { on_change = function() heard = heard + 1; b:close() end })
    for _ = 1, 5 do ba:failure() end
    for _ = 1, 50 do
      if heard > 0 then break end
      b:wait(20)
      assert.is_number(b:poll())
    end
    assert.equal(1, heard)
    assert.equal("open", bb:state())
    assert.has_error(function() b:poll() end, "attempt to use a closed store")
  end)
end)
