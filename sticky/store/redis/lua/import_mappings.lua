-- import_mappings: store imported mappings (BulkImportStore.import_mappings), atomic.
-- KEYS 1-7. ARGV: now, the count s of senders to check, s senders (every sender of the
-- whole import call, so that each chunk refuses alike), then (to, sender, last_used)
-- triples. Returns {UNKNOWN_PROFILE}, {OLD_LAYOUT}, {NOT_IN_POOL, number} (nothing
-- written) or {OK, written}.
--
-- Liveness is judged at judged_at(now), and the horizon moves there (an import can
-- replace mappings). An entry dead there is skipped, and so is one whose recipient's
-- stored mapping is live and used as recently or later; the others are stored with
-- their own last_used and the index key min(last_used, at) (at most its last use, and
-- never after the horizon). Capacity state is not touched; no eviction step is taken.
local p, refused = current_profile()
if not p then
  return refused
end
local senders = tonumber(ARGV[2])
for i = 3, 2 + senders do
  if redis.call('HEXISTS', KEYS[3], ARGV[i]) == 0 then
    return {{{NOT_IN_POOL}}, ARGV[i]}
  end
end
local now_s = ARGV[1]
local at_s, at = move_horizon(p, now_s, tonumber(now_s))
local ttl = p.ttl
-- The queue's tail key, kept as entries are appended: index keys that arrive in order
-- go to the queue, the others to `late` (as put does).
local tail = redis.call('LINDEX', KEYS[5], -1)
local tail_key = false
if tail then
  tail_key = tonumber(string.sub(tail, 1, string.find(tail, ' ', 1, true) - 1))
end
local due = false
if p.due_s and p.due_s ~= 'none' then
  due = tonumber(p.due_s)
end
-- `late` members' sequence numbers (as put takes them), counted here, stored once.
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local seq_0 = seq
local written = 0
for i = 3 + senders, #ARGV, 3 do
  local to, sender, lu_s = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local lu = tonumber(lu_s)
  if is_live(lu, ttl, at) then
    local old = redis.call('HGET', KEYS[2], to)
    local keep = false
    local old_sender
    if old then
      local old_lu_s, _, sender_was = parse_mapping(old)
      old_sender = sender_was
      local old_lu = tonumber(old_lu_s)
      keep = old_lu >= lu and is_live(old_lu, ttl, at)
    end
    if not keep then
      local idx_s, idx = lu_s, lu
      if lu > at then
        idx_s, idx = at_s, at
      end
      if old then
        redis.call('ZREM', KEYS[7], old_sender .. NUL .. to)
      end
      redis.call('HSET', KEYS[2], to, lu_s .. ' ' .. idx_s .. ' ' .. sender)
      redis.call('ZADD', KEYS[7], 0, sender .. NUL .. to)
      if (not tail_key) or tail_key <= idx then
        redis.call('RPUSH', KEYS[5], idx_s .. ' ' .. to)
        tail_key = idx
      else
        seq = seq + 1
        redis.call('ZADD', KEYS[6], idx_s, to .. NUL .. string.format('%d', seq))
      end
      -- keep meta's `due` a lower bound of every index key (see set_due)
      if p.due_s == 'none' or (due and idx < due) then
        set_due(p, idx_s)
        due = idx
      end
      written = written + 1
    end
  end
end
if seq ~= seq_0 then
  redis.call('HINCRBY', KEYS[1], 'seq', seq - seq_0)
end
return {{{OK}}, written}
