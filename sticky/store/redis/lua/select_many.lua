-- select_many: OneStepBatchStore.select_many_in_one_step for one chunk of a batch's
-- distinct recipients, atomic (each recipient's select is select.lua's).
-- KEYS 1-10. ARGV: now, the geomatch mode the caller assumed, a token of the batch,
-- the offset of this chunk's first draw ('' for "where the previous chunk of this
-- pipeline left it", read from the batch hash, KEYS[10], under the token), '1' if no
-- chunk of this pipeline follows, the stride of the recipients' arguments (1: to; 5: to and its
-- four tier fields, '-' where it has no key), the number of draws, the draws, then
-- the recipients.
-- Fresh choices use the draws in order, one each, so the i-th fresh choice of the
-- batch uses its i-th draw, as one-by-one selects would: a chunk that follows another
-- in a pipeline takes its offset from the one before (KEYS[10]), and does nothing if
-- that one did not finish (SKIPPED).
-- Returns {OK, draws used, then reason, sender, tier per recipient} (reason STICKY for
-- a hit, honoured), {NO_ELIGIBLE, draws used, the same for the recipients before the
-- one that found no eligible number}, {SKIPPED}, {UNKNOWN_PROFILE}, {OLD_LAYOUT} or
-- STALE (see stale_choice: nothing written).
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
if not choice_is_current(p, c, mode) then
  if chained then
    redis.call('HDEL', KEYS[10], token)
  end
  return stale_choice(p, c)
end
local now = tonumber(now_s)
local out = {{{OK}}, 0}
local used = 0
for i = 8 + ndraws, #ARGV, stride do
  local to = ARGV[i]
  local reason, old = hit_or_reason(p, to, now_s, now)
  local n = #out
  if reason == STICKY then
    out[n + 1], out[n + 2], out[n + 3] = STICKY, old, 0
  else
    if stride > 1 then
      local g = redis.call('HMGET', KEYS[9], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
      c[5], c[6], c[7], c[8] = g[1], g[2], g[3], g[4]
    end
    local sender, tier = fresh(p, c, to, old, tonumber(ARGV[8 + offset + used]), now_s, now)
    if not sender then
      out[1], out[2] = {{NO_ELIGIBLE}}, used
      if chained or not last then
        redis.call('HDEL', KEYS[10], token)
      end
      return out
    end
    used = used + 1
    out[n + 1], out[n + 2], out[n + 3] = reason, sender, tier
  end
end
out[2] = used
if not last then
  redis.call('HSET', KEYS[10], token, offset + used)
elseif chained then
  redis.call('HDEL', KEYS[10], token)
end
return out
