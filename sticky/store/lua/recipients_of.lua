-- recipients_of: the recipients with a live mapping to a number (Store.recipients_of).
-- Read-only. KEYS 1-7. ARGV: number, now. Returns {'u'} or {'r', to...} (unsorted).
local p = load_profile()
if not p then
  return {'u'}
end
local number, now_s = ARGV[1], ARGV[2]
local _, at = effective(p, now_s, tonumber(now_s))
local out = {'r'}
local prefix = #number + 2
for _, member in ipairs(redis.call('ZRANGEBYLEX', KEYS[7], '[' .. number .. NUL, '(' .. number .. '\1')) do
  local to = string.sub(member, prefix)
  local v = redis.call('HGET', KEYS[2], to)
  if v then
    local lu_s = parse_mapping(v)
    if at < tonumber(lu_s) + p.ttl then
      out[#out + 1] = to
    end
  end
end
return out
