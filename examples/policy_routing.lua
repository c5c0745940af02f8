-- Thompson sampling across LLM providers that skips providers whose
-- breakers are open, with a health sentinel calling engine:probe().
-- A healthy probe resets a forced-open provider (and, with redis, tells
-- every peer it recovered); three failed probes in a row force it open.
-- The sentinel never reads the breakers' states as evidence, so open
-- breakers cannot keep a healthy provider down.
--
--   cbreaker check examples/policy_routing.lua
local function classify(ok, err)
  if ok then return "success" end
  if type(err) == "table" and err.status then
    if err.status == 429 then return "failure", err.retry_after end
    if err.status < 500 then return "ignore" end  -- the request's fault, not the provider's
  end
  return "failure"
end

return {
  defaults = {
    failure_threshold = 5,
    reset_timeout = 30,
    success_threshold = 2,
    failure_rate = 0.5, window = 50, min_calls = 20,
    backoff_factor = 2, max_reset_timeout = 300, jitter = 0.1,
    classify = classify,
  },
  providers = {
    ["deepseek-chat"] = {},
    ["deepseek-reasoner"] = {slow_call_ms = 20000, slow_call_rate = 0.8},
    openai = {},
    anthropic = {failure_threshold = 3},
  },
  selection = {strategy = "thompson", prior = {1, 1}, decay = 0.999, discount = 0.5},
  sentinel = {force_open_after = 3},
  max_attempts = 2,        -- one fallback to another provider
  on_all_open = "fail",
  -- redis = {url = "redis://127.0.0.1:6379/0"},  -- share state across tasks
}
