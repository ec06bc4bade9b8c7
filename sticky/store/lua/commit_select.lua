-- commit_select: the compare-and-set of a fresh choice (Store.commit_select), atomic.
-- KEYS 1-7. ARGV: to, chosen, has_previous, previous sender, previous last_used,
-- live, version, now.
-- Returns {'t'} stored, {'h', sender} another select won (refreshed), {'n'} nothing
-- changed (start over), {'u'} unknown profile, or {'x'} (see commit_one).
local p = load_profile()
if not p then
  return {'u'}
end
local now_s = ARGV[8]
local tag, sender = commit_one(
  p, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], now_s, tonumber(now_s))
return {tag, sender}
