-- begin_select: the first step of a select (Store.begin_select), atomic.
-- KEYS 1-13. ARGV: to, now, the caller's cached version, its guess whether capacity
-- is on at that version ('1'/'0', see begin_capacity).
-- Returns {HIT, sender} for a sticky hit (honoured), {OPTED_OUT} (nothing written),
-- {UNKNOWN_PROFILE}, {OLD_LAYOUT},
-- or {MISS or CAPACITY, has_previous, previous sender, previous last_used, live, 2n,
-- n number, capacity state pairs, version[, settings, pool...]}: what a fresh choice
-- (or, with capacity on, the plan) needs, changing nothing.
local p, refusal = current_profile()
if not p then
  return refusal
end
local now_s = ARGV[2]
local capacity = begin_capacity(p, ARGV[3], ARGV[4])
local tag, a, b, c, d = begin_one(p, ARGV[1], now_s, tonumber(now_s), capacity)
if tag == {{HIT}} or tag == {{OPTED_OUT}} then
  return {tag, a}
end
return append_pool(append_loads({tag, a, b, c, d}, capacity), ARGV[3])
