-- The policy examples/embed.c loads: three backends behind one engine, with
-- a fallback so a failing backend costs no request.
--   build/examples/cbreaker_embed examples/policy_embed.lua 300
return {
  defaults = {failure_threshold = 5, reset_timeout = 30},
  providers = {alpha = {}, beta = {}, gamma = {failure_threshold = 3}},
  selection = {seed = 42},
  max_attempts = 2,
  sessions = {max_entries = 100, defaults = {failure_threshold = 5}},
}
