-- evict: evict_expired for one profile, in chunks (Store.evict_expired).
-- KEYS 1-7. ARGV: now, max removed, max index entries looked at.
-- Moves the horizon to now if later. Returns {'u'} or {'ok', removed, more}: more is 1
-- when a limit stopped it (call again), 0 when every dead mapping is gone.
local p = load_profile()
if not p then
  return {'u'}
end
local now_s = ARGV[1]
local limit, max_pops = tonumber(ARGV[2]), tonumber(ARGV[3])
local _, at = advance(p, now_s, tonumber(now_s))
local removed, pops = evict(p, at, limit, max_pops)
local more = 0
if removed >= limit or pops >= max_pops then
  more = 1
end
return {'ok', removed, more}
