-- mapping: the live mapping of `to` (Store.mapping). Read-only.
-- KEYS 1-7. ARGV: to, now.
-- Returns {UNKNOWN_PROFILE}, {OLD_LAYOUT}, {NO_MAPPING} (none live) or {MAPPING, sender,
-- last_used, ttl}.
local p, refusal = current_profile()
if not p then
  return refusal
end
local now_s = ARGV[2]
local m = lookup(p, ARGV[1])
if not m.sid then
  return {{{NO_MAPPING}}}
end
local _, at = judged_at(p, now_s, tonumber(now_s))
if is_live(m.lu, p.ttl, at) then
  return {{{MAPPING}}, m.sender, m.lu_s, p.ttl_s}
end
return {{{NO_MAPPING}}}
