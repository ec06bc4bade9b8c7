-- own_release: delete a number's owner key if it still names this incarnation.
-- KEYS: the owner key. ARGV: "<incarnation>:<hex id>". Returns OK.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return {{OK}}
