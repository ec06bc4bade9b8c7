-- own_check: does the profile an owner key names hold the number? In that profile's slot.
-- KEYS 1-8 of that profile. ARGV: number, its incarnation (from the owner key).
-- Returns IN_POOL (it does: the number is in use) or FREE (the owner key is stale, left
-- by a crash or an add still in flight). Before answering FREE it revokes that
-- profile's pending claim on the number, so an add in flight there cannot commit after
-- the caller takes the owner key.
if redis.call('HGET', KEYS[1], 'inc') == ARGV[2] and redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  return {{IN_POOL}}
end
redis.call('HDEL', KEYS[8], ARGV[1])
return {{FREE}}
