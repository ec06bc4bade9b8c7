-- remove_number: take a number out of the pool with every mapping to it, atomic.
-- KEYS 1-13. ARGV: number, now, the pool version the caller's choice data was computed
-- at (of the pool without the number), then that data (see store_choice); it is
-- stored if that version is current, and dropped otherwise.
-- Returns {UNKNOWN_PROFILE}, {NOT_IN_POOL} or {OK, live mappings removed, incarnation}.
-- The other numbers' eligibility does not depend on this one: their flags stand.
local p = load_profile()
if not p then
  return {{{UNKNOWN_PROFILE}}}
end
local number, now_s = ARGV[1], ARGV[2]
if redis.call('HEXISTS', KEYS[3], number) == 0 then
  return {{{NOT_IN_POOL}}}
end
local _, at = move_horizon(p, now_s, tonumber(now_s))
local lo, hi = '[' .. number .. NUL, '(' .. number .. '\1'
local prefix = #number + 2
local live = 0
for _, member in ipairs(redis.call('ZRANGEBYLEX', KEYS[7], lo, hi)) do
  local to = string.sub(member, prefix)
  local v = redis.call('HGET', KEYS[2], to)
  if v then
    local lu_s = parse_mapping(v)
    if is_live(tonumber(lu_s), p.ttl, at) then
      live = live + 1
    end
    redis.call('HDEL', KEYS[2], to)
  end
end
redis.call('ZREMRANGEBYLEX', KEYS[7], lo, hi)
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
