-- record_delivery: one delivery report added to a number's window, atomic.
-- KEYS 1-13 of the owning profile. ARGV: number, incarnation (from the owner key), the
-- pool version the caller's settings are of (its bucket was computed with their
-- health_window), the report's bucket, its outcome's place in a window entry (2
-- delivered, 3 failed, 4 spam), a token of the report.
-- A report re-sent with the same token (its reply lost) is not counted again.
-- Returns {OK, window} (the window as stored now, which the caller judges: the verdict
-- is in the entry of that version), {OWNER_MOVED} (see set_health.lua),
-- {OLD_LAYOUT} or {STALE, version, settings, pool...} (nothing written).
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
  return {{{OK}}, v} -- this very report, sent again: counted once
end
local w = add_outcome(parse_window(v), tonumber(ARGV[4]), tonumber(ARGV[5]))
v = window_text(token, w)
redis.call('HSET', KEYS[13], number, v)
return {{{OK}}, v}
