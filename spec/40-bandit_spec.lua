-- cb.bandit: Beta-Bernoulli Thompson sampling (DESIGN.md "Selection").
-- Every random quantity is seeded, so each run sees the same numbers.
local cb = require("cbreaker")

-- The simulated world draws from its own generator (splitmix64), apart
-- from the bandit's, and leaves math.random alone.
local function world(seed)
  local x = seed
  return function()
    x = x + 0x9e3779b97f4a7c15
    local z = x
    z = (z ~ (z >> 30)) * 0xbf58476d1ce4e5b9
    z = (z ~ (z >> 27)) * 0x94d049bb133111eb
    z = z ~ (z >> 31)
    return (z >> 11) * 2.0^-53
  end
end

-- Plays `rounds` rounds where arm name -> success rate is `p`, and counts
-- each arm's picks from round `from` on.
local function play(b, rand, p, rounds, from, eligible)
  local picks = {}
  for r = 1, rounds do
    local arm = b:select(eligible)
    if r >= (from or 1) then picks[arm] = (picks[arm] or 0) + 1 end
    b:update(arm, rand() < p[arm] and 1 or 0)
  end
  return picks
end

local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return tostring(err)
end

describe("cb.bandit", function()
  it("is made of named arms", function()
    local b = cb.bandit{ arms = { "openai", "anthropic", "mistral" }, seed = 1 }
    assert.same({ "openai", "anthropic", "mistral" }, b:arms())
    assert.equal("cbreaker.Bandit (3 arms)", tostring(b))
    assert.same({ prior = { 1, 1 }, decay = 1, half_life = 0, seed = 1 }, b:options())
    local st = b:stats()
    assert.same({ alpha = 1, beta = 1, mean = 0.5, updates = 0, selections = 0, rewards = 0 },
      st.anthropic)
    b:add_arm("local")
    assert.same({ "openai", "anthropic", "mistral", "local" }, b:arms())
    assert.equal("local", b:select{ "local" })
    assert.matches("arm 'local' is listed twice", errmsg(b.add_arm, b, "local"))
  end)

  it("checks its options strictly", function()
    assert.matches("unknown option 'decy' %(did you mean 'decay'%?%)",
      errmsg(cb.bandit, { arms = { "a" }, decy = 0.9 }))
    assert.matches("unknown option 'half_lfe' %(did you mean 'half_life'%?%)",
      errmsg(cb.bandit, { half_lfe = 3 }))
    assert.matches("option 'arms' must be a list of names %(got string%)",
      errmsg(cb.bandit, { arms = "a" }))
    assert.matches("option 'arms' must be a list of names",
      errmsg(cb.bandit, { arms = { a = true } }))
    assert.matches("arms%[2%] must be a name %(got number%)",
      errmsg(cb.bandit, { arms = { "a", 2 } }))
    assert.matches("arms%[1%] must be a non%-empty name", errmsg(cb.bandit, { arms = { "" } }))
    assert.matches("arm 'a' is listed twice", errmsg(cb.bandit, { arms = { "a", "b", "a" } }))
    local many = {}
    for i = 1, 257 do many[i] = "arm" .. i end
    assert.matches("too many arms %(at most 256%)", errmsg(cb.bandit, { arms = many }))
    assert.matches("option 'prior' must be {alpha, beta}", errmsg(cb.bandit, { prior = 1 }))
    assert.matches("option 'prior' must be {alpha, beta}", errmsg(cb.bandit, { prior = { 1 } }))
    assert.matches("option 'prior%[2%]' must be a number in %[0.001, 1e6%] %(got string%)", errmsg(cb.bandit, { prior = { 1, "1" } }))
    assert.matches("option 'prior%[1%]' must be a number in %[0.001, 1e6%] %(got 0%)", errmsg(cb.bandit, { prior = { 0, 1 } }))
    assert.matches("option 'prior%[2%]' must be a number in", errmsg(cb.bandit, { prior = { 1, -2 } }))
    assert.matches("option 'prior%[2%]' must be a number in", errmsg(cb.bandit, { prior = { 1, 0 / 0 } }))
    assert.matches("option 'decay' must be a number in %(0, 1%] %(got 0%)", errmsg(cb.bandit, { decay = 0 }))
    assert.matches("option 'decay' must be a number in %(0, 1%]", errmsg(cb.bandit, { decay = 1.01 }))
    assert.matches("option 'decay' must be a number in %(0, 1%]", errmsg(cb.bandit, { decay = 0 / 0 }))
    assert.matches("option 'decay' must be a number in %(0, 1%] %(got string%)",
      errmsg(cb.bandit, { decay = "0.9" }))
    assert.matches("option 'half_life' must be 0 %(off%) or a number of seconds", errmsg(cb.bandit, { half_life = -1 }))
    assert.matches("option 'seed' must be an integer %(got 1.5%)",
      errmsg(cb.bandit, { seed = 1.5 }))
    assert.matches("option 'clock' must be a cbreaker.manual_clock",
      errmsg(cb.bandit, { clock = os.time }))
    assert.matches("option names must be strings", errmsg(cb.bandit, { "a" }))
  end)

  it("rejects bad rewards and unknown arms, naming them", function()
    local b = cb.bandit{ arms = { "openai", "anthropic" } }
    assert.matches("bad argument #%d to '[^']*' %(reward must be in %[0, 1%], got nan%)", errmsg(b.update, b, "openai", 0 / 0))
    assert.matches("reward must be in %[0, 1%], got %-0.5", errmsg(b.update, b, "openai", -0.5))
    assert.matches("reward must be in %[0, 1%], got 1.5", errmsg(b.update, b, "openai", 1.5))
    assert.matches("%(number in %[0, 1%] expected, got string%)",
      errmsg(b.update, b, "openai", "1"))
    assert.matches("%(number in %[0, 1%] expected, got nil%)",
      errmsg(b.update, b, "openai", nil))
    assert.matches("%(number in %[0, 1%] expected, got no value%)",
      errmsg(b.update, b, "openai"))
    assert.matches("bandit:update: unknown arm 'opnai' %(did you mean 'openai'%?%)",
      errmsg(b.update, b, "opnai", 1))
    assert.matches("bandit:update: unknown arm 'cohere'$", errmsg(b.update, b, "cohere", 1))
    assert.matches("bad argument #%d to '[^']*' %(arm name expected, got number%)", errmsg(b.update, b, 1, 1))
    assert.matches("bandit:sample: unknown arm", errmsg(b.sample, b, "x"))
    assert.matches("bandit:discount: unknown arm", errmsg(b.discount, b, "x", 0.5))
    assert.matches("factor must be in %[0, 1%], got 2", errmsg(b.discount, b, "openai", 2))
    assert.matches("bandit:reset: unknown arm", errmsg(b.reset, b, "x"))
    assert.matches("bandit:stats: unknown arm", errmsg(b.stats, b, "x"))
    assert.matches("bandit:select: unknown arm 'antropic' %(did you mean 'anthropic'%?%)",
      errmsg(b.select, b, { "openai", "antropic" }))
    assert.matches("bad argument #2 to '[^']*' %(eligible%[1%] must be an arm name, got boolean%)",
      errmsg(b.select, b, { true }))
    assert.matches("%(list of arm names expected, got string%)",
      errmsg(b.select, b, "openai"))
    -- nothing was recorded by the failed calls
    assert.same({ 0, 0 }, { b:stats("openai").updates, b:stats("openai").selections })
  end)

  it("answers nil, 'no eligible arms' when there is nothing to choose", function()
    local b = cb.bandit{ arms = { "a", "b" } }
    assert.same({ nil, "no eligible arms" }, { b:select{} })
    local empty = cb.bandit{}
    assert.same({ nil, "no eligible arms" }, { empty:select() })
  end)

  it("draws from Beta(a, b): mean and variance over 10^5 draws", function()
    local N = 100000
    for _, ab in ipairs{ { 1, 1 }, { 2, 5 }, { 0.5, 0.5 }, { 0.3, 2 }, { 3, 0.6 }, { 40, 60 } } do
      local a, c = ab[1], ab[2]
      local b = cb.bandit{ arms = { "x" }, prior = { a, c }, seed = 2024 }
      local xs, sum = {}, 0
      for i = 1, N do
        local x = b:sample("x")
        assert(x >= 0 and x <= 1, "draw out of [0, 1]")
        xs[i] = x
        sum = sum + x
      end
      local m, m2, m4 = sum / N, 0, 0
      for i = 1, N do
        local d = xs[i] - m
        m2 = m2 + d * d
        m4 = m4 + d ^ 4
      end
      m2, m4 = m2 / N, m4 / N
      local mean = a / (a + c)
      local var = a * c / ((a + c) ^ 2 * (a + c + 1))
      -- within 5 standard errors; the variance's from the fourth moment
      local se_mean, se_var = math.sqrt(var / N), math.sqrt((m4 - m2 * m2) / N)
      assert(math.abs(m - mean) < 5 * se_mean,
        ("Beta(%g, %g): mean %g, expected %g"):format(a, c, m, mean))
      assert(math.abs(m2 - var) < 5 * se_var,
        ("Beta(%g, %g): variance %g, expected %g"):format(a, c, m2, var))
    end
  end)

  it("sends the best of 0.9 / 0.6 / 0.3 over 85% of the traffic after warm-up", function()
    local b = cb.bandit{ arms = { "good", "fair", "bad" }, seed = 7 }
    local picks = play(b, world(1), { good = 0.9, fair = 0.6, bad = 0.3 }, 2000, 201)
    assert.is_true(picks.good / 1800 > 0.85, "best arm share " .. picks.good / 1800)
    local st = b:stats()
    assert.is_true(math.abs(st.good.mean - 0.9) < 0.03)
    assert.equal(2000, st.good.selections + st.fair.selections + st.bad.selections)
    assert.equal(2000, st.good.updates + st.fair.updates + st.bad.updates)
  end)

  it("gives the same picks for the same seed", function()
    local function run(seed)
      local b = cb.bandit{ arms = { "a", "b", "c", "d" }, seed = seed }
      local rand, seq = world(3), {}
      for r = 1, 300 do
        seq[r] = b:select()
        b:update(seq[r], rand())  -- fractional rewards
      end
      return table.concat(seq, ",")
    end
    assert.equal(run(42), run(42))
    assert.not_equal(run(42), run(43))
  end)

  it("picks only among the eligible arms", function()
    local b = cb.bandit{ arms = { "a", "b", "c", "d" }, seed = 5 }
    for _ = 1, 50 do b:update("a", 1) end  -- a is far ahead, but not eligible
    local picks = {}
    for _ = 1, 400 do
      local arm = b:select{ "b", "d", "d" }
      picks[arm] = (picks[arm] or 0) + 1
    end
    assert.is_nil(picks.a)
    assert.is_nil(picks.c)
    assert.is_true(picks.b > 100 and picks.d > 100)
    assert.equal("c", b:select{ "c" })
  end)

  it("finds arms by name however the name string was made", function()
    local long = ("provider-"):rep(8)  -- long strings are not interned in Lua 5.4
    local b = cb.bandit{ arms = { "a", long }, seed = 2 }
    local same = ("provider-"):rep(7) .. "provider-"
    assert.equal(long, b:select{ same })
    b:update(same, 1)
    assert.equal(1, b:stats(long).updates)
    -- a long list with repeats, and all 256 arms
    local many = {}
    for i = 1, 256 do many[i] = "arm" .. i end
    local big = cb.bandit{ arms = many, seed = 3 }
    local list = {}
    for i = 1, 1000 do list[i] = many[i % 5 + 1] end
    for _ = 1, 50 do
      local arm = big:select(list)
      assert.is_true(arm == "arm1" or arm == "arm2" or arm == "arm3" or arm == "arm4"
        or arm == "arm5", arm)
    end
    assert.matches("too many arms %(at most 256%)", errmsg(big.add_arm, big, "arm257"))
    -- interned names and long ones made anew, mixed, past 32 names, with a spare argument
    local arms = { long }
    for i = 1, 40 do arms[#arms + 1] = "m" .. i end
    local mixed = cb.bandit{ arms = arms, seed = 4 }
    local names = {}
    for i = 1, 100 do
      names[i] = i % 3 == 0 and ("provider-"):rep(7) .. "provider-" or "m" .. (i % 40 + 1)
    end
    for _ = 1, 20 do
      local arm = mixed:select(names, "spare")
      assert.is_true(arm == long or arm:match("^m%d+$") ~= nil, arm)
    end
  end)

  it("takes fractional rewards", function()
    local b = cb.bandit{ arms = { "a" }, prior = { 2, 3 } }
    b:update("a", 0.25)
    b:update("a", 1)
    b:update("a", 0)
    local st = b:stats("a")
    assert.near(2 + 1.25, st.alpha, 1e-12)
    assert.near(3 + 1.75, st.beta, 1e-12)
    assert.near(3.25 / 8, st.mean, 1e-12)
    assert.near(1.25, st.rewards, 1e-12)
    assert.equal(3, st.updates)
  end)

  it("with decay, leaves an arm that goes bad and finds it again once it recovers", function()
    local function run(decay)
      local b = cb.bandit{ arms = { "flaky", "steady" }, decay = decay, seed = 11 }
      local rand = world(5)
      play(b, rand, { flaky = 0.9, steady = 0.6 }, 1000)
      local outage = play(b, rand, { flaky = 0.1, steady = 0.6 }, 1000).flaky or 0
      local back = play(b, rand, { flaky = 0.9, steady = 0.6 }, 300).flaky or 0
      return outage, back
    end
    local outage, back = run(0.98)
    local outage0, back0 = run(1)
    assert.is_true(outage < 150, "picks during the outage: " .. outage)
    assert.is_true(outage * 2 < outage0, ("outage picks %d vs %d"):format(outage, outage0))
    assert.is_true(back > 200, "picks in the 300 rounds after recovery: " .. back)
    assert.is_true(back > back0, ("recovery picks %d vs %d"):format(back, back0))
  end)

  it("decays per update: every arm's evidence, before the reward is added", function()
    local b = cb.bandit{ arms = { "a", "b" }, decay = 0.5 }
    b:update("a", 1)
    b:update("b", 0)
    assert.near(1.5, b:stats("a").alpha, 1e-12)
    assert.near(2, b:stats("b").beta, 1e-12)
    for _ = 1, 3000 do b:update("a", 1) end  -- far past any underflow
    assert.near(3, b:stats("a").alpha, 1e-9)
    assert.near(1, b:stats("b").beta, 1e-12)
  end)

  it("decays by half-life on its clock", function()
    local clock = cb.manual_clock(1000)
    local b = cb.bandit{ arms = { "a", "b" }, half_life = 60, clock = clock, seed = 1 }
    for _ = 1, 8 do b:update("a", 1) end
    assert.near(9, b:stats("a").alpha, 1e-12)
    clock:advance(60)
    assert.near(5, b:stats("a").alpha, 1e-12)
    clock:advance(120)
    assert.near(2, b:stats("a").alpha, 1e-12)
    clock:advance(1e6)
    assert.same({ 1, 1 }, { b:stats("a").alpha, b:stats("a").beta })
    b:update("a", 0)
    assert.near(2, b:stats("a").beta, 1e-12)
  end)

  it("discounts an arm's evidence (its breaker opened)", function()
    local b = cb.bandit{ arms = { "a", "b" }, seed = 9 }
    for i = 1, 40 do b:update("a", i <= 36 and 1 or 0) end
    for i = 1, 40 do b:update("b", i <= 28 and 1 or 0) end
    b:discount("a", 0.25)
    local st = b:stats("a")
    assert.near(1 + 9, st.alpha, 1e-12)
    assert.near(1 + 1, st.beta, 1e-12)
    assert.equal(40, st.updates)
    b:discount("a", 1)
    assert.near(10, b:stats("a").alpha, 1e-12)
    b:discount("a", 0)  -- forgets it all: the prior again
    assert.same({ 1, 1 }, { b:stats("a").alpha, b:stats("a").beta })
    -- a at its prior now loses most picks to b's proven 0.7
    local picks = {}
    for _ = 1, 1000 do
      local arm = b:select()
      picks[arm] = (picks[arm] or 0) + 1
    end
    assert.is_true(picks.b > 600, "b picks " .. picks.b)
  end)

  it("resets one arm or all", function()
    local b = cb.bandit{ arms = { "a", "b" } }
    b:update("a", 1)
    b:update("b", 1)
    b:select()
    b:reset("a")
    assert.same({ alpha = 1, beta = 1, mean = 0.5, updates = 0, selections = 0, rewards = 0 },
      b:stats("a"))
    assert.equal(2, b:stats("b").alpha)
    b:reset()
    assert.equal(1, b:stats("b").alpha)
  end)

  it("reconfigures in place, keeping the evidence", function()
    local b = cb.bandit{ arms = { "a" }, decay = 0.5 }
    b:update("a", 1)
    b:update("a", 1)
    b:configure{ prior = { 2, 2 }, decay = 1 }
    b:update("a", 1)
    assert.near(2 + 2.5, b:stats("a").alpha, 1e-12)
    assert.equal(1, b:options().decay)
    assert.matches("option 'arms' cannot be changed here %(use add_arm%)",
      errmsg(b.configure, b, { arms = { "x" } }))
    assert.matches("option 'seed' cannot be changed here", errmsg(b.configure, b, { seed = 1 }))
    assert.matches("option 'decay' must be a number in %(0, 1%] %(got 2%)", errmsg(b.configure, b, { decay = 2 }))
    assert.equal(1, b:options().decay)
  end)

  it("closes once, by any route", function()
    local b = cb.bandit{ arms = { "a" } }
    b:close()
    b:close()
    assert.equal("cbreaker.Bandit (closed)", tostring(b))
    assert.matches("attempt to use a closed bandit", errmsg(b.select, b))
    assert.matches("attempt to use a closed bandit", errmsg(b.update, b, "a", 1))
    do
      local scoped <close> = cb.bandit{ arms = { "a" } }
      b = scoped
    end
    assert.equal("cbreaker.Bandit (closed)", tostring(b))
    assert.matches("cbreaker.Bandit expected", errmsg(b.select, {}))
  end)
end)
