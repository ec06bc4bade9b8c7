-- mapping: the live mapping of `to` (Store.mapping). Read-only.
-- KEYS 1-2. ARGV: to, now.
-- Returns {UNKNOWN_PROFILE}, {NO_MAPPING} (none live) or {MAPPING, sender, last_used, ttl}.
local p = load_profile()
if not p then
  return {{{UNKNOWN_PROFILE}}}
end
local now_s = ARGV[2]
local v = redis.call('HGET', KEYS[2], ARGV[1])
if not v then
  return {{{NO_MAPPING}}}
end
local lu_s, _, sender = parse_mapping(v)
local _, at = judged_at(p, now_s, tonumber(now_s))
if is_live(tonumber(lu_s), p.ttl, at) then
  return {{{MAPPING}}, sender, lu_s, p.ttl_s}
end
return {{{NO_MAPPING}}}
