-- withdraw: drop this add's pending claim (add_number failed). KEYS 1-8. ARGV: number,
-- token. Returns OK.
if redis.call('HGET', KEYS[8], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[8], ARGV[1])
end
return {{OK}}
