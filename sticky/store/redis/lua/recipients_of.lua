-- recipients_of: the recipients with a live mapping to a number (Store.recipients_of).
-- Read-only. KEYS 1-7. ARGV: number, now.
-- Returns {UNKNOWN_PROFILE}, {OLD_LAYOUT} or {RECIPIENTS, to...} (unsorted).
local p, refusal = current_profile()
if not p then
  return refusal
end
local number, now_s = ARGV[1], ARGV[2]
local _, at = judged_at(p, now_s, tonumber(now_s))
local out, ttl = {{{RECIPIENTS}}}, p.ttl
each_of(p, number, function(to, lu)
  if is_live(lu, ttl, at) then
    out[#out + 1] = to
  end
end)
return out
