-- opted_out: whether a recipient is opted out, or every opted-out recipient. Read-only.
-- KEYS 1-13. ARGV: to, or nothing for all of them.
-- Returns {UNKNOWN_PROFILE}, {OK, '1'/'0'} or {OK, to...} (unsorted).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {{{UNKNOWN_PROFILE}}}
end
if ARGV[1] then
  return {{{OK}}, tostring(redis.call('SISMEMBER', KEYS[12], ARGV[1]))}
end
local out = {{{OK}}}
for _, to in ipairs(redis.call('SMEMBERS', KEYS[12])) do
  out[#out + 1] = to
end
return out
