-- own_release: delete a number's owner key if it still names what the caller owned.
-- KEYS: the owner key. ARGV: a value, and '1' to match it exactly or '0' to match any
-- value of the incarnation "<incarnation>:<hex id>" it names. Returns OK.
local v = redis.call('GET', KEYS[1])
if v and (v == ARGV[1] or (ARGV[2] == '0' and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. ':')) then
  redis.call('DEL', KEYS[1])
end
return {{OK}}
