-- commit_select: the compare-and-set of a fresh choice (Store.commit_select), atomic.
-- KEYS 1-13. ARGV: to, chosen, has_previous, previous sender, previous last_used,
-- live, version, now.
-- Returns {OPTED_OUT} (opted out since the read: nothing stored), {STORED}, {HIT, sender} (another select won: honoured), {START_OVER}
-- (nothing changed), {UNKNOWN_PROFILE}, {OLD_LAYOUT} or {NOT_ELIGIBLE} (see commit_one).
local p, refusal = current_profile()
if not p then
  return refusal
end
local now_s = ARGV[8]
local tag, sender = commit_one(
  p, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], now_s, tonumber(now_s))
return {tag, sender}
