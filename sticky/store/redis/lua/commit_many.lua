-- commit_many: Store.commit_select for many recipients of one profile, in one script.
-- KEYS 1-13. ARGV: now, then 7 per entry: to, chosen, has_previous, previous sender,
-- previous last_used, live, version.
-- Returns {UNKNOWN_PROFILE}, {OLD_LAYOUT}, or two entries per entry: the tag of
-- commit_one (OPTED_OUT for one opted out since the read) and a sender or ''.
local p, refusal = current_profile()
if not p then
  return refusal
end
local now_s = ARGV[1]
local now = tonumber(now_s)
local out, n0 = {}, p.n
p.defer = true -- meta's count written once, by flush_count
for i = 2, #ARGV, 7 do
  local tag, sender = commit_one(
    p, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6],
    now_s, now)
  out[#out + 1] = tag
  out[#out + 1] = sender
end
return flush_count(p, n0, out)
