-- record_delivery: one delivery report added to a number's window and the number judged,
-- atomic: the window and the verdict change together.
-- KEYS 1-13 of the owning profile. ARGV: number, incarnation (from the owner key), the
-- pool version the caller's settings and entry are of (its bucket was computed with
-- their health_window), the report's bucket, its outcome's place in a window entry (2
-- delivered, 3 failed, 4 spam), a token of the report, the verdict at that version ('1'
-- healthy), the number's entry with the other verdict (its flags computed at that
-- version), min_samples, min_delivery_rate, max_spam_rate and the two recovery rates
-- (policy.recovery_rates), then '0' (the choice data new_version stores: none).
-- A report re-sent with the same token (its reply lost) is not counted again.
-- A changed verdict writes the entry and is a new pool version, whose choice data the
-- next fresh choice has computed (an O(p) argument list on every report would cost
-- more than that one round trip after a rare change).
-- Returns {OK, '1' if the verdict changed else '0'}, {OWNER_MOVED} (see
-- set_health.lua), {OLD_LAYOUT} or {STALE, version, settings, pool...} (nothing
-- written).
if redis.call('HGET', KEYS[1], 'inc') ~= ARGV[2] then
  return {{{OWNER_MOVED}}}
end
local number = ARGV[1]
if redis.call('HEXISTS', KEYS[3], number) == 0 then
  return {{{OWNER_MOVED}}}
end
if not layout_is_current() then
  return {{{OLD_LAYOUT}}}
end
if redis.call('GET', KEYS[4]) ~= ARGV[3] then
  return append_pool({{{STALE}}}, '')
end
local token = ARGV[6]
local v = redis.call('HGET', KEYS[13], number)
if v and string.sub(v, 1, #token + 1) == token .. ';' then
  return {{{OK}}, '0'} -- this very report, sent again: counted once (and judged then)
end
local bucket, slot = tonumber(ARGV[4]), tonumber(ARGV[5])
local text, d, f, s = add_to_newest(v, token, bucket, slot)
if not text then
  local w = add_outcome(parse_window(v), bucket, slot)
  text = window_text(token, w)
  d, f, s = tally(w)
end
redis.call('HSET', KEYS[13], number, text)
local healthy = ARGV[7] == '1'
local h = {}
for i = 9, 13 do
  h[i - 8] = tonumber(ARGV[i])
end
if judge_health(d, f, s, healthy, h) == healthy then
  return {{{OK}}, '0'}
end
redis.call('HSET', KEYS[3], number, ARGV[8])
new_version(14)
return {{{OK}}, '1'}
