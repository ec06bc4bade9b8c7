-- set_health: a pooled number's entry (health, verdict, drain, own limits) in its
-- owner's pool, atomic (set_health, set_limits, set_drain).
-- KEYS 1-13 of the owning profile. ARGV: number, incarnation (from the owner key; ''
-- for a number named with its profile), the new entry (its flags computed at the
-- version given), that version, '1' to drop the number's delivery window, then the
-- choice data of the pool with the new entry (see store_choice).
-- Returns {OK}, {UNKNOWN_PROFILE} (no incarnation given, and no such profile),
-- {OWNER_MOVED} (that incarnation's pool does not hold the number: the owner key is
-- stale or the number moved; the caller reads the owner key again), {OLD_LAYOUT},
-- {STALE, version, settings, pool...} (compute the entry again).
if ARGV[2] == '' then
  if redis.call('EXISTS', KEYS[1]) == 0 then
    return {{{UNKNOWN_PROFILE}}}
  end
elseif redis.call('HGET', KEYS[1], 'inc') ~= ARGV[2] then
  return {{{OWNER_MOVED}}}
end
local entry = redis.call('HGET', KEYS[3], ARGV[1])
if not entry then
  return {{{OWNER_MOVED}}}
end
if not layout_is_current() then
  return {{{OLD_LAYOUT}}}
end
if redis.call('GET', KEYS[4]) ~= ARGV[4] then
  return append_pool({{{STALE}}}, '')
end
if ARGV[5] == '1' then
  redis.call('HDEL', KEYS[13], ARGV[1])
end
if ARGV[3] ~= entry then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
  new_version(6)
end
return {{{OK}}}
