-- add_evicted: add a deleted profile's evicted count to the store's counter, once.
-- KEYS: the counter, the moved hash (both in the counter's slot).
-- ARGV: the profile's hex id, its incarnation, the count.
-- The hash keeps, per id, the last incarnation whose count was added (incarnations of
-- one id only grow): a re-sent call finds it there and adds nothing. Returns OK.
local inc = tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '')
if inc and last and last >= inc then
  return {{OK}}
end
if inc then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
redis.call('INCRBY', KEYS[1], ARGV[3])
return {{OK}}
