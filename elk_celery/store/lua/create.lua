-- create.lua: create partitions that do not exist yet, all or nothing.
-- The whole batch is checked before anything is written: an id that exists
-- with another range, or a range that overlaps another partition, fails
-- the call. Planning by the leader is fenced by its epoch and by a
-- compare-and-set of the planning cursor.
--
-- KEYS: the common keys of _lib.lua, then the storage of partitions 1..n.
-- ARGV[1]  leader epoch ('' = not a leader write)
-- ARGV[2]  expected planning cursor ('' = don't check or move it)
-- ARGV[3]  new planning cursor
-- ARGV[4]  JSON array of {id, min, max, opts}; min/max are decimal strings
--          (exact beyond 2^53), min <= max, ranges disjoint (checked by the
--          caller within the batch)
-- Reply: {'ok', created count} | {'stale_leader'} | {'cursor', current}
--   or an ELK_CONFLICT error naming the clash.

if not leader_ok(ARGV[1]) then
  count('stale_leader_writes')
  return {'stale_leader'}
end
if ARGV[2] ~= '' then
  local cur = redis.call('HGET', KEYS[K_META], 'cursor') or ''
  if cur ~= ARGV[2] then return {'cursor', cur} end
end

local now = now_ms()
local batch = cjson.decode(ARGV[4])
local fresh = {}
-- IDs below the watermark were completed and compacted away: they are no
-- longer in `ids`, so the overlap check below could not see them
local watermark = redis.call('HGET', KEYS[K_META], 'watermark')
-- Fast path: when no stored partition meets the span of the whole batch
-- (the usual case: planning goes past every stored range), no new range can
-- overlap one, and the two range queries per partition below are skipped.
-- (The batch's own ranges are disjoint: checked by the caller.)
local lo_s, lo, hi
for _, q in ipairs(batch) do
  local a, b = tonumber(q.min), tonumber(q.max)
  if not lo or a < lo then lo, lo_s = a, q.min end
  if not hi or b > hi then hi = b end
end
local span_free = false
if lo and #redis.call('ZRANGEBYSCORE', KEYS[K_IDS], lo_s, hi, 'LIMIT', 0, 1) == 0 then
  local before = redis.call('ZREVRANGEBYSCORE', KEYS[K_IDS], '(' .. lo_s, '-inf', 'LIMIT', 0, 1)
  span_free = not before[1] or tonumber(string.match(before[1], ':(%-?%d+)$')) < lo
end
for i, q in ipairs(batch) do
  local id = tostring(q.id)
  local p = p_load(i, id)
  if p then
    if p.min ~= q.min or p.max ~= q.max then
      error({err = 'ELK_CONFLICT partition ' .. id .. ' exists with range ' .. p.min ..
        '..' .. p.max .. ', not ' .. q.min .. '..' .. q.max})
    end
  elseif watermark and tonumber(q.min) < tonumber(watermark) then
    error({err = 'ELK_CONFLICT range ' .. q.min .. '..' .. q.max .. ' of partition ' .. id ..
      ' starts below the watermark ' .. watermark .. ' (those IDs are completed and compacted)'})
  elseif span_free then
    fresh[#fresh + 1] = {i, id, q}
  else
    -- another partition starting inside [min, max]?
    local inside = redis.call('ZRANGEBYSCORE', KEYS[K_IDS], q.min, q.max, 'LIMIT', 0, 1)
    local before = redis.call('ZREVRANGEBYSCORE', KEYS[K_IDS], '(' .. q.min, '-inf', 'LIMIT', 0, 1)
    local clash = inside[1]
    if not clash and before[1] then
      local bmax = string.match(before[1], ':(%-?%d+)$')
      if tonumber(bmax) >= tonumber(q.min) then clash = before[1] end
    end
    if clash then
      error({err = 'ELK_CONFLICT range ' .. q.min .. '..' .. q.max .. ' of partition ' .. id ..
        ' overlaps partition ' .. clash .. ' (id:min:max)'})
    end
    fresh[#fresh + 1] = {i, id, q}
  end
end

if #fresh > 1 then batch_stats() end
for _, f in ipairs(fresh) do
  local i, id, q = f[1], f[2], f[3]
  local p = {id = tonumber(id), min = q.min, max = q.max, opts = q.opts or '', fence = 0,
             version = 0, attempts = 0, items = 0, created = now, node = ''}
  move(id, p, 'pending', now, FRESH + now)  -- never sent yet: the fresh band
  redis.call('ZADD', KEYS[K_IDS], q.min, member(id, p))
  p_save(i, id, p)
end
count('total', #fresh)
count('created', #fresh)
-- keep the leader's id allocator ahead of ids chosen by API callers
local top = 0
for _, f in ipairs(fresh) do top = math.max(top, tonumber(f[2]) + 1) end
if top > tonumber(redis.call('HGET', KEYS[K_META], 'next_pid') or '0') then
  redis.call('HSET', KEYS[K_META], 'next_pid', top)
end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[K_META], 'cursor', ARGV[3]) end
flush_stats()
return {'ok', #fresh}
