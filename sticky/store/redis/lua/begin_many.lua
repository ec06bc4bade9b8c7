-- begin_many: Store.begin_select for many recipients of one profile, in one script.
-- KEYS 1-13. ARGV: now, the caller's cached version, its capacity guess (as
-- begin_select.lua's), then the recipients.
-- Returns {UNKNOWN_PROFILE}, {OLD_LAYOUT}, or five entries per recipient (HIT, sender,
-- '', '', '' or OPTED_OUT, '', '', '', '' or MISS/CAPACITY, has previous, previous sender, previous last_used,
-- live), then 2n and n number, capacity state pairs, then the version[, settings,
-- pool...]. Each recipient's step is what begin_select does; the script makes the
-- whole chunk one atomic step, which is more than the protocol asks.
local p, refusal = current_profile()
if not p then
  return refusal
end
local now_s = ARGV[1]
local now = tonumber(now_s)
local capacity = begin_capacity(p, ARGV[2], ARGV[3])
local out = {}
for i = 4, #ARGV do
  local tag, a, b, c, d = begin_one(p, ARGV[i], now_s, now, capacity)
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5] = tag, a, b, c, d
end
return append_pool(append_loads(out, capacity), ARGV[2])
