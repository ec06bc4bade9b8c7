-- forget: delete the mapping of `to` (Store.forget), atomic.
-- KEYS 1-7. ARGV: to, now. Returns {UNKNOWN_PROFILE}, {OLD_LAYOUT} or {OK, '1'/'0'}:
-- whether it was live.
local p, refusal = current_profile()
if not p then
  return refusal
end
local now_s = ARGV[2]
if forget_one(p, ARGV[1], now_s, tonumber(now_s)) then
  return {{{OK}}, '1'}
end
return {{{OK}}, '0'}
