--- cbreaker.selection: the engine's provider pool, from the `selection`
-- section of a policy (see cbreaker.policy).
--
-- The pool (core.pool, in C) holds the providers' breakers and chooses
-- among those that may take a call by `selection.strategy`: Thompson
-- sampling on a bandit, or round robin.  It discounts a provider's evidence
-- when its breaker opens, by `selection.discount`.
local core = require("cbreaker.core")

local M = {}

--- The bandit options of a checked `selection` section.
local function bandit(sel, clock)
  return {prior = sel.prior, decay = sel.decay, half_life = sel.half_life, seed = sel.seed,
          clock = clock}
end

--- An empty pool for a checked policy's `selection` section, on `clock`
-- (nil: the wall clock); the engine adds the providers in the order of
-- the policy's names.
function M.pool(sel, clock)
  return core.pool{strategy = sel.strategy, discount = sel.discount, bandit = bandit(sel, clock)}
end

--- Hot reload of a pool's discount, priors and forgetting (a reloaded
-- policy keeps its strategy, seed and clock; the engine checks that).
function M.configure(pool, sel)
  pool:configure{discount = sel.discount,
                 bandit = {prior = sel.prior, decay = sel.decay or 1, half_life = sel.half_life or 0}}
end

return M
