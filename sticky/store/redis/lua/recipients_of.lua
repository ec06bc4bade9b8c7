-- recipients_of: the recipients with a live mapping to a number (Store.recipients_of).
-- Read-only. KEYS 1-7. ARGV: number, now.
-- Returns {UNKNOWN_PROFILE} or {RECIPIENTS, to...} (unsorted).
local p = load_profile()
if not p then
  return {{{UNKNOWN_PROFILE}}}
end
local number, now_s = ARGV[1], ARGV[2]
local _, at = judged_at(p, now_s, tonumber(now_s))
local out = {{{RECIPIENTS}}}
local prefix = #number + 2
for _, member in ipairs(redis.call('ZRANGEBYLEX', KEYS[7], '[' .. number .. NUL, '(' .. number .. '\1')) do
  local to = string.sub(member, prefix)
  local v = redis.call('HGET', KEYS[2], to)
  if v then
    local lu_s = parse_mapping(v)
    if is_live(tonumber(lu_s), p.ttl, at) then
      out[#out + 1] = to
    end
  end
end
return out
