-- import_mappings: store imported mappings (BulkImportStore.import_mappings), atomic.
-- KEYS 1-7. ARGV: now, the count s of senders to check, s senders (every sender of the
-- whole import call, so that each chunk refuses alike), then (to, sender, last_used)
-- triples. Returns {UNKNOWN_PROFILE}, {OLD_LAYOUT}, {NOT_IN_POOL, number} (nothing
-- written) or {OK, written}.
--
-- Liveness is judged at judged_at(now), and the horizon moves there (an import can
-- replace mappings). An entry dead there is skipped, and so is one whose recipient's
-- stored mapping is live and used as recently or later; the others are stored with
-- their own last_used. Capacity state is not touched; no eviction step is taken.
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
local _, at = move_horizon(p, now_s, tonumber(now_s))
local ttl = p.ttl
local written, n = 0, p.n
p.defer = true -- meta's count written once, below
for i = 3 + senders, #ARGV, 3 do
  local to, sender, lu_s = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local lu = tonumber(lu_s)
  if is_live(lu, ttl, at) then
    local m = lookup(p, to)
    if not (m.sid and m.lu >= lu and is_live(m.lu, ttl, at)) then
      put(p, m, sender, lu_s)
      written = written + 1
    end
  end
end
if p.n ~= n then
  redis.call('HSET', KEYS[1], 'n', p.n)
end
return {{{OK}}, written}
