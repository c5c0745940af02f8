-- pybreaker's defaults for LLM calls -- 5 failures open the breaker, 30 s
-- later it lets a probe through, 2 successes close it, a failed probe
-- re-opens it.  With redis the state lives under
-- circuit_breaker:<name>:{state,counter,opened_at}.
--
--   cbreaker check examples/policy_pybreaker.lua
return {
  defaults = {
    failure_threshold = 5,
    reset_timeout = 30,
    success_threshold = 2,
  },
  providers = {
    llm = {},
  },
  sessions = false,  -- one breaker per provider, as pybreaker has it
  -- redis = {url = "redis://127.0.0.1:6379/0", prefix = "circuit_breaker"},
}
