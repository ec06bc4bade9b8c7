-- forget: delete the mapping of `to` (Store.forget), atomic.
-- KEYS 1-7. ARGV: to, now. Returns UNKNOWN_PROFILE, or '1'/'0': whether it was live.
local p = load_profile()
if not p then
  return {{UNKNOWN_PROFILE}}
end
local to, now_s = ARGV[1], ARGV[2]
local _, at = move_horizon(p, now_s, tonumber(now_s))
local v = redis.call('HGET', KEYS[2], to)
if not v then
  return '0'
end
local lu_s, _, sender = parse_mapping(v)
redis.call('HDEL', KEYS[2], to)
redis.call('ZREM', KEYS[7], sender .. NUL .. to)
if is_live(tonumber(lu_s), p.ttl, at) then
  return '1'
end
return '0'
