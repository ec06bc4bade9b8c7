-- store_choice: what a fresh choice needs at one pool version, computed in Python from
-- sticky.policy.Chooser (see pick in common.lua), stored if that version is current.
-- KEYS 1-11. ARGV: the version, then the choice data as store_choice takes it.
-- Returns {OK} or {STALE} (the version moved on: the next select says what to do).
if redis.call('GET', KEYS[4]) ~= ARGV[1] then
  return {{{STALE}}}
end
store_choice(ARGV[1], 2)
return {{{OK}}}
