-- record_reply: a reply from a recipient to one of our numbers (Store.record_reply),
-- atomic. KEYS 1-13. ARGV: to, number, now, the keyword ('out', 'in' or ''), the pool
-- version the caller computed the actions at, then policy.reply_action's answer at
-- that version for each case of the recipient's live mapping: to the number, to another
-- number, none; then the time zone the caller computed the day in and that day's
-- ordinal (as pin.lua's). The rule is Python's: this script only finds which case
-- holds (liveness judged at judged_at) and applies its action: REFRESHED refreshes as a
-- hit does, MOVED and MAPPED store (number, now) as pin does (with capacity on,
-- counting a new recipient of the number on that day).
-- Returns {UNKNOWN_PROFILE}, {OLD_LAYOUT}, {OPTED_OUT}, STALE (the version moved on, or the
-- capacity data is not current: see stale_choice; nothing written) or {OK, action}.
local p, refusal = current_profile()
if not p then
  return refusal
end
local to, number, now_s, keyword = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = tonumber(now_s)
if keyword == 'out' then
  forget_one(p, to, now_s, now)
  redis.call('SADD', KEYS[12], to)
  return {{{OPTED_OUT}}}
end
if version_of(p) ~= ARGV[5] then
  local c = redis.call('HMGET', KEYS[9], 'v', 'mode')
  return stale_choice(p, c)
end
local m = lookup(p, to)
local action = ARGV[8]
if m.sid then
  local _, at = judged_at(p, now_s, now)
  if is_live(m.lu, p.ttl, at) then
    if m.sender == number then
      action = ARGV[6]
    else
      action = ARGV[7]
    end
  end
end
local moves = action == {{A_MOVED}} or action == {{A_MAPPED}}
if moves then
  local stale = stale_capacity(p, ARGV[9])
  if stale then
    return stale
  end
end
if keyword == 'in' then
  redis.call('SREM', KEYS[12], to)
elseif opted_out(to) then
  return {{{OPTED_OUT}}}
end
if action == {{A_REFRESHED}} then
  honour(p, m, now_s, now)
elseif moves then
  if p.cap ~= '0' then
    local load = parse_load(redis.call('HGET', KEYS[11], number))
    write_load({}, number, count_new(load, tonumber(ARGV[10])))
  end
  store_fresh(p, m, number, now_s, now)
end
return {{{OK}}, action}
