-- pin: store (number, now) for `to`, replacing any mapping (Store.pin), atomic.
-- KEYS 1-11. ARGV: to, number, now, the caller's cached version, then the time zone
-- the caller computed the day in and that day's ordinal (as select.lua's).
-- With capacity on, the pin counts a new recipient of `number` on that day (whatever
-- its budget; no slot reserved).
-- Returns {UNKNOWN_PROFILE}, {OLD_LAYOUT}, {NOT_IN_POOL}, STALE (capacity not known, or not the
-- profile's time zone: see stale_choice; nothing written) or {OK, version[,
-- settings, pool...]}.
local p, refusal = current_profile()
if not p then
  return refusal
end
local to, number, now_s = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HEXISTS', KEYS[3], number) == 0 then
  return {{{NOT_IN_POOL}}}
end
local stale = stale_capacity(p, ARGV[5])
if stale then
  return stale
end
if p.cap ~= '0' then
  local load = parse_load(redis.call('HGET', KEYS[11], number))
  write_load({}, number, count_new(load, tonumber(ARGV[6])))
end
local now = tonumber(now_s)
store_fresh(p, lookup(p, to), number, now_s, now)
return append_pool({{{OK}}}, ARGV[4])
