-- capacity: a profile's capacity state with its settings and pool (Store.capacity_state),
-- read-only. KEYS 1-11. ARGV: the caller's cached version.
-- Returns {UNKNOWN_PROFILE} or {OK, 2n, n number, state pairs, version[, settings,
-- pool...]}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {{{UNKNOWN_PROFILE}}}
end
local loads = redis.call('HGETALL', KEYS[11])
local out = {{{OK}}, #loads}
for i = 1, #loads do
  out[i + 2] = loads[i]
end
return append_pool(out, ARGV[1])
