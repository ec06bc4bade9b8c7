-- add_claim: step 1 of add_number, in the adding profile's slot.
-- KEYS 1-8. ARGV: number, token, the caller's cached version.
-- Returns {UNKNOWN_PROFILE}, {IN_POOL} (already in this pool) or {OK, incarnation,
-- version[, settings, pool...]}, after recording a pending claim (number -> token) that
-- add_commit needs and that a rival add may revoke (own_check). The settings let the
-- caller compute the new entry's eligibility flag.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {{{UNKNOWN_PROFILE}}}
end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  return {{{IN_POOL}}}
end
redis.call('HSET', KEYS[8], ARGV[1], ARGV[2])
return append_pool({{{OK}}, redis.call('HGET', KEYS[1], 'inc')}, ARGV[3])
