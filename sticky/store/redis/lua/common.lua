-- common.lua: helpers shared by sticky's Redis scripts; prepended to each of them.
--
-- One helper per rule of docs/semantics.md, as sticky.policy has one function per
-- rule: is_live (liveness), judged_at (the horizon), eligible (eligibility, stored as
-- data by Python), judge (the sticky hit), refreshed (never younger). Scripts call
-- them and spell out none of these rules. Placeholders (a NAME in double braces) are
-- constants defined once in Python (sticky/store/redis/scripts.py: the reply tags,
-- the eviction step, the layout version), substituted when the scripts are read.
--
-- KEYS of a profile's scripts always sit at these positions (a script is given the
-- first 2, 4, 7 or all 10 of them); all of them share the profile's {hash tag}:
--   1 meta (hash)  2 map (hash)  3 pool (hash)  4 ver (string)
--   5 queue (list) 6 late (zset) 7 rev (zset)   8 claims (hash)
--   9 choice (hash: what a fresh choice needs, see pick)  10 batch (hash: the draw
--   offsets of batches in flight, see select_many.lua)
--
-- Times and ttls arrive as Python repr() strings. They are compared as doubles
-- (tonumber, the same IEEE arithmetic as Python) and stored as the very strings
-- received: Lua's tostring keeps 14 digits only, so no script ever formats a float.
-- A mapping is stored as "<last_used> <index key> <sender>"; a pool entry as
-- "<L|T><1|0><1|0>": type, health, eligible.

local STEP_EVICTIONS = {{STEP_EVICTIONS}} -- dead mappings a write that stores a mapping removes, at most
local STEP_LOOKS = {{STEP_LOOKS}}         -- index entries such a write looks at, at most
-- judge()'s verdicts, as policy.judge's, and the other reasons a select replies
local STICKY, REASSIGNED, EXPIRED = {{R_STICKY}}, {{R_REASSIGNED}}, {{R_EXPIRED}}
local NEW, POOL = {{R_NEW}}, {{R_POOL}}
local NUL = '\0'

-- The profile's ttl, sticky flag, horizon, layout and expiry-index bound (see set_due),
-- or nil when it does not exist.
local function load_profile()
  local m = redis.call('HMGET', KEYS[1], 'ttl', 'sticky', 'horizon', 'layout', 'due')
  if not m[1] then
    return nil
  end
  local p = {
    ttl_s = m[1],
    ttl = tonumber(m[1]),
    sticky = m[2] == '1',
    horizon_s = false,
    horizon = -math.huge,
    current = m[4] == {{LAYOUT}}, -- else written by 0.1: no eligibility flags yet
    due_s = m[5] or false,
  }
  if m[3] then
    p.horizon_s = m[3]
    p.horizon = tonumber(m[3])
  end
  return p
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

-- A write that can evict or replace a mapping moves the horizon to judged_at.
local function move_horizon(p, now_s, now)
  local at_s, at = judged_at(p, now_s, now)
  if at ~= p.horizon then
    redis.call('HSET', KEYS[1], 'horizon', at_s)
    p.horizon_s, p.horizon = at_s, at
  end
  return at_s, at
end

-- policy.is_eligible, as data: the flag Python computed for this pool version (the
-- third character of the entry); false for a number not in the pool.
local function eligible(entry)
  return entry and string.byte(entry, 3) == 49 -- '1'
end

-- policy.judge: what a mapping (last_used, sender) means for a sticky select at `now`,
-- judged at judged_at(now): STICKY (live, eligible sender: honoured), REASSIGNED (live,
-- not eligible) or EXPIRED (dead).
local function judge(p, last_used, sender, now_s, now)
  local _, at = judged_at(p, now_s, now)
  if not is_live(last_used, p.ttl, at) then
    return EXPIRED
  end
  if eligible(redis.call('HGET', KEYS[3], sender)) then
    return STICKY
  end
  return REASSIGNED
end

-- policy.refreshed: a sticky hit's last_used, never younger; and whether it changed.
local function refreshed(lu_s, lu, now_s, now)
  if now > lu then
    return now_s, true
  end
  return lu_s, false
end

local function parse_mapping(v)
  local a = string.find(v, ' ', 1, true)
  local b = string.find(v, ' ', a + 1, true)
  return string.sub(v, 1, a - 1), string.sub(v, a + 1, b - 1), string.sub(v, b + 1)
end

-- Honour a sticky hit: at most one write (the mapping, when last_used changes); a hit
-- evicts nothing, so the horizon stays.
local function honour(to, lu_s, lu, idx_s, sender, now_s, now)
  local new_s, changed = refreshed(lu_s, lu, now_s, now)
  if changed then
    redis.call('HSET', KEYS[2], to, new_s .. ' ' .. idx_s .. ' ' .. sender)
  end
end

