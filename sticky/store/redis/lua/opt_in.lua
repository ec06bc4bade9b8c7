-- opt_in: end a recipient's opt-out (Store.opt_in), atomic.
-- KEYS 1-13. ARGV: to.
-- Returns {UNKNOWN_PROFILE} or {OK, '1' if it was opted out, else '0'}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {{{UNKNOWN_PROFILE}}}
end
return {{{OK}}, tostring(redis.call('SREM', KEYS[12], ARGV[1]))}
