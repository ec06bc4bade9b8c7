-- add_commit: last step of add_number, in the adding profile's slot, atomic.
-- KEYS 1-11. ARGV: number, token, pool entry ("<L|T><1|0><1|0>", its eligibility
-- computed at the version given), incarnation, that version, then the choice data of
-- the pool with the number (see store_choice).
-- Returns {OK} (added), {UNKNOWN_PROFILE} (the profile was deleted meanwhile),
-- {IN_POOL} (already in this pool), {REVOKED} (a rival add revoked the claim: start
-- over), {OLD_LAYOUT}, or {STALE, version, settings, pool...} (the settings or pool
-- changed since: compute the entry again; the claim stands).
if redis.call('HGET', KEYS[1], 'inc') ~= ARGV[4] then
  return {{{UNKNOWN_PROFILE}}}
end
local claim = redis.call('HGET', KEYS[8], ARGV[1])
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  if claim == ARGV[2] then
    redis.call('HDEL', KEYS[8], ARGV[1])
  end
  return {{{IN_POOL}}}
end
if claim ~= ARGV[2] then
  return {{{REVOKED}}}
end
if not layout_is_current() then
  return {{{OLD_LAYOUT}}}
end
if redis.call('GET', KEYS[4]) ~= ARGV[5] then
  return append_pool({{{STALE}}}, '')
end
redis.call('HDEL', KEYS[8], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
new_version(6)
return {{{OK}}}
