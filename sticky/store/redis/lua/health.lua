-- health: a profile's delivery windows with its pool (Store.health). Read-only.
-- KEYS 1-13. ARGV: the caller's cached version.
-- Returns {UNKNOWN_PROFILE} or {OK, 2n, n number, window pairs, version[, settings,
-- pool...]}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {{{UNKNOWN_PROFILE}}}
end
local windows = redis.call('HGETALL', KEYS[13])
local out = {{{OK}}, #windows}
for i = 1, #windows do
  out[i + 2] = windows[i]
end
return append_pool(out, ARGV[1])
