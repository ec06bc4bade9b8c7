-- common.lua: helpers shared by sticky's Redis scripts; prepended to each of them.
--
-- KEYS of a profile's scripts always sit at these positions (a script is given the
-- first 4, 7 or 8 of them); all of them share the profile's {hash tag}:
--   1 meta (hash)  2 map (hash)  3 pool (hash)  4 ver (string)
--   5 queue (list) 6 late (zset) 7 rev (zset)   8 claims (hash)
--
-- Times, ttls and weights arrive as Python repr() strings. They are compared as
-- doubles (tonumber, the same IEEE arithmetic as Python) and stored as the very
-- strings received: Lua's tostring keeps 14 digits only, so no script ever formats a
-- float. A mapping is stored as "<last_used> <index key> <sender>".

local STEP_EVICTIONS = 2 -- dead mappings a write that stores a mapping removes, at most
local STEP_POPS = 8      -- index entries such a write looks at, at most
local NUL = '\0'

-- The profile's settings and horizon, or nil when the profile does not exist.
local function load_profile()
  local m = redis.call('HMGET', KEYS[1], 'ttl', 'sticky', 'lw', 'tw', 'skip', 'horizon')
  if not m[1] then
    return nil
  end
  local p = {
    ttl_s = m[1],
    ttl = tonumber(m[1]),
    sticky = m[2] == '1',
    lw = tonumber(m[3]),
    tw = tonumber(m[4]),
    skip = m[5] == '1',
    horizon_s = false,
    horizon = -math.huge,
  }
  if m[6] then
    p.horizon_s = m[6]
    p.horizon = tonumber(m[6])
  end
  return p
end

-- policy.is_eligible: the weight of its type > 0, and healthy unless unhealthy is allowed.
-- A pool entry is "<L|T><1|0>": type, then health.
local function eligible(p, entry)
  if not entry then
    return false -- not in the pool
  end
  local w = p.tw
  if string.byte(entry, 1) == 76 then -- 'L'
    w = p.lw
  end
  return w > 0 and (string.byte(entry, 2) == 49 or not p.skip) -- '1'
end

local function parse_mapping(v)
  local a = string.find(v, ' ', 1, true)
  local b = string.find(v, ' ', a + 1, true)
  return string.sub(v, 1, a - 1), string.sub(v, a + 1, b - 1), string.sub(v, b + 1)
end

-- The time liveness is judged at: max(now, horizon), as a string and a double.
local function effective(p, now_s, now)
  if p.horizon > now then
    return p.horizon_s, p.horizon
  end
  return now_s, now
end

-- Move the horizon to now if later; return the effective time (string, double).
local function advance(p, now_s, now)
  if now > p.horizon then
    redis.call('HSET', KEYS[1], 'horizon', now_s)
    p.horizon_s, p.horizon = now_s, now
  end
  return p.horizon_s, p.horizon
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

-- Store (sender, now) for `to`, replacing `old` (its stored value, or false). The index
-- entry goes to the tail of the queue while keys arrive in order, else into `late`.
local function put(to, sender, now_s, now, old)
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
end

-- Remove up to `limit` mappings dead at `at`, looking at up to `max_pops` index entries,
-- in the order MemoryStore._evict does (the smaller of the queue's head and late's
-- head, as (key, to) tuples). Returns removed, pops.
local function evict(p, at, limit, max_pops)
  local ttl = p.ttl
  local removed, pops = 0, 0
  while removed < limit and pops < max_pops do
    local q = redis.call('LINDEX', KEYS[5], 0)
    local l = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
    local key, to, qk, qto, lk, lto
    if q then
      local sp = string.find(q, ' ', 1, true)
      qk, qto = tonumber(string.sub(q, 1, sp - 1)), string.sub(q, sp + 1)
    end
    if l[1] then
      lk, lto = tonumber(l[2]), string.sub(l[1], 1, string.find(l[1], NUL, 1, true) - 1)
    end
    local from_queue
    if q and ((not l[1]) or qk < lk or (qk == lk and not bytes_lt(lto, qto))) then
      key, to, from_queue = qk, qto, true
    elseif l[1] then
      key, to, from_queue = lk, lto, false
    else
      break
    end
    if at < key + ttl then
      break
    end
    if from_queue then
      redis.call('LPOP', KEYS[5])
    else
      redis.call('ZREM', KEYS[6], l[1])
    end
    pops = pops + 1
    local v = redis.call('HGET', KEYS[2], to)
    if v then
      local lu_s, idx_s, sender = parse_mapping(v)
      if tonumber(idx_s) == key then -- else it indexed a mapping replaced since
        if at < tonumber(lu_s) + ttl then
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
  return removed, pops
