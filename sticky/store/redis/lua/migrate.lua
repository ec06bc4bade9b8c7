-- migrate: bring a profile written by 0.1 to layout 2 (its eligibility flags), atomic;
-- migrate_map then moves its mappings into buckets.
-- KEYS 1-11. ARGV: the pool version the entries were computed at, the choice data of
-- that version (see store_choice), then number, entry pairs for the whole pool
-- (entries with their eligibility flag).
-- Returns {UNKNOWN_PROFILE}, {OK} (migrated, or layout 2 or later already) or {STALE, version,
-- settings, pool...} (the pool or settings changed since: compute them again).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {{{UNKNOWN_PROFILE}}}
end
if redis.call('HEXISTS', KEYS[1], 'layout') == 1 then
  return {{{OK}}}
end
if redis.call('GET', KEYS[4]) ~= ARGV[1] then
  return append_pool({{{STALE}}}, '')
end
for i = store_choice(ARGV[1], 2), #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
-- 0.1's copies of the weights and the skip flag: eligibility is data now
redis.call('HDEL', KEYS[1], 'lw', 'tw', 'skip')
redis.call('HSET', KEYS[1], 'layout', '2')
return {{{OK}}}