-- Byte-wise a < b. Lua's own string order follows the server's locale (strcoll);
-- Python compares code points, which UTF-8 bytes order the same way.
local function bytes_lt(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end

-- The expiry index's lower bound, meta's `due`: a key at most every key of `queue` and
-- `late` ('none' when both are empty; absent when not known, as in a profile written
-- before it existed), so that the amortised step, when nothing is due, looks at
-- nothing. Only put and evict change the index: put lowers the bound to a smaller key,
-- evict only removes keys or adds ones larger than the key it removed (so the bound
-- stays a bound), and sets it to the head it stopped at.
local function set_due(p, due_s)
  if due_s ~= p.due_s then
    if due_s then
      redis.call('HSET', KEYS[1], 'due', due_s)
    else
      redis.call('HDEL', KEYS[1], 'due')
    end
    p.due_s = due_s
  end
end

-- Store (sender, now) for `to`, replacing `old` (its stored value, or false). The index
-- entry goes to the tail of the queue while keys arrive in order, else into `late`.
local function put(p, to, sender, now_s, now, old)
  if old then
    local _, _, old_sender = parse_mapping(old)
    redis.call('ZREM', KEYS[7], old_sender .. NUL .. to)
  end
  redis.call('HSET', KEYS[2], to, now_s .. ' ' .. now_s .. ' ' .. sender)
  redis.call('ZADD', KEYS[7], 0, sender .. NUL .. to)
  local tail = redis.call('LINDEX', KEYS[5], -1)
  if (not tail) or tonumber(string.sub(tail, 1, string.find(tail, ' ', 1, true) - 1)) <= now then
    redis.call('RPUSH', KEYS[5], now_s .. ' ' .. to)
  else
    local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
    redis.call('ZADD', KEYS[6], now_s, to .. NUL .. seq)
  end
  if p.due_s == 'none' or (p.due_s and now < tonumber(p.due_s)) then
    set_due(p, now_s)
  end
end

-- Remove up to `limit` mappings dead at `at`, looking at up to `max_looks` index
-- entries, in the order MemoryStore._evict does (the smaller of the queue's head and
-- late's head, as (key, to) tuples). Returns removed, looks.
local function evict(p, at, limit, max_looks)
  local ttl = p.ttl
  local removed, looks = 0, 0
  local due_s = p.due_s
  if due_s and (due_s == 'none' or is_live(tonumber(due_s), ttl, at)) then
    return removed, looks -- every index key is live at `at`: nothing is due
  end
  while removed < limit and looks < max_looks do
    local q = redis.call('LINDEX', KEYS[5], 0)
    local l = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
    local key, to, qk, qk_s, qto, lk, lto
    if q then
      local sp = string.find(q, ' ', 1, true)
      qk_s, qto = string.sub(q, 1, sp - 1), string.sub(q, sp + 1)
      qk = tonumber(qk_s)
    end
    if l[1] then
      lk, lto = tonumber(l[2]), string.sub(l[1], 1, string.find(l[1], NUL, 1, true) - 1)
    end
    local from_queue, key_s
    if q and ((not l[1]) or qk < lk or (qk == lk and not bytes_lt(lto, qto))) then
      key, key_s, to, from_queue = qk, qk_s, qto, true
    elseif l[1] then
      key, key_s, to, from_queue = lk, l[2], lto, false
    else
      set_due(p, 'none')
      break
    end
    if is_live(key, ttl, at) then -- the index key is at most last_used: nothing older is dead
      set_due(p, key_s) -- the smallest key
      break
    end
    if from_queue then
      redis.call('LPOP', KEYS[5])
    else
      redis.call('ZREM', KEYS[6], l[1])
    end
    looks = looks + 1
    local v = redis.call('HGET', KEYS[2], to)
    if v then
      local lu_s, idx_s, sender = parse_mapping(v)
      if tonumber(idx_s) == key then -- else it indexed a mapping replaced since
        if is_live(tonumber(lu_s), ttl, at) then
          -- used since it was indexed: index it again under its last use
          redis.call('HSET', KEYS[2], to, lu_s .. ' ' .. lu_s .. ' ' .. sender)
          local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
          redis.call('ZADD', KEYS[6], lu_s, to .. NUL .. seq)
        else
          redis.call('HDEL', KEYS[2], to)
          redis.call('ZREM', KEYS[7], sender .. NUL .. to)
          removed = removed + 1
        end
      end
    end
  end
  if removed > 0 then
    redis.call('HINCRBY', KEYS[1], 'evicted', removed)
  end
  return removed, looks
end

-- The pool version, read once per script (no select step changes it).
local function version_of(p)
  if not p.version then
    p.version = redis.call('GET', KEYS[4])
  end
  return p.version
end

-- Store.begin_select for one recipient. Returns HIT, sender for a sticky hit (honoured),
-- else MISS, has previous, previous sender, previous last_used, live ('1'/'0'),
-- changing nothing.
local function begin_one(p, to, now_s, now)
  if p.sticky then
    local v = redis.call('HGET', KEYS[2], to)
    if v then
      local lu_s, idx_s, sender = parse_mapping(v)
      local lu = tonumber(lu_s)
      local verdict = judge(p, lu, sender, now_s, now)
      if verdict == STICKY then
        honour(to, lu_s, lu, idx_s, sender, now_s, now)
        return {{HIT}}, sender, '', '', ''
      end
      if verdict == REASSIGNED then
        return {{MISS}}, '1', sender, lu_s, '1'
      end
      return {{MISS}}, '1', sender, lu_s, '0'
    end
  end
  return {{MISS}}, '0', '', '', '0'
end

-- Store.commit_select for one recipient: store (chosen, now) if the pool version, the
-- stored mapping and its liveness are still what begin_one read. Returns STORED, HIT,
-- sender (another select stored a live eligible mapping: honoured), START_OVER, or
-- NOT_ELIGIBLE (the version matches but `chosen` is not eligible in it: the caller's
-- cache is not of this data; nothing stored).
local function commit_one(p, to, chosen, has, prev_sender, prev_lu, live, version, now_s, now)
  local _, at = judged_at(p, now_s, now)
  local v = redis.call('HGET', KEYS[2], to)
  local lu_s, idx_s, sender, lu
  -- No mapping matches no previous one, and also a dead previous one evicted since (by
  -- an earlier commit of the same batch, say): either way no live mapping came between.
  local current_live, same = false, has == '0' or live == '0'
  if v then
    lu_s, idx_s, sender = parse_mapping(v)
    lu = tonumber(lu_s)
    current_live = is_live(lu, p.ttl, at)
    -- last_used strings are repr() of a double: equal strings iff equal doubles
    same = has == '1' and sender == prev_sender and lu_s == prev_lu
  end
  if same and current_live == (live == '1') and version_of(p) == version then
    if not eligible(redis.call('HGET', KEYS[3], chosen)) then
      return {{NOT_ELIGIBLE}}, ''
    end
    local _, stored_at = move_horizon(p, now_s, now)
    put(p, to, chosen, now_s, now, v)
    evict(p, stored_at, STEP_EVICTIONS, STEP_LOOKS)
    return {{STORED}}, ''
  end
  if v and p.sticky and judge(p, lu, sender, now_s, now) == STICKY then
    honour(to, lu_s, lu, idx_s, sender, now_s, now)
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
-- each sorted by number), each padded with spaces to width.
local function pick(group, w_long, w_toll, r)
  local nl, nt, width, at = string.match(group, '^(%d+) (%d+) (%d+) ()')
  nl, nt, width = tonumber(nl), tonumber(nt), tonumber(width)
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

-- Chooser.choose, as data. `c` is HMGET of the choice hash's 'v', 'mode', 'w', '*'
-- (every eligible number) and the recipient's four tier groups (nil where the tier
-- has none): the number of the first non-empty tier's draw and its tier code, or the
-- plain draw (tier 0 with geomatch off, TIER_NONE with it on); nil when no number is
-- eligible (the caller replies NO_ELIGIBLE, and the draw is not used).
local function choose(c, r)
  local w = c[3]
  local sp = string.find(w, ' ', 1, true)
  local w_long, w_toll = tonumber(string.sub(w, 1, sp - 1)), tonumber(string.sub(w, sp + 1))
  if string.sub(c[4], 1, 4) == '0 0 ' then
    return nil
  end
  if c[2] == 'off' then
    return pick(c[4], w_long, w_toll, r), 0
  end
  for t = 1, 4 do
    if c[4 + t] then
      return pick(c[4 + t], w_long, w_toll, r), t
    end
  end
  return pick(c[4], w_long, w_toll, r), {{TIER_NONE}}
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
local function stale_choice(p, c)
  local rebuild = '0'
  if c[1] ~= version_of(p) then
    rebuild = '1'
  end
  return append_pool({{{STALE}}, rebuild}, '')
end

-- A fresh choice for `to` (its mapping `old`, or false) with the draw r, stored unless
-- sticky is off (reason POOL). Returns sender, tier, or nil when no number is eligible.
local function fresh(p, c, to, old, r, now_s, now)
  local sender, tier = choose(c, r)
  if not sender then
    return nil
  end
  if p.sticky then
    local _, at = move_horizon(p, now_s, now)
    put(p, to, sender, now_s, now, old)
    evict(p, at, STEP_EVICTIONS, STEP_LOOKS)
  end
  return sender, tier
end

-- The first half of a one-step select: a sticky hit (honoured: returns STICKY, sender),
-- or the reason a fresh choice would have and the stored mapping it replaces (or false).
local function hit_or_reason(p, to, now_s, now)
  if not p.sticky then
    return POOL, false
  end
  local v = redis.call('HGET', KEYS[2], to)
  if not v then
    return NEW, false
  end
  local lu_s, idx_s, sender = parse_mapping(v)
  local lu = tonumber(lu_s)
  local verdict = judge(p, lu, sender, now_s, now)
  if verdict == STICKY then
    honour(to, lu_s, lu, idx_s, sender, now_s, now)
    return STICKY, sender
  end
  return verdict, v
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
