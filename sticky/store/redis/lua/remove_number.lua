-- remove_number: take a number out of the pool with every mapping to it, atomic.
-- KEYS 1-13. ARGV: number, now, the pool version the caller's choice data was computed
-- at (of the pool without the number), then that data (see store_choice); it is
-- stored if that version is current, and dropped otherwise.
-- Returns {UNKNOWN_PROFILE}, {OLD_LAYOUT}, {NOT_IN_POOL} or {OK, live mappings removed, incarnation}.
-- The other numbers' eligibility does not depend on this one: their flags stand.
local p, refusal = current_profile()
if not p then
  return refusal
end
local number, now_s = ARGV[1], ARGV[2]
if redis.call('HEXISTS', KEYS[3], number) == 0 then
  return {{{NOT_IN_POOL}}}
end
local _, at = move_horizon(p, now_s, tonumber(now_s))
local live, gone, ttl, touched = 0, 0, p.ttl, {}
local sid = each_of(p, number, function(to, lu, key, b)
  if is_live(lu, ttl, at) then
    live = live + 1
  end
  redis.call('HDEL', key, to)
  gone = gone + 1
  touched[b] = key
end)
for b, key in pairs(touched) do -- once a bucket, not once a mapping
  unindex_if_empty(key, b)
end
if sid then
  redis.call('UNLINK', rev_key(sid))
  redis.call('HDEL', KEYS[6], number, '#' .. sid)
  if gone > 0 then
    count(p, -gone)
  end
end
redis.call('HDEL', KEYS[3], number)
redis.call('HDEL', KEYS[11], number) -- its capacity state goes with it
redis.call('HDEL', KEYS[13], number) -- and its delivery window
if redis.call('GET', KEYS[4]) == ARGV[3] then
  new_version(4)
else -- computed for another pool: the next fresh choice has it computed again
  redis.call('INCR', KEYS[4])
  redis.call('DEL', KEYS[9])
  redis.call('HDEL', KEYS[1], 'cap') -- not known until the data is computed again
end
return {{{OK}}, live, redis.call('HGET', KEYS[1], 'inc')}
