-- _lib.lua: helpers shared by every partition script.
--
-- Not a script on its own: scripts.py prepends it (and one of the storage
-- adapters _io_hash.lua / _io_simple.lua) to each operation script, so every
-- state change moves its counters and indexes in the same atomic call.
--
-- Every script receives the same common KEYS, built by elk_celery/keys.py:
--   KEYS[1]  stats          hash   status -> count, plus event counters
--   KEYS[2]  ids            zset   "id:min:max" of every partition, score = min_id
--   KEYS[3]  pending        zset   "id:min:max" of pending ones that were sent or
--                                  are due again, score = when to (re)send its
--                                  task message (ms)
--   KEYS[4]  leases         zset   claimed/running id, score = lease expiry (ms)
--   KEYS[5]  failed         zset   failed id, score = when it failed (ms)
--   KEYS[6]  nodes          zset   node id, score = heartbeat expiry (ms)
--   KEYS[7]  nodes_info     hash   node id -> JSON description
--   KEYS[8]  inflight       hash   node id -> partitions it holds
--   KEYS[9]  leader         string "node|epoch", expires with the leader lease
--   KEYS[10] meta           hash   epoch, planning cursor, watermark, ...
--   KEYS[11] breaker        hash   circuit breaker state
--   KEYS[12] breaker_fails  zset   recent failures, score = time (ms)
--   KEYS[13] wake           list   wake-ups for the leader loop (at most one entry)
--   KEYS[14] queued         zset   id of a partition whose task message was sent
--                                  and not yet taken by a claim, score = sent (ms)
--   KEYS[15] corrupt        zset   id of a quarantined partition (its stored value
--                                  is not an elk partition), score = when found (ms)
--   KEYS[16] fresh          list   "id:min:max" of pending ones never sent yet, in
--                                  planning order (a list entry costs ~25 bytes
--                                  of Redis memory, a zset entry ~120: the
--                                  planned backlog is most of what is stored)
--   KEYS[17..] partition storage, see the adapter.
-- Times are Redis server time in milliseconds; nodes' clocks are never used.

local K_STATS, K_IDS, K_PENDING, K_LEASES, K_FAILED = 1, 2, 3, 4, 5
local K_NODES, K_NODES_INFO, K_INFLIGHT, K_LEADER, K_META = 6, 7, 8, 9, 10
local K_BREAKER, K_BREAKER_FAILS = 11, 12
local K_WAKE, K_QUEUED, K_CORRUPT, K_FRESH = 13, 14, 15, 16
local K_STORE = 17

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- ------------------------------------------------------------- numbers
-- Lua numbers are doubles, exact only below 2^53, and Redis's cjson writes
-- them with 14 significant digits. So partition ids, range IDs and item
-- counts travel and are stored as decimal strings, compared exactly as
-- strings; and every numeric argument is checked before a script writes
-- anything, because a command that fails half-way through a script does
-- not undo the writes before it. The limits match elk_celery/models.py.

local MAX_EXACT = 9007199254740991       -- 2^53 - 1: items of one partition
local MAX_FENCE = 99999999999999         -- 10^14 - 1: fences and epochs
local MAX_PID = '9223372036854775806'    -- 2^63 - 2: partition ids
local MIN_ID, MAX_ID = '-9223372036854775808', '9223372036854775807'  -- range IDs

local function fmt(n) return string.format('%d', n) end

local function invalid(what, v, why)
  error({err = 'ELK_INVALID ' .. what .. ' ' .. string.sub(tostring(v), 1, 40) .. ': ' .. why})
end

-- a canonical decimal integer: optional '-', no leading zeros, not '-0'
local function is_dec(s)
  return type(s) == 'string' and (s == '0' or string.match(s, '^%-?[1-9]%d*$') ~= nil)
end

-- exact comparison of two canonical decimal strings: -1, 0 or 1
local function dec_cmp(a, b)
  local na, nb = string.byte(a, 1) == 45, string.byte(b, 1) == 45  -- '-'
  if na ~= nb then return na and -1 or 1 end
  local sign = na and -1 or 1
  if #a ~= #b then return #a < #b and -sign or sign end
  if a == b then return 0 end
  return a < b and -sign or sign
