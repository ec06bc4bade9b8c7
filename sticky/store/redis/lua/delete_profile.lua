-- delete_profile: a profile with its pool and mappings (Store.delete_profile), atomic.
-- KEYS 1-13. ARGV: now. Its opt-outs and delivery windows go with it.
-- Returns {UNKNOWN_PROFILE}, {OLD_LAYOUT} or {OK, live mappings, incarnation, evicted count,
-- number...}; the caller then releases the numbers' owner keys (other slots).
local p, refusal = current_profile()
if not p then
  return refusal
end
local now_s = ARGV[1]
local _, at = judged_at(p, now_s, tonumber(now_s))
local live = clear_mappings(p, at)
local out = {{{OK}}, live, redis.call('HGET', KEYS[1], 'inc'), redis.call('HGET', KEYS[1], 'evicted')}
for _, number in ipairs(redis.call('HKEYS', KEYS[3])) do
  out[#out + 1] = number
end
redis.call('UNLINK', KEYS[1], KEYS[3], KEYS[6], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12],
  KEYS[13])
redis.call('INCR', KEYS[4]) -- the version key stays: see create_profile.lua
return out
