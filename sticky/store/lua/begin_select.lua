-- begin_select: the first step of a select (Store.begin_select), atomic.
-- KEYS 1-4. ARGV: to, now, the caller's cached version.
-- Returns {'h', sender} for a sticky hit (refreshed), {'u'} for an unknown profile, or
-- {'d', has_previous, previous sender, previous last_used, live, version[, settings,
-- pool...]}: what a fresh choice needs, changing nothing.
local p = load_profile()
if not p then
  return {'u'}
end
local now_s = ARGV[2]
local tag, a, b, c, d = begin_one(p, ARGV[1], now_s, tonumber(now_s))
if tag == 'h' then
  return {'h', a}
end
return append_pool({'d', a, b, c, d}, ARGV[3])
