-- set_health: a pooled number's entry (health, own limits) in its owner's pool, atomic.
-- KEYS 1-11 of the owning profile. ARGV: number, incarnation (from the owner key), the
-- new entry (its eligibility computed at the version given), that version, then the
-- choice data of the pool with the new entry (see store_choice).
-- Returns {OK}, {OWNER_MOVED} (that incarnation's pool does not hold the number: the
-- owner key is stale or the number moved; the caller reads the owner key again),
-- {OLD_LAYOUT}, or {STALE, version, settings, pool...} (compute the entry again).
if redis.call('HGET', KEYS[1], 'inc') ~= ARGV[2] then
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
if ARGV[3] ~= entry then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
  new_version(5)
end
return {{{OK}}}
