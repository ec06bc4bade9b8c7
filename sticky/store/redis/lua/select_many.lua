-- select_many: OneStepBatchStore.select_many_in_one_step for one chunk of a batch's
-- distinct recipients, atomic (each recipient's select is select.lua's).
-- KEYS 1-13. ARGV: now, the geomatch mode the caller assumed, a token of the batch,
-- the offset of this chunk's first draw ('' for "where the previous chunk of this
-- pipeline left it", read from the batch hash, KEYS[10], under the token), '1' if no
-- chunk of this pipeline follows, the stride of the recipients' arguments (1: to; 5: to and its
-- four tier fields, '-' where it has no key), the number of draws, for capacity the
-- time zone, day, next day's start and segments (as select.lua's), the draws, then
-- the recipients.
-- Fresh choices use the draws in order, one each, so the i-th fresh choice of the
-- batch uses its i-th draw, as one-by-one selects would: a chunk that follows another
-- in a pipeline takes its offset from the one before (KEYS[10]), and does nothing if
-- that one did not finish (SKIPPED).
-- An opted-out recipient is skipped: it uses no draw, and its entries are reason 0,
-- '', '', ''.
-- Returns {OK, draws used, '', '', '', then reason, sender, tier, send_at per
-- recipient} (reason STICKY for a hit, honoured; send_at '' with capacity off), or
-- {NO_ELIGIBLE, EXHAUSTED or BUSY, draws used, retry_at, busy sticky sender,
-- max_queue, the same for the recipients before the one that was refused},
-- {SKIPPED}, {UNKNOWN_PROFILE}, {OLD_LAYOUT} or STALE (see stale_choice: nothing
-- written).
local p, refusal = current_profile()
if not p then
  return refusal
end
local now_s, mode, token, chained = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == ''
local last, stride, ndraws = ARGV[5] == '1', tonumber(ARGV[6]), tonumber(ARGV[7])
local offset
if chained then
  offset = redis.call('HGET', KEYS[10], token)
  if not offset then
    return {{{SKIPPED}}}
  end
  offset = tonumber(offset)
else
  offset = tonumber(ARGV[4])
end
-- Judged before any write: a refusal must leave the chunk untouched.
local c = redis.call('HMGET', KEYS[9], 'v', 'mode', 'w', '*')
local cap, stale
if choice_is_current(p, c, mode) then
  if p.cap ~= '0' then -- capacity on, or not known yet
    local x = redis.call('HMGET', KEYS[9], 'cap', 'lim')
    cap, stale = capacity_of(p, c, x[1], x[2], ARGV[8], ARGV[9], ARGV[10], ARGV[11])
  end
else
  cap, stale = false, stale_choice(p, c)
end
if cap == false then
  if chained then
    redis.call('HDEL', KEYS[10], token)
  end
  return stale
end
local now = tonumber(now_s)
local n0 = p.n
p.defer = true -- meta's count written once, by flush_count
local out = {{{OK}}, 0, '', '', ''}
local used = 0
for i = 12 + ndraws, #ARGV, stride do
  local to = ARGV[i]
  local n = #out
  local reason, sender, tier, send_at
  if opted_out(to) then
    reason, sender, tier, send_at = 0, '', '', ''
  elseif cap then
    if stride > 1 then
      local g = redis.call('HMGET', KEYS[9], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
      c[5], c[6], c[7], c[8] = g[1], g[2], g[3], g[4]
    end
    local kind
    kind, sender, reason, tier, send_at = select_capacity(p, cap, c, to,
      tonumber(ARGV[12 + offset + used]), now_s, now)
    if kind ~= true then
      out[1], out[2], out[3], out[4] = kind, used, sender or '', reason or ''
      if cap.cfg.max_queue then
        out[5] = num_text(cap.cfg.max_queue)
      end
      if chained or not last then
        redis.call('HDEL', KEYS[10], token)
      end
      return flush_count(p, n0, out)
    end
    if reason ~= STICKY then
      used = used + 1
    end
  else
    local old
    reason, old = hit_or_reason(p, to, now_s, now)
    send_at = ''
    if reason == STICKY then
      sender, tier = old, 0
    else
      if stride > 1 then
        local g = redis.call('HMGET', KEYS[9], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
        c[5], c[6], c[7], c[8] = g[1], g[2], g[3], g[4]
      end
      sender, tier = fresh(p, c, old, tonumber(ARGV[12 + offset + used]), now_s, now)
      if not sender then
        out[1], out[2] = {{NO_ELIGIBLE}}, used
        if chained or not last then
          redis.call('HDEL', KEYS[10], token)
        end
        return flush_count(p, n0, out)
      end
      used = used + 1
    end
  end
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = reason, sender, tier, send_at
end
out[2] = used
if not last then
  redis.call('HSET', KEYS[10], token, offset + used)
elseif chained then
  redis.call('HDEL', KEYS[10], token)
end
return flush_count(p, n0, out)
