-- pin: store (number, now) for `to`, replacing any mapping (Store.pin), atomic.
-- KEYS 1-7. ARGV: to, number, now, the caller's cached version.
-- Returns {UNKNOWN_PROFILE}, {NOT_IN_POOL} or {OK, version[, settings, pool...]}.
local p = load_profile()
if not p then
  return {{{UNKNOWN_PROFILE}}}
end
local to, number, now_s = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HEXISTS', KEYS[3], number) == 0 then
  return {{{NOT_IN_POOL}}}
end
local now = tonumber(now_s)
local _, at = move_horizon(p, now_s, now)
put(p, to, number, now_s, now, redis.call('HGET', KEYS[2], to))
evict(p, at, STEP_EVICTIONS, STEP_LOOKS)
return append_pool({{{OK}}}, ARGV[4])
