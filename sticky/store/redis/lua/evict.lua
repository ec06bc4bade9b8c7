-- evict: evict_expired for one profile, in chunks (Store.evict_expired).
-- KEYS 1-7. ARGV: now, max removed, max index entries looked at.
-- Moves the horizon. Returns {UNKNOWN_PROFILE} or {OK, removed, more}: more is 1 when a
-- limit stopped it (call again), 0 when every dead mapping is gone.
local p = load_profile()
if not p then
  return {{{UNKNOWN_PROFILE}}}
end
local now_s = ARGV[1]
local limit, max_looks = tonumber(ARGV[2]), tonumber(ARGV[3])
local _, at = move_horizon(p, now_s, tonumber(now_s))
local removed, looks = evict(p, at, limit, max_looks)
local more = 0
if removed >= limit or looks >= max_looks then
  more = 1
end
return {{{OK}}, removed, more}
