-- select: a whole select in one step (OneStepStore.select_in_one_step), atomic.
-- KEYS 1-13. ARGV: to, now, a draw in [0, 1), the geomatch mode the caller assumed,
-- then for capacity the time zone the caller computed the day in ('' if it thinks
-- capacity is off), that day's ordinal, the next day's start and the segments, then the
-- recipient's four tier fields of the choice hash ('-' where it has no key). Arguments
-- past the time zone may be left out when their value is not needed (capacity off, the
-- tiers of a mode 'off'): the common select sends five.
-- Returns {OPTED_OUT} (the recipient is opted out: nothing written, the draw not
-- used), {HIT, sender[, send_at]} (a sticky hit, honoured), {CHOSEN, sender, reason,
-- tier[, send_at]} (a fresh choice or an overflow that used the draw, stored unless
-- the reason is POOL), {NO_ELIGIBLE} (no eligible number: nothing written, the draw
-- not used), {EXHAUSTED, retry_at} or {BUSY, retry_at, sticky sender or '', max_queue}
-- (capacity refused: nothing written), {UNKNOWN_PROFILE}, {OLD_LAYOUT}, or STALE (see
-- stale_choice: nothing written). send_at comes with capacity on only.
-- With capacity off (meta's `cap` is '0') a select reads no more than without it.
local p, refusal = current_profile()
if not p then
  return refusal
end
local to, now_s = ARGV[1], ARGV[2]
if opted_out(to) then
  return {{{OPTED_OUT}}}
end
local now = tonumber(now_s)
local c, judged
if p.cap ~= '0' then -- capacity on, or not known yet
  -- made here, not above: a hit with capacity off (the common one) makes no closure
  local t1, t2, t3, t4 = ARGV[9] or '-', ARGV[10] or '-', ARGV[11] or '-', ARGV[12] or '-'
  local function answer(cap, kind, sender, reason, tier, send_at)
    if kind == {{NO_ELIGIBLE}} then
      return {kind}
    elseif kind ~= true then
      return {kind, sender, reason or '', cap.cfg.max_queue and num_text(cap.cfg.max_queue) or ''}
    elseif reason == STICKY then
      return {{{HIT}}, sender, send_at}
    end
    return {{{CHOSEN}}, sender, reason, tier, send_at}
  end
  -- A sticky recipient that keeps its number (no max_wait to weigh) needs the
  -- capacity settings and its sender's state alone, not the groups a choice draws from.
  local head = redis.call('HMGET', KEYS[9], 'v', 'cap', 'lim')
  if head[1] == version_of(p) and head[2] and head[2] ~= '0' and ARGV[5] == p.cap then
    local cap = capacity_of(p, head, head[2], head[3], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
    if not cap.cfg.max_wait then
      judged = {judge_capacity(p, to, now_s, now)} -- a miss keeps it for the plan below
      if judged[1] then
        return answer(cap, select_capacity(p, cap, nil, to, 0, now_s, now, judged))
      end
    end
  end
  c = redis.call('HMGET', KEYS[9], 'v', 'mode', 'w', '*', t1, t2, t3, t4,
    'cap', 'lim')
  if not choice_is_current(p, c, ARGV[4]) then
    return stale_choice(p, c)
  end
  local cap, stale = capacity_of(p, c, c[9], c[10], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
  if cap == false then
    return stale
  end
  if cap then
    return answer(cap, select_capacity(p, cap, c, to, tonumber(ARGV[3]), now_s, now, judged))
  end
end
local reason, old = hit_or_reason(p, to, now_s, now)
if reason == STICKY then
  return {{{HIT}}, old}
end
if not c then
  c = redis.call('HMGET', KEYS[9], 'v', 'mode', 'w', '*', ARGV[9] or '-', ARGV[10] or '-',
    ARGV[11] or '-', ARGV[12] or '-')
  if not choice_is_current(p, c, ARGV[4]) then
    return stale_choice(p, c)
  end
end
local sender, tier = fresh(p, c, old, tonumber(ARGV[3]), now_s, now)
if not sender then
  return {{{NO_ELIGIBLE}}}
end
return {{{CHOSEN}}, sender, reason, tier}
