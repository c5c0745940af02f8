--- cbreaker.selection: the engine's provider selectors, one per
-- `selection.strategy` of a policy (see cbreaker.policy).
--
-- A selector has select(eligible) -> name (or nil, message), update(name,
-- reward), discount(name, factor), reset(name), stats() and close(): the
-- methods of core.bandit, which the engine uses and nothing more.
local core = require("cbreaker.core")

local M = {}

local strategies = {}

--- Thompson sampling over the provider names, in C.
function strategies.thompson(sel, names, clock)
  return core.bandit{arms = names, prior = sel.prior, decay = sel.decay,
                     half_life = sel.half_life, seed = sel.seed, clock = clock}
end

--- Round robin over the eligible providers: the selector interface without
-- learning.
function strategies.round_robin(_, names)
  local next_i, picks = 0, {}
  local rr = {}
  function rr.select(_, eligible)
    if #eligible == 0 then return nil, "no eligible arms" end
    next_i = next_i % #eligible + 1
    local name = eligible[next_i]
    picks[name] = (picks[name] or 0) + 1
    return name
  end
  function rr.update() end
  function rr.discount() end
  function rr.reset() end
  function rr.stats()
    local t = {}
    for _, n in ipairs(names) do t[n] = {selections = picks[n] or 0} end
    return t
  end
  function rr.close() end
  return rr
end

--- The selector for a checked policy's `selection` section over the
-- provider `names`, on `clock` (nil: the wall clock).
function M.new(sel, names, clock)
  return strategies[sel.strategy](sel, names, clock)
end

--- Hot reload of a selector's priors and forgetting (a reloaded policy
-- keeps its strategy and seed; the engine checks that).
function M.configure(selector, sel)
  if selector.configure then
    selector:configure{prior = sel.prior, decay = sel.decay or 1, half_life = sel.half_life or 0}
  end
end

return M
