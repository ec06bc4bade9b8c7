-- replace_settings: compare-and-set of the settings (Store.replace_settings), atomic.
-- KEYS 1-7. ARGV: old settings JSON, new settings JSON, ttl, sticky, lw, tw, skip.
-- Returns 'u', '0' (the settings changed meanwhile) or '1'.
local p = load_profile()
if not p then
  return 'u'
end
if redis.call('HGET', KEYS[1], 'settings') ~= ARGV[1] then
  return '0'
end
if tonumber(ARGV[3]) > p.ttl and p.horizon_s then
  -- a longer ttl must not bring back what is dead at the horizon: evict it first
  evict(p, p.horizon, math.huge, math.huge)
end
redis.call('HSET', KEYS[1], 'settings', ARGV[2], 'ttl', ARGV[3], 'sticky', ARGV[4],
  'lw', ARGV[5], 'tw', ARGV[6], 'skip', ARGV[7])
redis.call('INCR', KEYS[4])
return '1'
