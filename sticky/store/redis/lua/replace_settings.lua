-- replace_settings: compare-and-set of the settings (Store.replace_settings), atomic.
-- KEYS 1-11. ARGV: old settings JSON, the same settings as a profile written before
-- a settings field existed stores them ('' if not known), new settings JSON, ttl,
-- sticky, the pool version
-- the new entries were computed at, the choice data under the new settings (see
-- store_choice), then number, entry pairs whose eligibility flag the new settings
-- change.
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
if tonumber(ARGV[4]) > p.ttl and p.horizon_s then
  -- a longer ttl must not bring back what is dead at the horizon: evict it first
  evict(p, p.horizon, math.huge, math.huge)
end
redis.call('HSET', KEYS[1], 'settings', ARGV[3], 'ttl', ARGV[4], 'sticky', ARGV[5])
for i = 8 + tonumber(ARGV[7]), #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
new_version(7)
return {{{OK}}}
