-- plan.lua: the leader plans IDs cursor..last as new pending partitions of
-- `size` IDs each (the last one may be shorter), numbered from meta
-- `next_pid`, and moves the planning cursor to last + 1. The ranges are
-- made here, so planning thousands of partitions is one call with a few
-- arguments. Fenced by the leader epoch and a compare-and-set of the cursor;
-- all or nothing: a range that overlaps a stored partition (someone created
-- partitions above the cursor through the API) fails the call with nothing
-- written. IDs are Lua numbers here: the caller keeps them below 2^53 (ids
-- and items are stored as strings, as create.lua stores them).
--
-- KEYS: the common keys of _lib.lua, then the storage of partitions
--       first..first+n-1 (n = ceil((last - cursor + 1) / size)).
-- ARGV[1] leader epoch ('' = not a leader write)
-- ARGV[2] expected planning cursor (the first ID to plan)
-- ARGV[3] last ID to plan (>= the cursor)
-- ARGV[4] IDs per partition (>= 1)
-- ARGV[5] expected meta `next_pid`: the first new partition's id
-- Reply: {'ok', partitions created, first partition id} | {'stale_leader'}
--        | {'cursor', current cursor} | {'next_pid', current next_pid}
--        or an ELK_CONFLICT error.

if not leader_ok(ARGV[1]) then
  count('stale_leader_writes')
  return {'stale_leader'}
end
-- arguments, checked before anything is written (_lib.lua: numbers)
epoch_arg(ARGV[1])
num_arg(ARGV[2], 'cursor', -MAX_EXACT, MAX_EXACT)
num_arg(ARGV[3], 'last ID', -MAX_EXACT, MAX_EXACT)
num_arg(ARGV[4], 'partition size', 1, MAX_EXACT)
num_arg(ARGV[5], 'first partition id', 0, MAX_EXACT)

local cur = redis.call('HMGET', KEYS[K_META], 'cursor', 'next_pid')
if (cur[1] or '') ~= ARGV[2] then return {'cursor', cur[1] or ''} end
if (cur[2] or '0') ~= ARGV[5] then return {'next_pid', cur[2] or '0'} end
local lo, last, size = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])

local watermark = redis.call('HGET', KEYS[K_META], 'watermark')
if watermark and lo < tonumber(watermark) then
  error({err = 'ELK_CONFLICT planning ' .. ARGV[2] .. '..' .. ARGV[3] ..
    ' starts below the watermark ' .. watermark .. ' (those IDs are completed and compacted)'})
end
-- nothing stored may start inside the span, nor reach into it from below
local inside = redis.call('ZRANGEBYSCORE', KEYS[K_IDS], ARGV[2], ARGV[3], 'LIMIT', 0, 1)
local clash = inside[1]
if not clash then
  local before = redis.call('ZREVRANGEBYSCORE', KEYS[K_IDS], '(' .. ARGV[2], '-inf', 'LIMIT', 0, 1)
  if before[1] and tonumber(string.match(before[1], ':(%-?%d+)$')) >= lo then clash = before[1] end
end
if clash then
  error({err = 'ELK_CONFLICT planning ' .. ARGV[2] .. '..' .. ARGV[3] ..
    ' overlaps partition ' .. clash .. ' (id:min:max)'})
end

local now = now_ms()
local first = tonumber(ARGV[5])
local pid = first
-- The records are written as text and the index entries in batches: this
-- loop is what planning a million partitions costs (about 3 us each here,
-- against 12 us through move(), cjson and a call per record and index entry). The
-- record is what move() and create.lua would store.
local pend, ids, recs = {}, {}, {}
local function flush()
  if #pend > 0 then
    p_save_raws(recs)
    redis.call('RPUSH', KEYS[K_FRESH], unpack(pend))
    redis.call('ZADD', KEYS[K_IDS], unpack(ids))
    pend, ids, recs = {}, {}, {}
  end
end
local tail = '","v":1,"c":' .. now .. '}'
while lo <= last do
  local hi = math.min(lo + size - 1, last)
  local id, a, b = fmt(pid), fmt(lo), fmt(hi)
  local k = #recs
  recs[k + 1], recs[k + 2] = pid - first + 1, id
  recs[k + 3] = '{"s":"p","a":"' .. a .. '","b":"' .. b .. tail
  local m = id .. ':' .. a .. ':' .. b
  pend[#pend + 1] = m
  ids[#ids + 1], ids[#ids + 2] = a, m
  if #pend >= 2000 then flush() end
  pid = pid + 1
  lo = hi + 1
end
flush()
local n = pid - first
count('total', n)
count('created', n)
count('pending', n)
redis.call('HSET', KEYS[K_META], 'next_pid', fmt(pid), 'cursor', fmt(last + 1))
return {'ok', n, first}
