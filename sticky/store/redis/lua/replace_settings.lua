-- replace_settings: compare-and-set of the settings (Store.replace_settings), atomic.
-- KEYS 1-13. ARGV: old settings JSON, the same settings as a profile written before
-- a settings field existed stores them ('' if not known), new settings JSON, ttl,
-- sticky, the pool version
-- the new entries were computed at, '1' to delete every mapping (sticky sender turned
-- off with clear_on_sticky_off) else '0', '1' to delete every delivery window (a new
-- health_window) else '0', the choice data under the new settings (see store_choice),
-- then number, entry pairs whose eligibility flag the new settings change.
-- Returns {UNKNOWN_PROFILE}, {OLD_LAYOUT}, {SETTINGS_CHANGED} (not the old settings any
-- more), {STALE, version, settings, pool...} (the pool changed since: compute the
-- entries again) or {OK}.
local p, refusal = current_profile()
if not p then
  return refusal
end
local stored = redis.call('HGET', KEYS[1], 'settings')
if stored ~= ARGV[1] and (ARGV[2] == '' or stored ~= ARGV[2]) then
  return {{{SETTINGS_CHANGED}}}
end
if redis.call('GET', KEYS[4]) ~= ARGV[6] then
  return append_pool({{{STALE}}}, '')
end
if ARGV[7] == '1' then
  -- the mappings and their indexes go in the same step as the settings change
  clear_mappings(p, false)
elseif tonumber(ARGV[4]) > p.ttl and p.horizon_s then
  -- a longer ttl must not bring back what is dead at the horizon: evict it first
  evict(p, p.horizon, math.huge, math.huge)
end
if ARGV[8] == '1' then
  redis.call('UNLINK', KEYS[13])
end
redis.call('HSET', KEYS[1], 'settings', ARGV[3], 'ttl', ARGV[4], 'sticky', ARGV[5])
for i = 10 + tonumber(ARGV[9]), #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
new_version(9)
return {{{OK}}}
