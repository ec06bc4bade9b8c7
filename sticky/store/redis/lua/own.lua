-- own: take a number's owner key (its own slot) for "<incarnation>:<hex id>".
-- KEYS: the owner key. ARGV: me, my hex id, my incarnation, the stale value the caller
-- checked (own_check said FREE), or ''.
-- Takes it when free, already mine, the checked stale value, or an older incarnation of
-- my own profile; returns OK, else the current value.
local v = redis.call('GET', KEYS[1])
if (not v) or v == ARGV[1] or v == ARGV[4] then
  redis.call('SET', KEYS[1], ARGV[1])
  return {{OK}}
end
local c = string.find(v, ':', 1, true)
if c and string.sub(v, c + 1) == ARGV[2] and tonumber(string.sub(v, 1, c - 1)) < tonumber(ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1])
  return {{OK}}
end
return v
