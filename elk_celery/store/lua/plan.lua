-- plan.lua: the leader plans IDs cursor..last as new pending partitions of
-- `size` IDs each (the last one may be shorter), numbered from meta
-- `next_pid`, and moves the planning cursor to last + 1. The ranges are
-- made here, so planning thousands of partitions is one call with a few
-- arguments. Fenced by the leader epoch and a compare-and-set of the cursor;
-- all or nothing: a range that overlaps a stored partition (someone created
-- partitions above the cursor through the API) fails the call with nothing
-- written. IDs are Lua numbers here: the caller keeps them below 2^53.
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
local cur = redis.call('HMGET', KEYS[K_META], 'cursor', 'next_pid')
if (cur[1] or '') ~= ARGV[2] then return {'cursor', cur[1] or ''} end
if (cur[2] or '0') ~= ARGV[5] then return {'next_pid', cur[2] or '0'} end
local lo, last, size = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function fmt(n) return string.format('%d', n) end

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
batch_stats()
while lo <= last do
  local hi = math.min(lo + size - 1, last)
  local id = fmt(pid)
  local p = {id = pid, min = fmt(lo), max = fmt(hi), opts = '', fence = 0, version = 0,
             attempts = 0, items = 0, created = now, node = ''}
  move(id, p, 'pending', now, FRESH + now)
  redis.call('ZADD', KEYS[K_IDS], p.min, member(id, p))
  p_save(pid - first + 1, id, p)
  pid = pid + 1
  lo = hi + 1
end
local n = pid - first
count('total', n)
count('created', n)
flush_stats()
redis.call('HSET', KEYS[K_META], 'next_pid', fmt(pid), 'cursor', fmt(last + 1))
return {'ok', n, first}