end

-- The pool version, read once per script (no select step changes it).
local function version_of(p)
  if not p.version then
    p.version = redis.call('GET', KEYS[4])
  end
  return p.version
end

-- Move the horizon to `at` if later.
local function set_horizon(p, at_s, at)
  if at > p.horizon then
    redis.call('HSET', KEYS[1], 'horizon', at_s)
    p.horizon_s, p.horizon = at_s, at
  end
end

-- Store.begin_select for one recipient. Returns 'h', sender for a sticky hit (refreshed:
-- last_used = max(last_used, now), horizon = max(horizon, now)), else 'd', has
-- previous, previous sender, previous last_used, live ('1'/'0'), changing nothing.
local function begin_one(p, to, now_s, now)
  if p.sticky then
    local v = redis.call('HGET', KEYS[2], to)
    if v then
      local lu_s, idx_s, sender = parse_mapping(v)
      local lu = tonumber(lu_s)
      local at_s, at = effective(p, now_s, now)
      if at < lu + p.ttl then
        if eligible(p, redis.call('HGET', KEYS[3], sender)) then
          set_horizon(p, at_s, at)
          if now > lu then -- a mapping never gets younger
            redis.call('HSET', KEYS[2], to, now_s .. ' ' .. idx_s .. ' ' .. sender)
          end
          return 'h', sender, '', '', ''
        end
        return 'd', '1', sender, lu_s, '1'
      end
      return 'd', '1', sender, lu_s, '0'
    end
  end
  return 'd', '0', '', '', '0'
end

-- Store.commit_select for one recipient: store (chosen, now) if the pool version, the
-- stored mapping and its liveness are still what begin_one read. Returns 't' (stored),
-- 'h', sender (another select stored a live eligible mapping: refreshed), 'n' (start
-- over) or 'x' (the version matches but `chosen` is not eligible in it: the caller's
-- cache is not of this data; nothing stored).
local function commit_one(p, to, chosen, has, prev_sender, prev_lu, live, version, now_s, now)
  local at_s, at = effective(p, now_s, now)
  local v = redis.call('HGET', KEYS[2], to)
  local lu_s, idx_s, sender, lu
  -- No mapping matches no previous one, and also a dead previous one evicted since (by
  -- an earlier commit of the same batch, say): either way no live mapping came between.
  local current_live, same = false, has == '0' or live == '0'
  if v then
    lu_s, idx_s, sender = parse_mapping(v)
    lu = tonumber(lu_s)
    current_live = at < lu + p.ttl
    -- last_used strings are repr() of a double: equal strings iff equal doubles
    same = has == '1' and sender == prev_sender and lu_s == prev_lu
  end
  if same and current_live == (live == '1') and version_of(p) == version then
    if not eligible(p, redis.call('HGET', KEYS[3], chosen)) then
      return 'x', ''
    end
    set_horizon(p, at_s, at)
    put(to, chosen, now_s, now, v)
    evict(p, at, STEP_EVICTIONS, STEP_POPS)
    return 't', ''
  end
  if v and p.sticky and current_live and eligible(p, redis.call('HGET', KEYS[3], sender)) then
    set_horizon(p, at_s, at)
    if now > lu then
      redis.call('HSET', KEYS[2], to, now_s .. ' ' .. idx_s .. ' ' .. sender)
    end
    return 'h', sender
  end
  return 'n', ''
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
