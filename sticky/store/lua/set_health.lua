-- set_health: a pooled number's health, in its owner's pool, atomic.
-- KEYS 1-4 of the owning profile. ARGV: number, incarnation (from the owner key), '1'/'0'.
-- Returns 'ok', or 'm' when that incarnation's pool does not hold the number (the owner
-- key is stale or the number moved: the caller reads the owner key again).
if redis.call('HGET', KEYS[1], 'inc') ~= ARGV[2] then
  return 'm'
end
local entry = redis.call('HGET', KEYS[3], ARGV[1])
if not entry then
  return 'm'
end
local new = string.sub(entry, 1, 1) .. ARGV[3]
if new ~= entry then
  redis.call('HSET', KEYS[3], ARGV[1], new)
  redis.call('INCR', KEYS[4])
end
return 'ok'
