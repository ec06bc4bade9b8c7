-- begin_select: the first step of a select (Store.begin_select), atomic.
-- KEYS 1-4. ARGV: to, now, the caller's cached version.
-- Returns {HIT, sender} for a sticky hit (honoured), {UNKNOWN_PROFILE}, {OLD_LAYOUT},
-- or {MISS, has_previous, previous sender, previous last_used, live, version[,
-- settings, pool...]}: what a fresh choice needs, changing nothing.
local p, refusal = current_profile()
if not p then
  return refusal
end
local now_s = ARGV[2]
local tag, a, b, c, d = begin_one(p, ARGV[1], now_s, tonumber(now_s))
if tag == {{HIT}} then
  return {tag, a}
end
return append_pool({tag, a, b, c, d}, ARGV[3])
