-- migrate_map: move a chunk of a layout 2 profile's mappings into buckets (layout 3),
-- atomic per chunk. KEYS 1-15: 14 and 15 are layout 2's expiry index (queue, late), and
-- KEYS[2] and KEYS[7] name its table and reverse index (the buckets and the bitmaps are
-- keys of their own under those names). ARGV: the entries to move, about.
-- Returns {UNKNOWN_PROFILE}, {OLD_LAYOUT} (written by 0.1: migrate.lua first), {OK, '0'}
-- (more to move: call again) or {OK, '1'} (done, or nothing to do). Every other script
-- refuses the profile (OLD_LAYOUT) until it is done, so no write comes between chunks;
-- HSCAN may return an entry twice, and storing it again changes nothing.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {{{UNKNOWN_PROFILE}}}
end
local layout = redis.call('HGET', KEYS[1], 'layout')
if layout == {{LAYOUT}} then
  return {{{OK}}, '1'}
end
if layout ~= '2' then
  return {{{OLD_LAYOUT}}}
end
local p = load_profile()
local cursor = redis.call('HGET', KEYS[1], 'mcur') or '0'
local page = redis.call('HSCAN', KEYS[2], cursor, 'COUNT', ARGV[1])
local flat = page[2]
p.defer = true -- meta's count written once, below
for i = 1, #flat, 2 do
  local v = flat[i + 1] -- "<last_used> <index key> <sender>"
  local a = string.find(v, ' ', 1, true)
  local b = string.find(v, ' ', a + 1, true)
  put(p, lookup(p, flat[i]), string.sub(v, b + 1), string.sub(v, 1, a - 1))
end
if page[1] ~= '0' then
  redis.call('HSET', KEYS[1], 'mcur', page[1], 'n', p.n)
  return {{{OK}}, '0'}
end
redis.call('UNLINK', KEYS[2], KEYS[7], KEYS[14], KEYS[15])
redis.call('HDEL', KEYS[1], 'mcur', 'due', 'seq')
redis.call('HSET', KEYS[1], 'layout', {{LAYOUT}}, 'n', p.n, 'nb', p.nb)
return {{{OK}}, '1'}
