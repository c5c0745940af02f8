-- One guardrail breaker per agent session, so a session stuck in an error
-- loop is stopped without touching any other session of the same tenant.  The map is cleaned every 100 calls and capped at 1000
-- entries; an open breaker is never evicted to make room, and one tenant
-- cannot push out another's sessions.
--
--   cbreaker check examples/policy_sessions.lua

-- The provider's breaker counts only the provider's faults (5xx, timeouts);
-- an agent's own errors (a tool loop, a bad request) are its session's.
local function provider_fault(ok, err)
  if ok then return "success" end
  if type(err) == "table" and ((err.status or 0) >= 500 or err.timeout) then
    return "failure"
  end
  return "ignore"
end

return {
  defaults = {classify = provider_fault},
  providers = {
    assistant = {},  -- the orchestrator's one model endpoint
  },
  sessions = {
    max_entries = 1000,    -- a hard cap: the map never grows without bound
    cleanup_every = 100,   -- dead sessions are swept every 100 calls
    max_per_tenant = 200,  -- a tenant cannot exhaust the map
    idle_ttl = 1800,       -- a session idle for 30 minutes is dropped
    defaults = {
      failure_threshold = 5,  -- five errors in a row stop the session
      reset_timeout = 60,
      success_threshold = 1,
    },
  },
}
