-- own: take a number's owner key (its own slot) for "<incarnation>:<hex id>:<token>".
-- KEYS: the owner key. ARGV: me (that value, new for each attempt of an add), my hex id,
-- my incarnation, the stale value the caller checked (own_check said FREE), or ''.
-- Takes it when free, the checked stale value, or a value of my own profile at my
-- incarnation or an older one (in one profile its pool decides: add_commit); returns
-- OK, else the current value. Because each attempt writes a value of its own, a value
-- checked once never names a later attempt: a rival that checked this profile's first
-- attempt cannot take the key from its retry (the owner key's ABA).
local v = redis.call('GET', KEYS[1])
if (not v) or v == ARGV[1] or v == ARGV[4] then
  redis.call('SET', KEYS[1], ARGV[1])
  return {{OK}}
end
local inc, hex = string.match(v, '^([^:]*):([^:]*)')
if hex == ARGV[2] and tonumber(inc) <= tonumber(ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1])
  return {{OK}}
end
return v
