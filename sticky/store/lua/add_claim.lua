-- add_claim: step 1 of add_number, in the adding profile's slot.
-- KEYS 1-8. ARGV: number, token.
-- Returns 'u' (unknown profile), 'i' (already in this pool) or the profile's incarnation,
-- after recording a pending claim (number -> token) that add_commit needs and that a
-- rival add may revoke (own_check).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 'u'
end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  return 'i'
end
redis.call('HSET', KEYS[8], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], 'inc')
