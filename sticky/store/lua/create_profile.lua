-- create_profile: an empty profile (Store.create_profile), atomic.
-- KEYS 1-4. ARGV: hex id, settings JSON, ttl, sticky, lw, tw, skip, a random base for
-- the version counter. Returns 'e' (exists) or 'ok'.
-- The version key outlives the profile, so a profile created again under the same id
-- never reuses a version an engine may have cached; when it is missing (a new id, or
-- lost data) it starts at a random base, for the same reason.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 'e'
end
if redis.call('EXISTS', KEYS[4]) == 0 then
  redis.call('SET', KEYS[4], ARGV[8])
end
redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[1],
  'id', ARGV[1], 'settings', ARGV[2], 'ttl', ARGV[3], 'sticky', ARGV[4], 'lw', ARGV[5],
  'tw', ARGV[6], 'skip', ARGV[7], 'inc', redis.call('GET', KEYS[4]), 'seq', '0',
  'evicted', '0')
return 'ok'