end

-- a + 1 for a canonical non-negative decimal string
local function dec_inc(a)
  if #a < 16 then return fmt(tonumber(a) + 1) end
  local i = #a
  while i >= 1 and string.byte(a, i) == 57 do i = i - 1 end  -- trailing '9's
  if i < 1 then return '1' .. string.rep('0', #a) end
  return string.sub(a, 1, i - 1) .. string.char(string.byte(a, i) + 1) .. string.rep('0', #a - i)
end

-- magnitudes (non-negative decimal strings, no sign): a + b and a - b (a >= b)
local function mag_add(a, b)
  local out, carry, i, j = {}, 0, #a, #b
  while i >= 1 or j >= 1 or carry > 0 do
    local d = carry + (i >= 1 and string.byte(a, i) - 48 or 0) + (j >= 1 and string.byte(b, j) - 48 or 0)
    out[#out + 1] = string.char(48 + d % 10)
    carry = math.floor(d / 10)
    i, j = i - 1, j - 1
  end
  return string.reverse(table.concat(out))
end

local function mag_sub(a, b)
  local out, borrow, i, j = {}, 0, #a, #b
  while i >= 1 do
    local d = string.byte(a, i) - 48 - borrow - (j >= 1 and string.byte(b, j) - 48 or 0)
    borrow = d < 0 and 1 or 0
    out[#out + 1] = string.char(48 + d + 10 * borrow)
    i, j = i - 1, j - 1
  end
  local r = string.gsub(string.reverse(table.concat(out)), '^0+', '')
  return r == '' and '0' or r
end

-- exact a + k for a canonical decimal string `a` (any sign) and k >= 0 (a
-- number below 2^53): block bounds of ranges near the int64 limits
local function dec_add(a, k)
  if #a < 16 then return fmt(tonumber(a) + k) end
  local ks = fmt(k)
  if string.byte(a, 1) ~= 45 then return mag_add(a, ks) end
  local m = string.sub(a, 2)
  if dec_cmp(m, ks) > 0 then return '-' .. mag_sub(m, ks) end
  return mag_sub(ks, m)
end

-- an integer argument within [lo, hi] (Lua numbers): returns it as a number
local function num_arg(v, what, lo, hi)
  if not is_dec(v) or #v > 17 then invalid(what, v, 'expected a decimal integer') end
  local n = tonumber(v)
  if n < lo or n > hi then invalid(what, v, 'must be between ' .. fmt(lo) .. ' and ' .. fmt(hi)) end
  return n
end

-- the same, or '' (meaning "none")
local function opt_num_arg(v, what, lo, hi)
  if v == '' then return nil end
  return num_arg(v, what, lo, hi)
end

-- a partition id: kept as the string it came as
local function pid_arg(v)
  if not is_dec(v) or string.byte(v, 1) == 45 or dec_cmp(v, MAX_PID) > 0 then
    invalid('partition id', v, 'must be an integer from 0 to ' .. MAX_PID .. ' as a decimal string')
  end
  return v
end

-- an ID of a range (min/max): kept as the string it came as
local function id_arg(v, what)
  if not is_dec(v) or dec_cmp(v, MIN_ID) < 0 or dec_cmp(v, MAX_ID) > 0 then
    invalid(what, v, 'must be between ' .. MIN_ID .. ' and ' .. MAX_ID .. ' as a decimal string')
  end
  return v
end

-- a node id: any non-empty string (it keys the in-flight counts)
local function node_arg(v)
  if type(v) ~= 'string' or v == '' then invalid('node id', v, 'must be a non-empty string') end
  return v
end

local function fence_arg(v) return num_arg(v, 'fence', 0, MAX_FENCE) end
local function ms_arg(v, what) return num_arg(v, what, 1, MAX_EXACT) end
local function epoch_arg(v)
  if v ~= '' then num_arg(v, 'leader epoch', 0, MAX_FENCE) end
  return v
end

-- an item count, from an argument (string) or a decoded JSON value
local function items_arg(v)
  if type(v) == 'number' and v == math.floor(v) and v >= 0 and v <= MAX_EXACT then return v end
  if type(v) == 'string' then
    local ok = is_dec(v) and #v <= 16 and string.byte(v, 1) ~= 45
    if ok and tonumber(v) <= MAX_EXACT then return tonumber(v) end
  end
  invalid('items', v, 'must be an integer from 0 to ' .. fmt(MAX_EXACT))
end

-- exact sums of integers whose sum may pass 2^53: {high, low} in base 10^9
local E9 = 1000000000

local function acc_add(acc, n)
  local h = math.floor(n / E9)
  acc[1] = acc[1] + h
  acc[2] = acc[2] + (n - h * E9)
end

local function acc_str(acc)
  local h = acc[1] + math.floor(acc[2] / E9)
  local l = acc[2] % E9
  if h == 0 then return fmt(l) end
  if h > 0 then return string.format('%d%09d', h, l) end
  if l == 0 then return fmt(h) .. '000000000' end
  if h == -1 then return fmt(l - E9) end
  return string.format('-%d%09d', -h - 1, E9 - l)
end

local HOLDS = {claimed = true, running = true}

-- Where a partition's work resumes: after its checkpoint (the last ID its
-- owner recorded done, block.lua), else at its first ID. A partition done
-- up to its end resumes past it (an empty range: nothing left to do).
local function resume_from(p)
  if p.ckpt then return dec_add(p.ckpt, 1) end
  return p.min
end

-- Members of the ids and pending zsets carry the range, so the leader can
-- dispatch and detect gaps without reading partitions: "id:min:max".
local function member(id, p)
  return id .. ':' .. p.min .. ':' .. p.max
end

-- Stats counters. A script that changes many partitions in one call
-- (claim_many, complete_many) calls batch_stats() first and flush_stats()
-- before it returns: each counter is then written once per call instead of
-- once per partition, still in the same atomic call as the state changes.
local STATS_DELTA = nil

-- Increments go to HINCRBY as exact decimal strings (a Lua number argument
-- would reach Redis as e.g. "1e+17", which HINCRBY refuses), summed exactly
-- in a batch (items of many partitions can pass 2^53).
local function stat(field, n)
  if STATS_DELTA then
    local acc = STATS_DELTA[field]
    if not acc then acc = {0, 0}; STATS_DELTA[field] = acc end
    acc_add(acc, n)
  elseif n ~= 0 then  -- also keeps Lua's -0 ("-0", refused by HINCRBY) away
    redis.call('HINCRBY', KEYS[K_STATS], field, fmt(n))
  end
end

local function batch_stats()
  STATS_DELTA = {}
end

local function flush_stats()
  local delta = STATS_DELTA
  STATS_DELTA = nil
  for field, acc in pairs(delta or {}) do
    local n = acc_str(acc)
    if n ~= '0' then redis.call('HINCRBY', KEYS[K_STATS], field, n) end
  end
end

-- The items counter is an int64 in Redis: refuse a change that would
-- overflow it (HINCRBY would fail after this script's earlier writes).
local function items_guard(delta)
  local cur = redis.call('HGET', KEYS[K_STATS], 'items')
  if cur and #cur >= 18 and tonumber(cur) + delta > 9.2e18 then
    invalid('items', fmt(delta), 'would overflow the items counter (' .. cur .. ')')
  end
end

-- A pending partition is in `pending` (scored) or in `fresh` (never sent),
-- never in both. An entry leaves `fresh` by dispatch.lua taking it from the
-- head, or here (LREM, O(backlog)) on the rare paths that change a
-- partition nobody was sent yet: an API claim, update or delete.
local function unfresh(m)
  redis.call('LREM', KEYS[K_FRESH], 1, m)
end

-- Schedule pending partition p in `pending` at `score`, taking it out of
-- `fresh` if it was waiting there.
local function schedule(id, p, score)
  local m = member(id, p)
  if redis.call('ZADD', KEYS[K_PENDING], score, m) == 1 then unfresh(m) end
end

-- Move partition p (already loaded, id `id`) to status `to`, keeping the
-- stats counters and every status index in step. `score` is the pending
-- send time or the lease expiry, depending on `to` ('fresh' for a new
-- partition never sent: it joins the tail of `fresh`); `node` the new owner
-- when `to` holds a lease. `to` nil only unindexes (the partition is deleted).
local function move(id, p, to, now, score, node)
  local from = p.status
  if from then stat(from, -1) end
  if to then stat(to, 1) end
  if from == 'pending' and to ~= 'pending' then
    local m = member(id, p)
    if redis.call('ZREM', KEYS[K_PENDING], m) == 0 then unfresh(m) end
  elseif HOLDS[from] then
    if not HOLDS[to] then p.claim = nil end  -- a claim token names a held claim only
    redis.call('ZREM', KEYS[K_LEASES], id)
    if p.node and p.node ~= '' then
      if redis.call('HINCRBY', KEYS[K_INFLIGHT], p.node, -1) <= 0 then
        redis.call('HDEL', KEYS[K_INFLIGHT], p.node)
      end
    end
  elseif from == 'failed' then
    redis.call('ZREM', KEYS[K_FAILED], id)
  end
  if to == 'pending' and score == 'fresh' then
    redis.call('RPUSH', KEYS[K_FRESH], member(id, p))
    p.node = ''
  elseif to == 'pending' then
    if from == 'pending' then schedule(id, p, score or now)
    else redis.call('ZADD', KEYS[K_PENDING], score or now, member(id, p)) end
    p.node = ''
  elseif HOLDS[to] then
    p.node = node
    redis.call('ZADD', KEYS[K_LEASES], score, id)
    redis.call('HINCRBY', KEYS[K_INFLIGHT], node, 1)
  elseif to == 'failed' then
    redis.call('ZADD', KEYS[K_FAILED], now, id)
  end
  if to == nil then return end  -- deleted: only unindexed
  p.status = to
  p.version = (p.version or 0) + 1
  p.updated = now
end

-- Fences and leader epochs: the larger of the last one + 1 and Redis server
-- time in milliseconds. A counter alone restarts at 1 when its state is
-- lost (`elk reset` while workers run, a failover to a replica that missed
-- the last writes), and a worker still holding an old fence, or a user's
-- table fenced by it, would then accept a repeat. Server time keeps growing
-- across such a loss, so the next fence is larger than any handed out before
-- it once the clock has passed them: (1) Redis's clock must not step back
-- (a failover to a server whose clock is behind counts as a step), and (2)
-- a fence handed out in the same millisecond as the loss can repeat (fences
-- run ahead of the clock only while one partition is claimed more than once
-- per ms, and then by that many ms). An incarnation id folded into a counter
-- would need state that survives the loss, which is what is lost. Values
-- stay below 10^14 (exact in Lua and in cjson's 14 digits) until year 5138.
local function next_fence(old, now)
  return math.max((tonumber(old) or 0) + 1, now)
end

local function count(field, n)
  stat(field, n or 1)
end

-- A partition that was never sent (just planned or created) waits in
-- `fresh`; one whose task message is due again (recovered, released,
-- retried, deferred, sent and to be re-sent if lost) is in `pending`,
-- scored the time it is due. dispatch.lua sends the due ones first, so
-- re-sent work never waits behind the planned backlog. State written
-- before `fresh` existed kept never-sent partitions in `pending` at
-- FRESH + their creation time (10^13 ms is the year 2286: real times stay
-- below it); dispatch.lua still sends those, after the due ones.
local FRESH = 1e13

-- Wake the leader loop (it waits on this list, see leader/loop.py). At most
-- one entry: a burst of wake-ups costs one leader round.
local function wake(why)
  if redis.call('LLEN', KEYS[K_WAKE]) == 0 then
    redis.call('RPUSH', KEYS[K_WAKE], why)
  end
end

-- Leader fencing: `epoch` '' or '0' means "not a leader write" (strategy API).
local function leader_ok(epoch)
  if epoch == nil or epoch == '' or epoch == '0' then return true end
  local cur = redis.call('GET', KEYS[K_LEADER])
  if not cur then return false end
  local e = string.match(cur, '|(%d+)$')
  return e == epoch
end

-- A node is dead only when it registered and its heartbeat expired; an
-- unknown node (strategy API users that never heartbeat) is not.
local function node_dead(node, now)
  if not node or node == '' then return true end
  local exp = redis.call('ZSCORE', KEYS[K_NODES], node)
  return exp ~= false and tonumber(exp) <= now
end

-- A value is a partition only if it decodes to an object with a known
-- status and a range: anything else (e.g. '{"status":"pending"}' or an
-- unknown status) would otherwise crash a script half-way ("concatenate a
-- nil value") or corrupt the stats counters under a made-up status.
local STATUSES = {pending = true, claimed = true, running = true, completed = true, failed = true}

-- ------------------------------------------------------------- the record
-- A partition is stored as a JSON object with one-letter names, fields at
-- their defaults left out, and the status as one letter: a planned one is
-- {"s":"p","a":"5001","b":"6000","v":1,"c":1796172291084} (45 bytes; the
-- long names took 150). The id is not stored: the hash field or key names
-- it. Scripts see the long names (decode expands them). A record without
-- "s" is the encoding before this one (long names, "status"): read as it
-- is and rewritten compact on its next change. elk_celery/models.py reads
-- both the same way.
local SHORT = {status = 's', min = 'a', max = 'b', fence = 'f', version = 'v', attempts = 'n',
               items = 'i', node = 'o', error = 'e', opts = 'x', created = 'c', updated = 'u',
               hb = 'h', lease = 'l', probe = 'r', claim = 'k'}
local LONG = {}
for k, v in pairs(SHORT) do LONG[v] = k end
local STATUS_SHORT = {pending = 'p', claimed = 'c', running = 'r', completed = 'd', failed = 'f'}
local STATUS_LONG = {}
for k, v in pairs(STATUS_SHORT) do STATUS_LONG[v] = k end
-- left out when at these values
local DEFAULTS = {fence = 0, attempts = 0, items = '0', node = '', opts = ''}

local function expand(t)
  if t.s == nil then return t end  -- the long-name encoding
  local p = {}
  for k, v in pairs(t) do p[LONG[k] or k] = v end
  p.status = STATUS_LONG[t.s]
  for k, v in pairs(DEFAULTS) do
    if p[k] == nil then p[k] = v end
  end
  if p.updated == nil then p.updated = p.created end
  return p
end

local function encode(p)
  local t = {}
  for k, v in pairs(p) do
    local short = SHORT[k]
    if short then
      if v ~= DEFAULTS[k] and v ~= cjson.null then t[short] = v end
    elseif k ~= 'id' and v ~= cjson.null then
      -- fields without a short name (a run's checkpoint `ckpt`, claimed
      -- block `blk`, progress `prog`, ...) keep their own: dropping them
      -- would lose a resumable partition's place
      t[k] = v
    end
  end
  t.s = STATUS_SHORT[p.status]
  if p.updated == p.created then t.u = nil end
  return cjson.encode(t)
end

local function try_decode(raw)
  local ok, p = pcall(cjson.decode, raw)
  if ok and type(p) == 'table' then p = expand(p) end
  if not ok or type(p) ~= 'table' or not STATUSES[p.status]
      or (type(p.min) ~= 'string' and type(p.min) ~= 'number')
      or (type(p.max) ~= 'string' and type(p.max) ~= 'number') then
    return nil
  end
  return p
end

local function decode(raw, id)
  local p = try_decode(raw)
  if not p then
    error({err = 'ELK_CORRUPT partition ' .. tostring(id) ..
      ' holds a value that is not an elk partition: ' .. string.sub(raw, 1, 80)})
  end
  return p
end

-- ------------------------------------------------------------- quarantine
-- A partition whose stored value is not an elk partition would fail every
-- call that reads it, every round (a leader's recovery, compaction). The
-- scripts that must carry on (recover, compact, retry_failed, delete, and
-- quarantine.lua for a worker's claim) quarantine it instead: its id goes
-- to `corrupt` (score: when found), it leaves the status indexes, and its
-- count moves from its status to the stats field `corrupt` (event
-- `quarantined`). Its value stays, for an operator to read, and so does its
-- `ids` entry: its range stays covered, so nothing plans it again until an
-- operator deletes it (delete.lua; gap detection then plans the range).
-- Its old status is read from the index it is found in; a value that still
-- names its status, node or range (an edited JSON often does) helps.
-- `member`: its "id:min:max" when the caller knows it (a task message).
-- Returns true when newly quarantined, and its member when known.
local CORRUPT = {}  -- what p_load_q returns for such a value

local function quarantine(id, raw, member)
  local s_status = string.match(raw, '"status"%s*:%s*"(%a+)"')
    or STATUS_LONG[string.match(raw, '"s"%s*:%s*"(%a)"') or '']
  local s_node = string.match(raw, '"node"%s*:%s*"([^"]*)"') or string.match(raw, '"o"%s*:%s*"([^"]*)"')
  if not member then
    local lo = string.match(raw, '"min"%s*:%s*"?(%-?%d+)') or string.match(raw, '"a"%s*:%s*"?(%-?%d+)')
    local hi = string.match(raw, '"max"%s*:%s*"?(%-?%d+)') or string.match(raw, '"b"%s*:%s*"?(%-?%d+)')
    if lo and hi then member = id .. ':' .. lo .. ':' .. hi end
  end
  local fresh = redis.call('ZADD', KEYS[K_CORRUPT], 'NX', now_ms(), id) == 1
  local was
  if redis.call('ZREM', KEYS[K_LEASES], id) == 1 then
    was = HOLDS[s_status] and s_status or nil
    if not was then  -- claimed only through the strategy API: running is likelier
      was = tonumber(redis.call('HGET', KEYS[K_STATS], 'running') or '0') > 0 and 'running' or 'claimed'
    end
    if s_node and s_node ~= '' and redis.call('HINCRBY', KEYS[K_INFLIGHT], s_node, -1) <= 0 then
      redis.call('HDEL', KEYS[K_INFLIGHT], s_node)
    end
  elseif redis.call('ZREM', KEYS[K_FAILED], id) == 1 then
    was = 'failed'
  elseif member and (redis.call('ZREM', KEYS[K_PENDING], member) == 1
                      or redis.call('LREM', KEYS[K_FRESH], 1, member) == 1) then
    was = 'pending'
  else  -- in no status index: completed, or pending under a range it no longer says
    was = (s_status == 'pending') and 'pending' or 'completed'
  end
  if not fresh then return false, member end  -- counted when first found
  stat(was, -1)
  stat('corrupt', 1)
  stat('quarantined', 1)
  return true, member
end

-- Writes by a partition's owner are accepted only from the node that holds
-- it with the current fence token; anything else is a stale write.
local function owned(p, node, fence)
  return p ~= nil and HOLDS[p.status] == true and p.node == node
    and tostring(p.fence) == fence
end

local function stale(p)
  count('stale_writes')
  if not p then return {'missing', 0, '', ''} end
  return {'stale', p.fence or 0, p.status, p.node or ''}
end

-- Circuit breaker bookkeeping, in the same call as the outcome it records.
-- Only a probe's success closes a half-open breaker; a partition that was
-- already running when the breaker opened proves nothing about recovery.
local function breaker_success(probe)
  local state = redis.call('HGET', KEYS[K_BREAKER], 'state') or 'closed'
  if state == 'closed' then
    redis.call('HSET', KEYS[K_BREAKER], 'consecutive', 0)
  elseif state == 'half_open' and probe then
    redis.call('HSET', KEYS[K_BREAKER], 'state', 'closed', 'probes', 0, 'consecutive', 0,
      'closed_at', now_ms())
    redis.call('DEL', KEYS[K_BREAKER_FAILS])
  end
end

local function breaker_trip(now, why)
  redis.call('HSET', KEYS[K_BREAKER], 'state', 'open', 'opened_at', now, 'probes', 0,
    'reason', why)
  redis.call('HINCRBY', KEYS[K_BREAKER], 'trips', 1)
end

-- consecutive threshold, total threshold, window ms
local function breaker_failure(id, now, cons_max, total_max, window_ms)
  local state = redis.call('HGET', KEYS[K_BREAKER], 'state') or 'closed'
  local cons = redis.call('HINCRBY', KEYS[K_BREAKER], 'consecutive', 1)
  redis.call('ZADD', KEYS[K_BREAKER_FAILS], now, id)
  redis.call('ZREMRANGEBYSCORE', KEYS[K_BREAKER_FAILS], '-inf', now - window_ms)
  if state == 'open' then return end
  if state == 'half_open' then
    breaker_trip(now, 'probe failed')
  elseif cons >= cons_max then
    breaker_trip(now, cons .. ' consecutive failures')
  elseif redis.call('ZCARD', KEYS[K_BREAKER_FAILS]) >= total_max then
    breaker_trip(now, total_max .. ' partitions failed within the window')
  end
end

-- ----------------------------------------------------- breaker probe rounds
-- A half-open breaker admits probes in rounds: breaker field `round` grows
-- on each open -> half_open and each restart of a round whose probes never
-- reported. A probe carries the round that admitted it (p.probe = 'r<n>'),
-- and only a probe of the current half-open round holds one of its slots
-- (`probes`) or closes the breaker by succeeding; a probe from an earlier
-- round (the breaker re-opened, or the round restarted, after it started)
-- is a plain partition.

local function probe_of_round(p)
  if not p or not p.probe then return false end
  local b = redis.call('HMGET', KEYS[K_BREAKER], 'state', 'round')
  return b[1] == 'half_open' and tostring(p.probe) == 'r' .. (tonumber(b[2]) or 0)
end

-- p stops being a probe (released, recovered, failed, deleted, preempted):
-- the slot it held goes back, if it holds one of the current round
local function probe_drop(p)
  if probe_of_round(p) then
    if redis.call('HINCRBY', KEYS[K_BREAKER], 'probes', -1) < 0 then
      redis.call('HSET', KEYS[K_BREAKER], 'probes', 0)
    end
  end
  if p then p.probe = nil end
end

-- May a claim start while the breaker is not closed? Returns true and the
-- probe mark to give the partition, or false and the time (ms) before which
-- resending is pointless. `taken`: the partition being preempted, whose
-- probe slot of this round (if any) passes to the new claim.
local function breaker_admit(now, open_ms, max_probes, taken)
  local b = redis.call('HMGET', KEYS[K_BREAKER], 'state', 'opened_at', 'probes', 'half_open_at', 'round')
  local state = b[1] or 'closed'
  if state == 'closed' then return true, nil end
  local round, probes = tonumber(b[5]) or 0, tonumber(b[3]) or 0
  if state == 'open' then
    local opened = tonumber(b[2]) or 0
    if now < opened + open_ms then return false, opened + open_ms end
    round, probes = round + 1, 0
    redis.call('HSET', KEYS[K_BREAKER], 'state', 'half_open', 'probes', 0, 'half_open_at', now,
      'round', round)
  elseif now >= (tonumber(b[4]) or 0) + open_ms then
    -- probes that never reported (their worker died): a new round, in
    -- which they hold no slot
    round, probes = round + 1, 0
    redis.call('HSET', KEYS[K_BREAKER], 'probes', 0, 'half_open_at', now, 'round', round)
  end
  local mark = 'r' .. round
  if taken and tostring(taken.probe) == mark then return true, mark end
  if probes >= max_probes then return false, 0 end
  redis.call('HINCRBY', KEYS[K_BREAKER], 'probes', 1)
  return true, mark
end
