-- common.lua: helpers shared by sticky's Redis scripts; prepended to each of them.
--
-- One helper per rule of docs/semantics.md, as sticky.policy has one function per
-- rule: is_live (liveness), judged_at (the horizon), eligible (eligibility for a fresh
-- choice, stored as data by Python), keeps (the sticky side: may_keep as data and the
-- drain's deadline), judge (the sticky hit), refreshed (never younger), pick and
-- choose (the fresh choice), for capacity next_slot, new_today, has_budget,
-- count_new, reserve, choose_among and plan, and add_outcome (a delivery report in
-- its window) (see docs/rules.md). Scripts call
-- them and spell out none of these rules. Placeholders (a NAME in double braces) are
-- constants defined once in Python (sticky/store/redis/scripts.py: the reply tags,
-- the eviction step, the layout version), substituted when the scripts are read.
--
-- KEYS of a profile's scripts always sit at these positions (see profile_keys); all of
-- them share the profile's {hash tag}:
--   1 meta (hash)  2 map (the buckets' prefix, see the mapping table)  3 pool (hash)
--   4 ver (string)  5 due (zset: the expiry index)  6 ids (hash: the sender ids)
--   7 rev (the reverse index's prefix)  8 claims (hash)
--   9 choice (hash: what a fresh choice needs, see pick)  10 batch (hash: the draw
--   offsets of batches in flight, see select_many.lua)  11 cap (hash: number ->
--   "<tat> <floor> <day> <count>", its capacity state; absent: IDLE)
--   12 optout (set: the opted-out recipients)  13 health (hash: number ->
--   "<token>;<bucket> <delivered> <failed> <spam>;...", its delivery window)
--   14 queue and 15 late: layout 2's expiry index, for migrate_map.lua (KEYS[2] and
--   KEYS[7] are then also layout 2's table and reverse index)

-- Times and ttls arrive as Python repr() strings. They are compared as doubles
-- (tonumber, the same IEEE arithmetic as Python) and stored as the very strings
-- received: Lua's tostring keeps 14 digits only, so no script ever formats a float.
-- A mapping is stored as "<sid> <last_used>" (see the mapping table); a pool entry as
-- "<L|T><h><k><e><d>": type, health, kept (a live mapping to it may stay), eligible
-- (for a fresh choice), delivery health, then " <rate> <budget>" and, while it drains,
-- " <since> <grace>", which Python reads (Lua reads limits from the choice data), and
-- " @<deadline>" when the drain has a grace, which keeps reads. An entry written
-- before drains existed is "<L|T><h><k>" (kept and eligible were one flag).
-- meta's `cap` says whether capacity is on at the current pool version: '0' (off),
-- the profile's time zone (on), or absent (not known: the choice data is not stored;
-- store_choice writes both together).

-- The KEYS of a profile's script: it is given its meta key alone, and names the others
-- from it, as keys.ORDER (then keys.OLD) orders them, on first use.
local KEY_NAMES = {{{KEY_NAMES}}}
local KEY_OF = {__index = function(t, i)
  local key = t[0] .. KEY_NAMES[i]
  rawset(t, i, key)
  return key
end}

local function profile_keys(meta)
  return setmetatable({[0] = string.sub(meta, 1, -5), meta}, KEY_OF)
end

-- judge()'s verdicts, as policy.judge's, and the other reasons a select replies
local STICKY, REASSIGNED, EXPIRED = {{R_STICKY}}, {{R_REASSIGNED}}, {{R_EXPIRED}}
local NEW, POOL, OVERFLOW = {{R_NEW}}, {{R_POOL}}, {{R_OVERFLOW}}

-- The table's size: nb buckets, low = 2^L <= nb < 2^(L+1) (see the mapping table).
local function low_of(nb)
  -- nb = f * 2^e with 0.5 <= f < 1, exactly for an integer: low = 2^(e - 1), one call
  -- where a doubling loop took one step a doubling (every select loads it)
  local _, e = math.frexp(nb)
  return 2 ^ (e - 1)
end

local function set_buckets(p, nb)
  p.nb, p.low = nb, low_of(nb)
end

-- t[name], a table made on first use (the caches of one script).
local function table_in(t, name)
  local v = t[name]
  if not v then
    v = {}
    t[name] = v
  end
  return v
end

-- The profile's ttl, sticky flag, horizon, layout, capacity flag and its table's size
-- (stored mappings n, buckets nb), or nil when it does not exist. One HMGET, and one
-- table constructor: every select loads it, so each field set after it (the table
-- growing) or each helper called would be server time on every hit.
local function load_profile()
  local m = redis.call('HMGET', KEYS[1], 'ttl', 'sticky', 'horizon', 'layout', 'cap', 'n', 'nb')
  local ttl_s = m[1]
  if not ttl_s then
    return nil
  end
  local horizon_s, nb = m[3], tonumber(m[7] or '1')
  -- sids and numbers (the sender ids' cache, see sid_of) are made on first use
  return {
    ttl_s = ttl_s,
    ttl = tonumber(ttl_s),
    sticky = m[2] == '1',
    horizon_s = horizon_s or false,
    horizon = horizon_s and tonumber(horizon_s) or -math.huge,
    current = m[4] == {{LAYOUT}}, -- else an older layout, which the caller migrates first
    cap = m[5] or false,
    n = tonumber(m[6] or '0'),
    nb = nb,
    low = low_of(nb),
  }
end

-- policy.is_live: a mapping is live while at < last_used + ttl.
local function is_live(last_used, ttl, at)
  return at < last_used + ttl
end

-- policy.judged_at: liveness is judged at max(now, horizon). Returns it as a string
-- and a double.
local function judged_at(p, now_s, now)
  if p.horizon > now then
    return p.horizon_s, p.horizon
  end
  return now_s, now
end

-- A write that can evict or replace a mapping moves the horizon to judged_at. `...`:
-- more meta field, value pairs, written in the same HSET (alone when the horizon stays).
local function move_horizon(p, now_s, now, ...)
  local at_s, at = judged_at(p, now_s, now)
  if at ~= p.horizon then
    redis.call('HSET', KEYS[1], 'horizon', at_s, ...)
    p.horizon_s, p.horizon = at_s, at
  elseif select('#', ...) > 0 then
    redis.call('HSET', KEYS[1], ...)
  end
  return at_s, at
end

-- policy.is_eligible, as data: the flag Python computed for this pool version (the
-- fourth character of the entry; the third in an entry written before drains, where
-- one flag said both); false for a number not in the pool.
local function eligible(entry)
  if not entry then
    return false
  end
  local e = string.byte(entry, 4)
  if e == 49 or e == 48 then
    return e == 49 -- '1'
  end
  return string.byte(entry, 3) == 49
end

-- policy.keeps, as data: whether a live mapping to the number of `entry` is honoured
-- at `now`: its kept flag (policy.may_keep, computed in Python: the third character)
-- and, when its drain has a grace, now before the deadline (policy.drain_deadlines,
-- the entry's "@" field); false for a number not in the pool.
local function keeps(entry, now)
  if not entry or string.byte(entry, 3) ~= 49 then
    return false
  end
  local at = string.find(entry, '@', 4, true)
  return not at or now < tonumber(string.sub(entry, at + 1))
end

-- policy.judge: what a mapping (last_used, sender) means for a sticky select at `now`,
-- judged at judged_at(now): STICKY (live, kept sender: honoured), REASSIGNED (live,
-- not kept) or EXPIRED (dead).
local function judge(p, last_used, sender, now_s, now)
  local _, at = judged_at(p, now_s, now)
  if not is_live(last_used, p.ttl, at) then
    return EXPIRED
  end
  if keeps(redis.call('HGET', KEYS[3], sender), now) then
    return STICKY
  end
  return REASSIGNED
end

-- Whether `to` is opted out of the profile (every select checks it first).
local function opted_out(to)
  return redis.call('SISMEMBER', KEYS[12], to) == 1
end

-- policy.refreshed: a sticky hit's last_used, never younger; and whether it changed.
local function refreshed(lu_s, lu, now_s, now)
  if now > lu then
    return now_s, true
  end
  return lu_s, false
end

-- -- the mapping table ----------------------------------------------------------
-- A profile's mappings live in `nb` buckets, the hashes KEYS[2] .. ':' .. b: recipient
-- -> "<sid> <last_used>", where sid is the sender's small id in the profile (KEYS[6],
-- `ids`: number -> sid, '#' .. sid -> number, '#' -> the last id given). Small hashes
-- stay listpack-encoded: a mapping costs its two strings and a few bytes. Buckets grow
-- by linear hashing: a recipient's bucket is its hash h mod 2^(L+1), or mod 2^L where
-- that bucket is not split yet (2^L <= nb < 2^(L+1)); when the profile holds more than
-- BUCKET_LOAD mappings per bucket, the next bucket in turn splits in two (one bucket's
-- work, never a rehash of the whole table). meta's `n` counts the stored mappings.
-- Two indexes, one entry per bucket, not per mapping:
--   KEYS[5] `due` (zset): each non-empty bucket scored by a lower bound of its mappings'
--   last_used (the expiry index: the smallest score says which bucket may hold the
--   oldest dead mapping);
--   KEYS[7] .. ':' .. sid (bitmap, the reverse index): bit b set when bucket b may
--   hold a mapping to that sender; set by every write of one, cleared when a scan of
--   the bucket (an eviction, a split) finds none; remove_number deletes its bitmap.

local BUCKET_LOAD = {{BUCKET_LOAD}} -- mappings per bucket before the next one splits
local STEP_BUCKETS = {{STEP_BUCKETS}} -- due buckets a write that stores a mapping cleans, at most

-- The recipient's 32-bit hash (keys.bucket_hash in Python). An E.164 number ('+' and at
-- most 15 digits: exact as a double) is its digits as an integer, mod 2^32: every digit
-- moves the low bits that pick a bucket, and it costs a tonumber (a SHA-1 costs about ten
-- times as much). Any other text: the first 32 bits of its SHA-1.
local function hash_of(to)
  if #to <= 16 and string.find(to, '^%+%d+$') then
    return tonumber(string.sub(to, 2)) % 4294967296
  end
  return tonumber(string.sub(redis.sha1hex(to), 1, 8), 16)
end

-- Linear hashing: the bucket of hash h among nb buckets (low = 2^L <= nb < 2 * low).
local function bucket_of(h, nb, low)
  local b = h % (low * 2)
  if b >= nb then
    return h % low
  end
  return b
end

local function bucket_key(b)
  return KEYS[2] .. ':' .. string.format('%d', b)
end

local function rev_key(sid)
  return KEYS[7] .. ':' .. sid
end

local function parse_value(v)
  local sid, lu_s = string.match(v, '^(%S+) (.*)$') -- one call, where find and two subs took three
  return sid, lu_s, tonumber(lu_s)
end

-- The number of sender id `sid` (cached in p for the script).
local function number_of(p, sid)
  local numbers = table_in(p, 'numbers')
  local n = numbers[sid]
  if not n then
    n = redis.call('HGET', KEYS[6], '#' .. sid)
    numbers[sid] = n
  end
  return n
end

-- The id of `number` in the profile, given it one if it has none and `create`.
local function sid_of(p, number, create)
  local sids = table_in(p, 'sids')
  local sid = sids[number]
  if sid then
    return sid
  end
  sid = redis.call('HGET', KEYS[6], number)
  if not sid and create then
    sid = string.format('%d', redis.call('HINCRBY', KEYS[6], '#', 1))
    redis.call('HSET', KEYS[6], number, sid, '#' .. sid, number)
  end
  if sid then
    sids[number], table_in(p, 'numbers')[sid] = sid, number
  end
  return sid
end

-- The mapping of `to`: a table m with its place (m.b, m.key, m.nb) and, when it has
-- one, m.sid, m.sender, m.lu_s, m.lu. One HGET (and the sender's name once a script).
local function lookup(p, to)
  local b = bucket_of(hash_of(to), p.nb, p.low)
  local key = bucket_key(b)
  local v = redis.call('HGET', key, to)
  if not v then
    return {to = to, b = b, key = key, nb = p.nb}
  end
  local sid, lu_s, lu = parse_value(v)
  -- one constructor with every field: filled in after, the table would grow twice
  return {to = to, b = b, key = key, nb = p.nb, sid = sid, lu_s = lu_s, lu = lu,
    sender = number_of(p, sid)}
end

-- Honour a sticky hit: at most one write (the mapping, when last_used changes); a hit
-- evicts nothing, so the horizon stays, and `due` stays a lower bound.
local function honour(p, m, now_s, now)
  local new_s, changed = refreshed(m.lu_s, m.lu, now_s, now)
  if changed then
    redis.call('HSET', m.key, m.to, m.sid .. ' ' .. new_s)
    m.lu_s, m.lu = new_s, now
  end
end

-- Scan bucket b (its key `key`), keeping the entries `keep(to, sid, lu)` says to keep;
-- the others are deleted in one HDEL and handed to `drop(to, sid, v)` when given. Clears
-- the reverse-index bits of senders it no longer holds and sets its `due` score to the
-- least last_used it keeps (or drops it when empty). Returns how many it deleted.
-- O(bucket), 4 commands and one a sender gone.
local function rescan(p, b, key, keep, drop)
  local flat = redis.call('HGETALL', key)
  local had, has, gone = {}, {}, {}
  local least_s, least = false, math.huge
  for i = 1, #flat, 2 do
    local to, v = flat[i], flat[i + 1]
    local sid, lu_s, lu = parse_value(v)
    had[sid] = true
    if keep(to, sid, lu) then
      has[sid] = true
      if lu < least then
        least_s, least = lu_s, lu
      end
    else
      gone[#gone + 1] = to
      if drop then
        drop(to, sid, v)
      end
    end
  end
  if #gone > 0 then
    redis.call('HDEL', key, unpack(gone))
  end
  for sid in pairs(had) do
    if not has[sid] then
      redis.call('SETBIT', rev_key(sid), b, 0)
    end
  end
  if least_s then
    redis.call('ZADD', KEYS[5], least_s, b)
  else
    redis.call('ZREM', KEYS[5], b)
  end
  return #gone
end

-- Split the next bucket in turn, s = nb - low: its recipients whose hash mod 2 * low is
-- nb move to the new bucket nb. O(bucket).
local function split(p)
  local s, t = p.nb - p.low, p.nb
  local from, to_key, width = bucket_key(s), bucket_key(t), p.low * 2
  local least_s, least = false, math.huge
  local moved, pairs_of = {}, {}
  rescan(p, s, from, function(to)
    return hash_of(to) % width ~= t
  end, function(to, sid, v)
    pairs_of[#pairs_of + 1], pairs_of[#pairs_of + 2] = to, v
    moved[sid] = true
    local _, lu_s, lu = parse_value(v)
    if lu < least then
      least_s, least = lu_s, lu
    end
  end)
  if #pairs_of > 0 then
    redis.call('HSET', to_key, unpack(pairs_of))
  end
  for sid in pairs(moved) do
    redis.call('SETBIT', rev_key(sid), t, 1)
  end
  if least_s then
    redis.call('ZADD', KEYS[5], least_s, t)
  end
  set_buckets(p, p.nb + 1)
  redis.call('HSET', KEYS[1], 'nb', p.nb)
end

-- Count `d` more (or fewer) stored mappings; a profile over its load splits a bucket.
-- Under p.defer (store_fresh, a batch, an import, a migration chunk) the caller writes
-- meta's `n` (see flush_count).
local function count(p, d)
  p.n = p.n + d
  if not p.defer then
    redis.call('HSET', KEYS[1], 'n', p.n)
  end
  if d > 0 and p.n > p.nb * BUCKET_LOAD then
    split(p)
  end
end

-- Store (sender, lu_s) for m.to, replacing its mapping if it has one. O(1) amortised.
local function put(p, m, sender, lu_s)
  if m.nb ~= p.nb then -- a split since the lookup may have moved it
    local b = bucket_of(hash_of(m.to), p.nb, p.low)
    m.b, m.key, m.nb = b, bucket_key(b), p.nb
  end
  local sid = sid_of(p, sender, true)
  if m.sid ~= sid then
    redis.call('SETBIT', rev_key(sid), m.b, 1)
  end
  local new = redis.call('HSET', m.key, m.to, sid .. ' ' .. lu_s)
  redis.call('ZADD', KEYS[5], 'LT', lu_s, m.b)
  m.sid, m.sender, m.lu_s, m.lu = sid, sender, lu_s, tonumber(lu_s)
  if p.live_at and not is_live(m.lu, p.ttl, p.live_at) then
    p.live_at = nil -- a mapping dead at once (a horizon far ahead): `due` may now say so
  end
  if new == 1 then
    count(p, 1)
  end
end

-- An emptied bucket leaves the expiry index (Redis deleted its hash).
local function unindex_if_empty(key, b)
  if redis.call('EXISTS', key) == 0 then
    redis.call('ZREM', KEYS[5], b)
  end
end

-- Delete the mapping m (it has one). The bucket's indexes stay bounds (the next scan of
-- the bucket tightens them); an empty bucket leaves the expiry index.
local function delete(p, m)
  redis.call('HDEL', m.key, m.to)
  unindex_if_empty(m.key, m.b)
  m.sid, m.sender, m.lu_s, m.lu = nil, nil, nil, nil
  count(p, -1)
end

-- Remove the mappings of bucket b dead at `at`. Returns how many.
local function clean(p, b, at)
  local ttl = p.ttl
  return rescan(p, b, bucket_key(b), function(_, _, lu)
    return is_live(lu, ttl, at)
  end)
end

-- Clean up to `max_buckets` buckets whose `due` score is dead at `at`, oldest first,
-- until `limit` mappings are removed. Returns removed, buckets cleaned.
-- p.live_at remembers a time at which `due`'s head was live: until a put stores a mapping
-- dead at it, nothing is (a scan only raises a bucket's bound, and a put lowers it to a
-- live last_used), so the next stores of the script skip the read.
local function evict(p, at, limit, max_buckets)
  local removed, cleaned = 0, 0
  if p.live_at == at then
    return 0, 0
  end
  while removed < limit and cleaned < max_buckets do
    local head = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
    if not head[1] or is_live(tonumber(head[2]), p.ttl, at) then
      p.live_at = at -- every bucket's least last_used is live: nothing is dead
      break
    end
    removed = removed + clean(p, tonumber(head[1]), at)
    cleaned = cleaned + 1
  end
  if removed > 0 then
    count(p, -removed)
    redis.call('HINCRBY', KEYS[1], 'evicted', removed)
  end
  return removed, cleaned
end

-- A fresh choice's store for the recipient of `m` (lookup's; see put), with the
-- amortised eviction step.
local function store_fresh(p, m, sender, now_s, now)
  local n, batch = p.n, p.defer
  p.defer = true -- one HSET of meta for the count and the horizon, not two
  put(p, m, sender, now_s)
  p.defer = batch
  local _, at
  if p.n ~= n and not batch then
    _, at = move_horizon(p, now_s, now, 'n', p.n)
  else
    _, at = move_horizon(p, now_s, now)
  end
  evict(p, at, math.huge, STEP_BUCKETS)
end

-- A batch's writes count under p.defer (from p.n = `n`); it writes meta's count once,
-- and returns `out`. Every reply of a batch script that may have written goes through it.
local function flush_count(p, n, out)
  if p.n ~= n then
    redis.call('HSET', KEYS[1], 'n', p.n)
  end
  return out
end

-- Store.forget's step: delete the mapping of `to` and move the horizon. Returns whether
-- it was live.
local function forget_one(p, to, now_s, now)
  local _, at = move_horizon(p, now_s, now)
  local m = lookup(p, to)
  if not m.sid then
    return false
  end
  local live = is_live(m.lu, p.ttl, at)
  delete(p, m)
  return live
end

-- Delete the whole table and its indexes (the sender ids stay). Returns the number
-- of live mappings it held at `at` (counted when `at` is given). O(n).
local function clear_mappings(p, at)
  local live, ttl = 0, p.ttl
  for b = 0, p.nb - 1 do
    local key = bucket_key(b)
    if at then
      for _, v in ipairs(redis.call('HVALS', key)) do
        local _, _, lu = parse_value(v)
        if is_live(lu, ttl, at) then
          live = live + 1
        end
      end
    end
    redis.call('UNLINK', key)
  end
  local ids = redis.call('HGETALL', KEYS[6])
  for i = 1, #ids, 2 do
    if string.byte(ids[i], 1) ~= 35 then -- '#': an id's own field
      redis.call('UNLINK', rev_key(ids[i + 1]))
    end
  end
  redis.call('UNLINK', KEYS[5])
  p.n = 0
  set_buckets(p, 1)
  redis.call('HSET', KEYS[1], 'n', 0, 'nb', 1)
  return live
end

-- Call fn(to, lu, bucket key) for every mapping to `number`: the buckets its reverse
-- index names, scanned. Returns its sid (nil: no mapping ever). O(k + buckets named).
local function each_of(p, number, fn)
  local sid = sid_of(p, number, false)
  if not sid then
    return nil
  end
  local key = rev_key(sid)
  local pos = redis.call('BITPOS', key, 1, 0, -1, 'BIT')
  while pos >= 0 do
    local bkey = bucket_key(pos)
    local flat = redis.call('HGETALL', bkey)
    for i = 1, #flat, 2 do
      local s, _, lu = parse_value(flat[i + 1])
      if s == sid then
        fn(flat[i], lu, bkey, pos)
      end
    end
    pos = redis.call('BITPOS', key, 1, pos + 1, -1, 'BIT')
  end
  return sid
end

-- The pool version, read once per script (no select step changes it).
local function version_of(p)
  if not p.version then
    p.version = redis.call('GET', KEYS[4])
  end
  return p.version
end

-- Whether a begin script's profile has capacity on: meta says so, or (not known, the
-- choice data not stored) the caller's guess `hint` ('1'/'0') for the version
-- `cached` it has, if that is current; else assumed on (the reply then carries the
-- data, and the caller asks again if its guess was wrong): a begin never honours a
-- hit of a profile with capacity on.
local function begin_capacity(p, cached, hint)
  if p.cap then
    return p.cap ~= '0'
  end
  return not (cached == version_of(p) and hint == '0')
end

-- Store.begin_select for one recipient. Returns OPTED_OUT (nothing read or written),
-- HIT, sender for a sticky hit (honoured), else MISS, has previous, previous sender, previous last_used, live ('1'/'0'),
-- changing nothing. With capacity on (`capacity`), never a hit: CAPACITY, then the same
-- with live 's' for a live mapping to an eligible sender (a select may stay sticky).
local function begin_one(p, to, now_s, now, capacity)
  if opted_out(to) then
    return {{OPTED_OUT}}, '', '', '', ''
  end
  if p.sticky then
    local m = lookup(p, to)
    if m.sid then
      local sender, lu_s = m.sender, m.lu_s
      local verdict = judge(p, m.lu, sender, now_s, now)
      if capacity then
        local live = '0'
        if verdict == STICKY then
          live = 's'
        elseif verdict == REASSIGNED then
          live = '1'
        end
        return {{CAPACITY}}, '1', sender, lu_s, live
      end
      if verdict == STICKY then
        honour(p, m, now_s, now)
        return {{HIT}}, sender, '', '', ''
      end
      if verdict == REASSIGNED then
        return {{MISS}}, '1', sender, lu_s, '1'
      end
      return {{MISS}}, '1', sender, lu_s, '0'
    end
  end
  if capacity then
    return {{CAPACITY}}, '0', '', '', '0'
  end
  return {{MISS}}, '0', '', '', '0'
end

-- Append the count of `loads` entries and, with capacity on, every number's capacity
-- state (number, state pairs) to `out`.
local function append_loads(out, capacity)
  local n = #out
  if not capacity then
    out[n + 1] = 0
    return out
  end
  local flat = redis.call('HGETALL', KEYS[11])
  out[n + 1] = #flat
  for i = 1, #flat do
    out[n + 1 + i] = flat[i]
  end
  return out
end

-- Store.commit_select for one recipient: store (chosen, now) if the pool version, the
-- stored mapping and its liveness are still what begin_one read. Returns OPTED_OUT
-- (opted out since the read: nothing stored), STORED, HIT,
-- sender (another select stored a live kept mapping: honoured), START_OVER, or
-- NOT_ELIGIBLE (the version matches but `chosen` is not eligible in it: the caller's
-- cache is not of this data; nothing stored).
local function commit_one(p, to, chosen, has, prev_sender, prev_lu, live, version, now_s, now)
  if opted_out(to) then
    return {{OPTED_OUT}}, ''
  end
  local _, at = judged_at(p, now_s, now)
  local m = lookup(p, to)
  local lu_s, sender, lu = m.lu_s, m.sender, m.lu
  -- No mapping matches no previous one, and also a dead previous one evicted since (by
  -- an earlier commit of the same batch, say): either way no live mapping came between.
  local current_live, same = false, has == '0' or live == '0'
  if m.sid then
    current_live = is_live(lu, p.ttl, at)
    -- last_used strings are repr() of a double: equal strings iff equal doubles
    same = has == '1' and sender == prev_sender and lu_s == prev_lu
  end
  if same and current_live == (live == '1') and version_of(p) == version then
    if not eligible(redis.call('HGET', KEYS[3], chosen)) then
      return {{NOT_ELIGIBLE}}, ''
    end
    store_fresh(p, m, chosen, now_s, now)
    return {{STORED}}, ''
  end
  if m.sid and p.sticky and judge(p, lu, sender, now_s, now) == STICKY then
    honour(p, m, now_s, now)
    return {{HIT}}, sender
  end
  return {{START_OVER}}, ''
end

-- Append the version to `out` and, when it differs from the caller's cached one, the
-- settings and the pool (settings JSON, then number, entry pairs).
local function append_pool(out, cached)
  local version = redis.call('GET', KEYS[4])
  out[#out + 1] = version
  if version ~= cached then
    out[#out + 1] = redis.call('HGET', KEYS[1], 'settings')
    local pool = redis.call('HGETALL', KEYS[3])
    local n = #out
    for i = 1, #pool do
      out[n + i] = pool[i]
    end
  end
  return out
end

-- The profile, for a script that needs the current layout: p, or nil and the reply
-- that says why not (no such profile, or a 0.1 layout the caller migrates first).
local function current_profile()
  local p = load_profile()
  if not p then
    return nil, {{{UNKNOWN_PROFILE}}}
  end
  if not p.current then
    return nil, {{{OLD_LAYOUT}}}
  end
  return p
end

-- Whether meta says the current layout (for scripts that do not load_profile).
local function layout_is_current()
  return redis.call('HGET', KEYS[1], 'layout') == {{LAYOUT}}
end

-- Chooser._Group.pick: the number at r in [0, 1) of a group's cumulative weights, with
-- the same float arithmetic in the same order as Python's (so the same r gives the
-- same number), clamped to the last one where r * total / w rounds up to the count.
-- A group is "<n_long> <n_toll> <width> " then its numbers (long codes, then toll-free,
-- each sorted by number), each padded with spaces to width. `h`: the group's header
-- (see header), when the caller has it.
local function header(group)
  local nl, nt, width, at = string.match(group, '^(%d+) (%d+) (%d+) ()')
  return {tonumber(nl), tonumber(nt), tonumber(width), at}
end

local function pick(group, w_long, w_toll, r, h)
  h = h or header(group)
  local nl, nt, width, at = h[1], h[2], h[3], h[4]
  local split = nl * w_long
  local total = split + nt * w_toll
  local x = r * total
  local i
  if x < split then
    i = math.floor(x / w_long)
    if i >= nl then
      i = nl - 1
    end
  else
    i = math.floor((x - split) / w_toll)
    if i >= nt then
      i = nt - 1
    end
    i = nl + i
  end
  local s = at + i * width
  return string.match(string.sub(group, s, s + width - 1), '^%S+')
end

-- A group's header, parsed once per script and group (a batch draws from a few groups).
local function cached_header(c, group)
  local cache = table_in(c, 'headers')
  local h = cache[group]
  if not h then
    h = header(group)
    cache[group] = h
  end
  return h
end

-- Chooser.choose, as data. `c` is HMGET of the choice hash's 'v', 'mode', 'w', '*'
-- (every eligible number) and the recipient's four tier groups (nil where the tier
-- has none): the number of the first non-empty tier's draw and its tier code, or the
-- plain draw (tier 0 with geomatch off, TIER_NONE with it on); nil when no number is
-- eligible (the caller replies NO_ELIGIBLE, and the draw is not used).
local function choose(c, r)
  local w_long, w_toll = c.w_long, c.w_toll
  if not w_long then -- parsed once per script: a batch reuses `c`
    local w = c[3]
    local sp = string.find(w, ' ', 1, true)
    w_long, w_toll = tonumber(string.sub(w, 1, sp - 1)), tonumber(string.sub(w, sp + 1))
    c.w_long, c.w_toll, c.empty = w_long, w_toll, string.sub(c[4], 1, 4) == '0 0 '
  end
  if c.empty then
    return nil
  end
  if c[2] == 'off' then
    return pick(c[4], w_long, w_toll, r, cached_header(c, c[4])), 0
  end
  for t = 1, 4 do
    if c[4 + t] then
      return pick(c[4 + t], w_long, w_toll, r, cached_header(c, c[4 + t])), t
    end
  end
  return pick(c[4], w_long, w_toll, r, cached_header(c, c[4])), {{TIER_NONE}}
end

-- Whether the choice data `c` (as choose takes it) is of the pool's current version and
-- of the geomatch mode the caller computed the recipient's tier keys for ('off' needs
-- no keys, so any caller's guess does).
local function choice_is_current(p, c, mode)
  return c[1] ~= false and c[1] == version_of(p) and (c[2] == 'off' or c[2] == mode)
end

-- A select's reply when the choice data is not current: STALE, whether the data must
-- be rebuilt ('1', the caller stores it with store_choice) or only the caller's mode
-- was wrong ('0'), then the version, settings and pool. Nothing was written.
local function stale_choice(p, c, rebuild)
  rebuild = rebuild or '0'
  if c[1] ~= version_of(p) then
    rebuild = '1'
  end
  return append_pool({{{STALE}}, rebuild}, '')
end

-- A pin-like write's capacity check, before any write (pin, a reply that moves or maps a
-- recipient): with capacity on or not yet known, a stale reply when the cached choice data
-- or the engine's capacity settings (`cap`) are not the profile's; else false.
local function stale_capacity(p, cap)
  if p.cap == '0' then
    return false
  end
  local c = redis.call('HMGET', KEYS[9], 'v', 'mode')
  if (not p.cap) or c[1] ~= version_of(p) then
    return stale_choice(p, c, '1')
  end
  if p.cap ~= cap then
    return stale_choice(p, c)
  end
  return false
end

-- A fresh choice with the draw r for the recipient of `m` (lookup's, or false with
-- sticky off: reason POOL, nothing stored). Returns sender, tier, or nil when no number
-- is eligible.
local function fresh(p, c, m, r, now_s, now)
  local sender, tier = choose(c, r)
  if not sender then
    return nil
  end
  if m then
    store_fresh(p, m, sender, now_s, now)
  end
  return sender, tier
end

-- The first half of a one-step select: a sticky hit (honoured: returns STICKY, sender),
-- or the reason a fresh choice would have and the lookup of the mapping it replaces
-- (false with sticky off).
local function hit_or_reason(p, to, now_s, now)
  if not p.sticky then
    return POOL, false
  end
  local m = lookup(p, to)
  if not m.sid then
    return NEW, m
  end
  local verdict = judge(p, m.lu, m.sender, now_s, now)
  if verdict == STICKY then
    honour(p, m, now_s, now)
    return STICKY, m.sender
  end
  return verdict, m
end

-- Store the choice data Python computed at a pool version (sticky.policy.Chooser's
-- groups, see pick) for `version`: ARGV[first] is its count n, then come the geomatch
-- mode and field, group pairs; n = 0 only drops the old data (the next fresh choice
-- has it computed). Returns the index of the ARGV after it.
local function store_choice(version, first)
  local n = tonumber(ARGV[first])
  redis.call('DEL', KEYS[9])
  if n > 0 then
    redis.call('HSET', KEYS[9], 'v', version, 'mode', ARGV[first + 1])
    for i = first + 2, first + n - 1, 2 do
      redis.call('HSET', KEYS[9], ARGV[i], ARGV[i + 1])
    end
    local cap = redis.call('HMGET', KEYS[9], 'cap', 'tz')
    if cap[1] == '0' then
      redis.call('HSET', KEYS[1], 'cap', '0')
    else
      redis.call('HSET', KEYS[1], 'cap', cap[2])
    end
  else
    redis.call('HDEL', KEYS[1], 'cap')
  end
  return first + n + 1
end

-- A pool change's last step: a new pool version, and the choice data of the changed
-- pool (at ARGV[first], see store_choice) stored for it.
local function new_version(first)
  redis.call('INCR', KEYS[4])
  -- the version as stored: Lua would format a number of 15 digits or more inexactly
  return store_choice(redis.call('GET', KEYS[4]), first)
end

-- -- capacity ---------------------------------------------------------------------
-- A number's capacity state ("load") is {tat, floor, day, count} as policy.Load; the
-- floats are stored as '%.17g' text, which reads back as the same double. The
-- settings and limits come from the choice data (Python's, once per pool version).

local IDLE = {-1 / 0, -1 / 0, 0, 0} -- -math.huge: the library loads where `math` is not yet in reach

-- A double as text that Python's float() reads back exactly.
local function num_text(x)
  if x == math.huge then
    return 'inf'
  elseif x == -math.huge then
    return '-inf'
  end
  return string.format('%.17g', x)
end

local function opt_number(s)
  if s == '-' then
    return false
  end
  return tonumber(s)
end

-- The capacity settings of the choice data: its `cap` field "<burst> <max_wait>
-- <choice_wait> <max_queue>" ('-': none), and `lim`, "<number> <rate> <budget>" for
-- each eligible number, sorted ('-': none), then "~<number> <rate> <budget>" for each
-- other number of the pool (a kept, draining number's sticky recipients are planned
-- too). Returns cfg, with cfg.order the eligible numbers.
local function parse_capacity(cap, lim, sticky)
  local b, mw, cw, mq = string.match(cap, '^(%S+) (%S+) (%S+) (%S+)$')
  local cfg = {
    burst = tonumber(b),
    max_wait = opt_number(mw),
    choice_wait = tonumber(cw),
    max_queue = opt_number(mq),
    sticky = sticky,
    order = {},
    rate = {},
    budget = {},
  }
  for n, r, d in string.gmatch(lim or '', '(%S+) (%S+) (%S+)') do
    if string.byte(n, 1) == 126 then -- '~': not eligible, its limits only
      n = string.sub(n, 2)
    else
      cfg.order[#cfg.order + 1] = n
    end
    cfg.rate[n] = opt_number(r)
    cfg.budget[n] = opt_number(d)
  end
  return cfg
end

local function parse_load(v)
  if not v then
    return IDLE
  end
  local t, f, d, c = string.match(v, '^(%S+) (%S+) (%S+) (%S+)$')
  return {tonumber(t), tonumber(f), tonumber(d), tonumber(c)}
end

-- The loads of a select, read as they are asked for (one HGET each): a sticky hit
-- reads its sender's alone. fill_loads reads them all at once (HGETALL) for a plan
-- that looks at every number.
local function lazy_loads()
  return setmetatable({}, {__index = function(t, n)
    local load = parse_load(redis.call('HGET', KEYS[11], n))
    rawset(t, n, load)
    return load
  end})
end

local function fill_loads(cap)
  if cap.all then
    return
  end
  local flat = redis.call('HGETALL', KEYS[11])
  for i = 1, #flat, 2 do
    rawset(cap.loads, flat[i], parse_load(flat[i + 1]))
  end
  setmetatable(cap.loads, nil)
  cap.all = true
end

local function write_load(loads, number, load)
  loads[number] = load
  redis.call('HSET', KEYS[11], number, num_text(load[1]) .. ' ' .. num_text(load[2]) ..
    string.format(' %d %d', load[3], load[4]))
end

-- policy.next_slot: max(now, tat - (b - 1) / r, floor); now without a rate.
local function next_slot(load, now, rate, burst)
  if not rate then
    return now
  end
  local slot = load[1] - (burst - 1) / rate
  if load[2] > slot then
    slot = load[2]
  end
  if now > slot then
    return now
  end
  return slot
end

-- policy.new_today: the new recipients counted on `day`; a day never goes back.
local function new_today(load, day)
  if load[3] >= day then
    return load[4]
  end
  return 0
end

-- policy.has_budget: whether a number may take one more new recipient on `day`.
local function has_budget(load, day, budget)
  return (not budget) or new_today(load, day) < budget
end

-- policy.count_new: one more new recipient, counted on max(day, stored day).
local function count_new(load, day)
  if day > load[3] then
    return {load[1], load[2], day, 1}
  end
  return {load[1], load[2], load[3], load[4] + 1}
end

-- policy.reserve: send_at = next_slot; tat = max(tat, now) + segments / r; floor =
-- send_at; a new recipient counted if `new`. Returns send_at, the new load.
local function reserve(load, now, rate, burst, segments, day, new)
  local send_at = next_slot(load, now, rate, burst)
  if rate then
    local start = now
    if load[1] > now then
      start = load[1]
    end
    load = {start + segments / rate, send_at, load[3], load[4]}
  end
  if new then
    load = count_new(load, day)
  end
  return send_at, load
end

-- Chooser._Group.only(allowed).pick(r): the group's numbers that `allowed` holds, in
-- the same order, and pick's arithmetic over them. nil when it keeps none (total 0).
local function pick_among(group, allowed, w_long, w_toll, r)
  local h = header(group)
  local nl, nt, width, at = h[1], h[2], h[3], h[4]
  local longs, tolls = {}, {}
  for i = 0, nl + nt - 1 do
    local s = at + i * width
    local n = string.match(string.sub(group, s, s + width - 1), '^%S+')
    if allowed[n] then
      if i < nl then
        longs[#longs + 1] = n
      else
        tolls[#tolls + 1] = n
      end
    end
  end
  local split = #longs * w_long
  local total = split + #tolls * w_toll
  if not (total > 0) then
    return nil
  end
  local x = r * total
  local i
  if x < split then
    i = math.floor(x / w_long)
    if i >= #longs then
      i = #longs - 1
    end
    return longs[i + 1]
  end
  i = math.floor((x - split) / w_toll)
  if i >= #tolls then
    i = #tolls - 1
  end
  return tolls[i + 1]
end

-- Chooser.choose_among: choose (c as choose takes it) with each group restricted to
-- `allowed` (a set of eligible numbers, not empty): the first tier whose group keeps
-- one wins. Returns the number and its tier code.
local function choose_among(c, allowed, r)
  local w = c[3]
  local sp = string.find(w, ' ', 1, true)
  local w_long, w_toll = tonumber(string.sub(w, 1, sp - 1)), tonumber(string.sub(w, sp + 1))
  if c[2] == 'off' then
    return pick_among(c[4], allowed, w_long, w_toll, r), 0
  end
  for t = 1, 4 do
    if c[4 + t] then
      local n = pick_among(c[4 + t], allowed, w_long, w_toll, r)
      if n then
        return n, t
      end
    end
  end
  return pick_among(c[4], allowed, w_long, w_toll, r), {{TIER_NONE}}
end

-- policy._fresh: a fresh choice with capacity. Returns true, sender, tier, send_at;
-- or false (an overflow with no sooner number: the recipient stays); or an error tag:
-- NO_ELIGIBLE, EXHAUSTED with the next day's start, BUSY with its retry_at.
local function fresh_capacity(cfg, loads, c, r, now, day, next_day_s, sticky, before)
  if #cfg.order == 0 then
    if sticky then -- a kept sender that takes no fresh choice: it stays
      return false
    end
    return {{NO_ELIGIBLE}}
  end
  local slots, earliest = {}, math.huge
  local any = false
  for _, n in ipairs(cfg.order) do
    local load = loads[n] or IDLE
    if n ~= sticky and ((not cfg.sticky) or has_budget(load, day, cfg.budget[n])) then
      local slot = next_slot(load, now, cfg.rate[n], cfg.burst)
      if slot < before then
        slots[n] = slot
        any = true
        if slot < earliest then
          earliest = slot
        end
      end
    end
  end
  if not any then
    if sticky then
      return false
    end
    return {{EXHAUSTED}}, next_day_s
  end
  local wait = cfg.choice_wait
  if cfg.max_queue and cfg.max_queue < wait then
    wait = cfg.max_queue
  end
  local room, some = {}, false
  for n, slot in pairs(slots) do
    if slot - now <= wait then
      room[n] = true
      some = true
    end
  end
  if not some then
    if cfg.max_queue and earliest - now > cfg.max_queue then
      return {{BUSY}}, num_text(earliest - cfg.max_queue)
    end
    for n, slot in pairs(slots) do
      if slot == earliest then
        room[n] = true
      end
    end
  end
  local sender, tier = choose_among(c, room, r)
  return true, sender, tier, slots[sender]
end

-- policy.plan: the sender, tier, reason and send_at of a select with capacity on
-- (`sticky`: the live eligible sender, or false for a fresh choice of `reason`).
-- Returns true, sender, tier, reason, send_at, or an error as fresh_capacity's (BUSY
-- for a sticky recipient also gives its sender). Changes nothing.
local function plan(cfg, loads, c, r, now, day, next_day_s, sticky, reason)
  if sticky then
    local slot = next_slot(loads[sticky] or IDLE, now, cfg.rate[sticky], cfg.burst)
    if cfg.max_wait and slot - now > cfg.max_wait then
      local kind, a, b, d = fresh_capacity(cfg, loads, c, r, now, day, next_day_s, sticky, slot)
      if kind == true then
        return true, a, b, OVERFLOW, d
      elseif kind then
        return kind, a
      end
    end
    if cfg.max_queue and slot - now > cfg.max_queue then
      return {{BUSY}}, num_text(slot - cfg.max_queue), sticky
    end
    return true, sticky, 0, STICKY, slot
  end
  local kind, a, b, d = fresh_capacity(cfg, loads, c, r, now, day, next_day_s, false, math.huge)
  if kind ~= true then
    return kind, a
  end
  return true, a, b, reason, d
end

-- What a select with capacity reads of `to` before planning, changing nothing: the
-- live eligible sender (or false), the reason a fresh choice would have and the lookup
-- of the mapping (false with sticky off).
local function judge_capacity(p, to, now_s, now)
  if not p.sticky then
    return false, POOL, false
  end
  local m = lookup(p, to)
  if not m.sid then
    return false, NEW, m
  end
  local verdict = judge(p, m.lu, m.sender, now_s, now)
  if verdict == STICKY then
    return m.sender, STICKY, m
  end
  return false, verdict, m
end

-- A whole select with capacity on (`judged`: judge_capacity's answer when the caller
-- has it, so that a sticky hit is judged once): plan it, then store it (a sticky answer refreshes
-- the mapping; any other but POOL stores it, replacing the old) and reserve its
-- slots (a new recipient counted when a mapping was created). `cap` holds cfg, loads,
-- day, next_day_s and segments. Returns true, sender, reason, tier, send_at text, or
-- an error tag and its retry_at (and a busy sticky sender), having written nothing.
local function select_capacity(p, cap, c, to, r, now_s, now, judged)
  judged = judged or {judge_capacity(p, to, now_s, now)}
  local sticky, reason, m = judged[1], judged[2], judged[3]
  if not sticky or cap.cfg.max_wait then -- the plan may look at every number
    fill_loads(cap)
  end
  local kind, sender, tier, why, send_at = plan(cap.cfg, cap.loads, c, r, now, cap.day,
    cap.next_day_s, sticky, reason)
  if kind ~= true then
    return kind, sender, tier
  end
  local new = false
  if why == STICKY then
    honour(p, m, now_s, now)
  elseif why ~= POOL then
    store_fresh(p, m, sender, now_s, now)
    new = true
  end
  local cfg = cap.cfg
  local _, load = reserve(cap.loads[sender] or IDLE, now, cfg.rate[sender], cfg.burst,
    cap.segments, cap.day, new)
  write_load(cap.loads, sender, load)
  return true, sender, why, tier, num_text(send_at)
end

-- The capacity context of a select script, or the STALE reply to give instead: the
-- choice data `c` must carry its capacity part (data stored before capacity existed
-- does not: rebuilt), and the caller's time zone (`tz`, with which it computed `day`)
-- must be the profile's. Returns nil (capacity off) or the context; or false and the
-- reply.
local function capacity_of(p, c, cap_s, lim_s, tz, day_s, next_day_s, segments_s)
  if not cap_s then
    return false, stale_choice(p, c, '1')
  end
  if cap_s == '0' then
    return nil
  end
  if tz ~= p.cap then
    return false, stale_choice(p, c)
  end
  return {
    cfg = parse_capacity(cap_s, lim_s, p.sticky),
    loads = lazy_loads(),
    all = false,
    day = tonumber(day_s),
    next_day_s = next_day_s,
    segments = tonumber(segments_s),
  }
end

-- -- delivery health ----------------------------------------------------------------
-- A number's window (policy.Window) is a list of {bucket, delivered, failed, spam},
-- oldest first, at most HEALTH_BUCKETS of them, stored as "<token>;<b> <d> <f> <s>;...".

local HEALTH_BUCKETS = {{HEALTH_BUCKETS}}

local function parse_window(v)
  local w = {}
  if not v then
    return w
  end
  for b, d, f, s in string.gmatch(v, ';(%-?%d+) (%d+) (%d+) (%d+)') do
    w[#w + 1] = {tonumber(b), tonumber(d), tonumber(f), tonumber(s)}
  end
  return w
end

local function window_text(token, w)
  local out = {token}
  for i, e in ipairs(w) do
    out[i + 1] = string.format('%d %d %d %d', e[1], e[2], e[3], e[4])
  end
  return table.concat(out, ';')
end

-- policy.add_outcome: the window with one more outcome (slot 2 delivered, 3 failed, 4
-- spam: its place in an entry) in `bucket`; buckets older than the 24 ending at the
-- newest are dropped, and a report older than those changes nothing.
local function add_outcome(w, bucket, slot)
  local top = bucket
  if #w > 0 and w[#w][1] > bucket then
    top = w[#w][1]
  end
  local oldest = top - HEALTH_BUCKETS
  if bucket <= oldest then
    return w
  end
  local out, placed = {}, false
  for _, e in ipairs(w) do
    if e[1] > oldest then
      if e[1] == bucket then
        local c = {e[1], e[2], e[3], e[4]}
        c[slot] = c[slot] + 1
        out[#out + 1] = c
        placed = true
      else
        if not placed and e[1] > bucket then
          local c = {bucket, 0, 0, 0}
          c[slot] = 1
          out[#out + 1] = c
          placed = true
        end
        out[#out + 1] = e
      end
    end
  end
  if not placed then
    local c = {bucket, 0, 0, 0}
    c[slot] = 1
    out[#out + 1] = c
  end
  return out
end

-- add_outcome's common case on the stored text `v` (as policy.add_outcome's): a report
-- in the newest bucket of a window that drops nothing changes the last entry alone, so
-- the text is not parsed into tables nor written out again. Returns the new text (under
-- `token`) and the tally of the new window, or nil where the case does not hold.
local function add_to_newest(v, token, bucket, slot)
  local at = v and string.find(v, ';', 1, true)
  if not at then
    return nil
  end
  local first = tonumber(string.match(v, '^;(%-?%d+) ', at))
  local head, b, x2, x3, x4 = string.match(v, '^(.*;)(%-?%d+) (%d+) (%d+) (%d+)$')
  if not (first and head) or tonumber(b) ~= bucket or first <= bucket - HEALTH_BUCKETS then
    return nil
  end
  local last = {bucket, tonumber(x2), tonumber(x3), tonumber(x4)}
  last[slot] = last[slot] + 1
  local d, f, s = last[2], last[3], last[4]
  local before = string.sub(head, at)
  for _, pd, pf, ps in string.gmatch(before, ';(%-?%d+) (%d+) (%d+) (%d+)') do
    d, f, s = d + tonumber(pd), f + tonumber(pf), s + tonumber(ps)
  end
  local text = token .. before .. string.format('%d %d %d %d', bucket, last[2], last[3], last[4])
  return text, d, f, s
end

-- policy.tally: (delivered, failed, spam) over the 24 buckets ending at the window's
-- newest (how a report is judged).
local function tally(w)
  local d, f, s = 0, 0, 0
  if #w == 0 then
    return d, f, s
  end
  local oldest = w[#w][1] - HEALTH_BUCKETS
  for _, e in ipairs(w) do
    if e[1] > oldest then
      d, f, s = d + e[2], f + e[3], s + e[4]
    end
  end
  return d, f, s
end

-- policy.judge_health: the verdict over the counts, given the verdict before (`healthy`)
-- and `h` = {min_samples, min_delivery_rate, max_spam_rate, then policy.recovery_rates}
-- as numbers. The same double arithmetic as Python's, so the same verdict.
local function judge_health(d, f, s, healthy, h)
  local n = d + f + s
  if n < h[1] then
    return true
  end
  local ds, ss = d / n, s / n -- shares as quotients, as Python's
  if healthy then
    return not (ds < h[2] or ss > h[3])
  end
  return ds >= h[4] and ss <= h[5]
end
