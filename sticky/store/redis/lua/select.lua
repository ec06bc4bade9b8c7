-- select: a whole select in one step (OneStepStore.select_in_one_step), atomic.
-- KEYS 1-10. ARGV: to, now, a draw in [0, 1), the geomatch mode the caller assumed,
-- then the recipient's four tier fields of the choice hash ('-' where it has no key).
-- Returns {HIT, sender} (a sticky hit, honoured), {CHOSEN, sender, reason, tier} (a
-- fresh choice that used the draw, stored unless the reason is POOL),
-- {NO_ELIGIBLE} (no eligible number: nothing written, the draw not used),
-- {UNKNOWN_PROFILE}, {OLD_LAYOUT}, or STALE (see stale_choice: nothing written).
local p, refusal = current_profile()
if not p then
  return refusal
end
local to, now_s = ARGV[1], ARGV[2]
local now = tonumber(now_s)
local reason, old = hit_or_reason(p, to, now_s, now)
if reason == STICKY then
  return {{{HIT}}, old}
end
local c = redis.call('HMGET', KEYS[9], 'v', 'mode', 'w', '*', ARGV[5], ARGV[6], ARGV[7], ARGV[8])
if not choice_is_current(p, c, ARGV[4]) then
  return stale_choice(p, c)
end
local sender, tier = fresh(p, c, to, old, tonumber(ARGV[3]), now_s, now)
if not sender then
  return {{{NO_ELIGIBLE}}}
end
return {{{CHOSEN}}, sender, reason, tier}
