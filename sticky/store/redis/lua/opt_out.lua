-- opt_out: opt a recipient out and delete its mapping (Store.opt_out), atomic.
-- KEYS 1-13. ARGV: to, now. The mapping's deletion is forget's (it moves the horizon).
-- Returns {UNKNOWN_PROFILE}, {OLD_LAYOUT} or {OK, '1' if it was not opted out before,
-- else '0'}.
local p, refusal = current_profile()
if not p then
  return refusal
end
local to, now_s = ARGV[1], ARGV[2]
forget_one(p, to, now_s, tonumber(now_s))
return {{{OK}}, tostring(redis.call('SADD', KEYS[12], to))}
