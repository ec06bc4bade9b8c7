-- mapping: the live mapping of `to` (Store.mapping). Read-only.
-- KEYS 1-2. ARGV: to, now. Returns {'u'}, {'n'} (none live) or {'m', sender, last_used, ttl}.
local p = load_profile()
if not p then
  return {'u'}
end
local now_s = ARGV[2]
local v = redis.call('HGET', KEYS[2], ARGV[1])
if not v then
  return {'n'}
end
local lu_s, _, sender = parse_mapping(v)
local _, at = effective(p, now_s, tonumber(now_s))
if at < tonumber(lu_s) + p.ttl then
  return {'m', sender, lu_s, p.ttl_s}
end
return {'n'}
