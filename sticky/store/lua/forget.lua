-- forget: delete the mapping of `to` (Store.forget), atomic.
-- KEYS 1-7. ARGV: to, now. Returns 'u', or '1'/'0': whether the mapping was live.
local p = load_profile()
if not p then
  return 'u'
end
local to, now_s = ARGV[1], ARGV[2]
local _, at = advance(p, now_s, tonumber(now_s))
local v = redis.call('HGET', KEYS[2], to)
if not v then
  return '0'
end
local lu_s, _, sender = parse_mapping(v)
redis.call('HDEL', KEYS[2], to)
redis.call('ZREM', KEYS[7], sender .. NUL .. to)
if at < tonumber(lu_s) + p.ttl then
  return '1'
end
return '0'
