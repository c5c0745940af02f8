local cb = require("cbreaker")
local fx = require("helpers.fixtures")

describe("breaker misuse raises clear errors", function()
  it("names unknown options and suggests the closest", function()
    assert.has_error(function() cb.new{ failure_treshold = 3 } end,
      "cbreaker.new: unknown option 'failure_treshold' (did you mean 'failure_threshold'?)")
    assert.has_error(function() cb.new{ reset_timout = 3 } end,
      "cbreaker.new: unknown option 'reset_timout' (did you mean 'reset_timeout'?)")
    assert.has_error(function() cb.new{ banana = 1 } end, "cbreaker.new: unknown option 'banana'")
    assert.has_error(function() cb.new{ [1] = 5 } end)
  end)

  it("cb.closest suggests a near name from a list or a set, or nothing", function()
    assert.equal("failure_threshold", cb.closest("failure_treshold", { "window", "failure_threshold" }))
    assert.equal("window", cb.closest("windw", { window = true, jitter = true }))
    assert.is_nil(cb.closest("banana", { "window", "jitter" }))
    assert.equal("ab", cb.closest("a", { "ab", "ac" }))  -- ties: the first in sorted order
    assert.has_error(function() cb.closest(nil, {}) end)
  end)

  it("names options with wrong types or values", function()
    local bad = {
      { { failure_threshold = "5" }, "option 'failure_threshold' must be a whole number of failures >= 0 %(got string%)" },
      { { failure_threshold = 2.5 }, "option 'failure_threshold' must be a whole number of failures >= 0 %(got 2.5%)" },
      { { failure_threshold = -1 }, "option 'failure_threshold' must be a whole number of failures >= 0 %(got %-1%)" },
      { { reset_timeout = 0 / 0 }, "option 'reset_timeout' must be 0 or a number of seconds in %[0.001, 1e9%]" },
      { { reset_timeout = math.huge }, "option 'reset_timeout' must be 0 or a number of seconds in %[0.001, 1e9%] %(got inf%)" },
      { { reset_timeout = -1 }, "option 'reset_timeout' must be" },
      { { failure_rate = 1.5 }, "option 'failure_rate' must be a number in %[0, 1%] %(got 1.5%)" },
      { { slow_call_rate = 0 }, "option 'slow_call_rate' must be a number in %(0, 1%]" },
      { { success_threshold = 0 }, "option 'success_threshold' must be a whole number >= 1" },
      { { half_open_max_calls = 0 }, "option 'half_open_max_calls' must be a whole number >= 1" },
      { { window = 0 }, "option 'window' must be a number of calls in %[1, 1000000%] %(got 0%)" },
      { { window = 10 ^ 7 }, "option 'window' must be" },
      { { window_seconds = 1e-300 }, "option 'window_seconds' must be 0 %(a count window%) or a number of seconds in %[0.001, 1e6%]" },
      { { backoff_factor = 0.5 }, "option 'backoff_factor' must be" },
      { { jitter = 2 }, "option 'jitter' must be a number in" },
      { { name = 7 }, "option 'name' must be a string" },
      { { classify = "x" }, "option 'classify' must be a function" },
      { { on_change = true }, "option 'on_change' must be a function" },
      { { clock = os.time }, "option 'clock' must be a cbreaker.manual_clock" },
    }
    for _, case in ipairs(bad) do
      local ok, err = pcall(cb.new, case[1])
      assert.is_false(ok)
      assert.matches(case[2], err)
    end
    assert.has_error(function() cb.new("name") end)
  end)

  it("rejects a wrong self and wrong arguments without crashing", function()
    local br = cb.new{ name = "x" }
    local clock = cb.manual_clock()
    for _, m in ipairs({ "allow", "success", "failure", "state", "stats", "reset",
                         "force_open", "disable", "call", "retry_after", "name" }) do
      assert.has_error(function() br[m](nil) end)
      assert.has_error(function() br[m]({}) end)
      assert.has_error(function() br[m](clock) end)
      assert.has_error(function() br[m](42) end)
    end
    assert.has_error(function() br:success("fast") end)
    assert.has_error(function() br:success(-1) end)
    assert.has_error(function() br:failure(0 / 0) end)
    assert.has_error(function() br:record("maybe") end)
    assert.has_error(function() br:record("failure", 1, -3) end)
    assert.has_error(function() br:on_change(42) end)
    assert.has_error(function() br:call() end)
    assert.equal("closed", br:state())
  end)

  it("a closed breaker raises on use", function()
    local br = cb.new{ name = "x" }
    br:close()
    br:close()  -- idempotent
    local ok, err = pcall(br.allow, br)
    assert.is_false(ok)
    assert.matches("attempt to use a closed breaker", err)
    assert.equal("cbreaker.Breaker (closed)", tostring(br))
    do
      local scoped <close> = cb.new{ name = "scoped" }
      br = scoped
    end
    assert.has_error(function() br:state() end)
  end)

  it("a breaker closed inside its own call drops the outcome, not fn's reply", function()
    local br = cb.new{ name = "x" }
    assert.same({ true, "reply", 2 }, { br:call(function() br:close(); return "reply", 2 end) })
    assert.has_error(function() br:state() end, "attempt to use a closed breaker")
    br = cb.new{ name = "y" }
    assert.same({ false, "boom" }, { br:call(function() br:close(); error("boom", 0) end) })
    assert.has_error(function() br:state() end, "attempt to use a closed breaker")
  end)

  it("200k breakers created and dropped leave memory flat", function()
    local function churn(n)
      for i = 1, n do
        local br = cb.new{ name = "b" .. (i % 100), failure_rate = 0.5, window = 20 }
        br:on_change(function() end)
        br:failure()
      end
      collectgarbage("collect")
      collectgarbage("collect")
      return collectgarbage("count")
    end
    local n = fx.scaled(200000, 10000)
    local before = churn(n)  -- the same size: the weak box table has grown to its peak
    local after = churn(n)
    -- slack for one doubling of the weak box table, whose peak size follows
    -- GC pacing; a leak of these 200k boxes would be tens of MiB
    assert.is_true(after < before * 1.1 + 512, ("%.0f KiB -> %.0f KiB"):format(before, after))
  end)
end)
