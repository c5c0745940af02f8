--- cbreaker.metrics: the Prometheus text exposition (format 0.0.4) of an
-- engine's stats (engine:stats()).  A function of that table alone, so any
-- snapshot of it can be rendered.
local M = {}

local huge = math.huge

local STATES = {"closed", "open", "half-open", "forced-open", "disabled"}
local OUTCOMES = {"success", "failure", "ignored"}
local RESULTS = {"ok", "error", "all_open", "session_open", "registry_full", "key_too_long"}

--- A label value with Prometheus's escapes (backslash, quote, newline).
local function label(v)
  return (tostring(v):gsub("[\\\"\n]", {["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n"}))
end

local function num(v)
  if v == huge then return "+Inf" end
  if math.type(v) == "integer" then return tostring(v) end
  return ("%.17g"):format(v)
end

local function calls(st, outcome)
  if outcome == "success" then return st.successes end
  if outcome == "failure" then return st.failures end
  return st.ignored
end

--- The exposition text of `stats`, as engine:stats() returns it.
function M.text(stats)
  local out = {}
  local function family(name, kind, help)
    out[#out + 1] = ("# HELP %s %s\n# TYPE %s %s"):format(name, help, name, kind)
  end
  local function sample(name, labels, v)
    out[#out + 1] = ("%s{%s} %s"):format(name, labels, num(v))
  end
  -- One sample per provider, or per provider and each of `values`.
  local function per_provider(name, value, key, values)
    for _, p in ipairs(stats.names) do
      local st = stats.providers[p]
      if values then
        for _, v in ipairs(values) do
          sample(name, ('provider="%s",%s="%s"'):format(label(p), key, v), value(st, v))
        end
      else
        sample(name, ('provider="%s"'):format(label(p)), value(st))
      end
    end
  end

  family("cbreaker_provider_state", "gauge", "1 for the state the provider's breaker is in.")
  per_provider("cbreaker_provider_state",
    function(st, s) return st.state == s and 1 or 0 end, "state", STATES)
  family("cbreaker_provider_calls_total", "counter", "Calls recorded on the provider's breaker, by outcome.")
  per_provider("cbreaker_provider_calls_total", calls, "outcome", OUTCOMES)
  family("cbreaker_provider_slow_calls_total", "counter", "Calls slower than slow_call_ms.")
  per_provider("cbreaker_provider_slow_calls_total", function(st) return st.slow_calls end)
  family("cbreaker_provider_rejections_total", "counter", "Calls the provider's breaker refused.")
  per_provider("cbreaker_provider_rejections_total", function(st) return st.rejections end)
  family("cbreaker_provider_transitions_total", "counter", "State changes of the provider's breaker, by new state.")
  per_provider("cbreaker_provider_transitions_total",
    function(st, s) return st.transitions[s] or 0 end, "to", STATES)
  family("cbreaker_provider_selections_total", "counter", "Calls the selector routed to the provider.")
  per_provider("cbreaker_provider_selections_total", function(st) return st.selected end)
  family("cbreaker_provider_bypasses_total", "counter", "Calls sent past an open breaker (on_all_open = \"bypass\").")
  per_provider("cbreaker_provider_bypasses_total", function(st) return st.bypassed end)
  family("cbreaker_requests_total", "counter", "engine:call results.")
  for _, r in ipairs(RESULTS) do
    sample("cbreaker_requests_total", ('result="%s"'):format(r), stats.requests[r] or 0)
  end
  if stats.sessions then
    family("cbreaker_sessions", "gauge", "Per-session guardrail breakers held.")
    out[#out + 1] = "cbreaker_sessions " .. num(stats.sessions.size)
  end
  return table.concat(out, "\n") .. "\n"
end

return M
