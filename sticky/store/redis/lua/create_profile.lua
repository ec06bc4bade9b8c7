-- create_profile: an empty profile (Store.create_profile), atomic.
-- KEYS 1-4. ARGV: hex id, settings JSON, ttl, sticky, a random base for the version
-- counter, the call's token. Returns EXISTS or OK (also when the profile is the one
-- this token made: a re-sent create is not applied twice).
-- The version key outlives the profile, so a profile created again under the same id
-- never reuses a version an engine may have cached; when it is missing (a new id, or
-- lost data) it starts at a random base, for the same reason.
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'made') == ARGV[6] then
    return {{OK}}
  end
  return {{EXISTS}}
end
if redis.call('EXISTS', KEYS[4]) == 0 then
  redis.call('SET', KEYS[4], ARGV[5])
end
redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[1],
  'id', ARGV[1], 'settings', ARGV[2], 'ttl', ARGV[3], 'sticky', ARGV[4],
  'inc', redis.call('GET', KEYS[4]), 'evicted', '0', 'layout', {{LAYOUT}}, 'n', '0', 'nb', '1',
  'made', ARGV[6])
return {{OK}}
