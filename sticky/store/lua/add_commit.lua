-- add_commit: last step of add_number, in the adding profile's slot, atomic.
-- KEYS 1-8. ARGV: number, token, pool entry ("<L|T><1|0>"), incarnation.
-- Returns 'ok' (added), 'u' (the profile was deleted meanwhile), 'i' (already in this
-- pool) or 'r' (the claim was revoked by a rival add: start over).
if redis.call('HGET', KEYS[1], 'inc') ~= ARGV[4] then
  return 'u'
end
local claim = redis.call('HGET', KEYS[8], ARGV[1])
if claim == ARGV[2] then
  redis.call('HDEL', KEYS[8], ARGV[1])
end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  return 'i'
end
if claim ~= ARGV[2] then
  return 'r'
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('INCR', KEYS[4])
return 'ok'
