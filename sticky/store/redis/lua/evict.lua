-- evict: evict_expired for one profile, in chunks (Store.evict_expired).
-- KEYS 1-7. ARGV: now, max removed, max buckets cleaned.
-- Moves the horizon. Returns {UNKNOWN_PROFILE}, {OLD_LAYOUT} or {OK, removed, more}:
-- more is 1 when a limit stopped it (call again), 0 when every dead mapping is gone.
local p, refusal = current_profile()
if not p then
  return refusal
end
local now_s = ARGV[1]
local limit, max_buckets = tonumber(ARGV[2]), tonumber(ARGV[3])
local _, at = move_horizon(p, now_s, tonumber(now_s))
local removed, cleaned = evict(p, at, limit, max_buckets)
local more = 0
if removed >= limit or cleaned >= max_buckets then
  more = 1
end
return {{{OK}}, removed, more}
