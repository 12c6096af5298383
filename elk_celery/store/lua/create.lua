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
-- ARGV[4]  JSON array of {id, min, max, opts}; id, min and max are decimal
--          strings (exact beyond 2^53, checked here), min <= max, ranges
--          disjoint (checked by the caller within the batch)
-- Reply: {'ok', created count} | {'stale_leader'} | {'cursor', current}
--   or an ELK_CONFLICT error naming the clash.

-- arguments, checked before anything is written (_lib.lua: numbers)
epoch_arg(ARGV[1])
if ARGV[2] ~= '' then id_arg(ARGV[2], 'expected cursor') end
if ARGV[3] ~= '' then id_arg(ARGV[3], 'new cursor') end
local decoded, batch = pcall(cjson.decode, ARGV[4])
if not decoded or type(batch) ~= 'table' then
  invalid('batch', ARGV[4], 'expected a JSON array of partitions')
end
for _, q in ipairs(batch) do
  if type(q) ~= 'table' then invalid('batch entry', q, 'expected an object') end
  pid_arg(q.id)
  id_arg(q.min, 'min ID')
  id_arg(q.max, 'max ID')
  if dec_cmp(q.min, q.max) > 0 then invalid('range', q.min .. '..' .. q.max, 'min must be <= max') end
  if q.opts ~= nil and type(q.opts) ~= 'string' then invalid('opts', q.opts, 'must be a JSON string') end
end

if not leader_ok(ARGV[1]) then
  count('stale_leader_writes')
  return {'stale_leader'}
end
if ARGV[2] ~= '' then
  local cur = redis.call('HGET', KEYS[K_META], 'cursor') or ''
  if cur ~= ARGV[2] then return {'cursor', cur} end
end

-- A stored partition whose range meets [a, b] (decimal strings): its
-- "id:min:max", or nil. Scores are doubles, exact only below 2^53, so
-- candidates are found by score (rounding keeps the order: a <= b gives
-- score(a) <= score(b)) and decided on the member's own exact bounds.
local function meets(m, a, b)
  local lo, hi = string.match(m, ':(%-?%d+):(%-?%d+)$')
  return lo ~= nil and dec_cmp(lo, b) <= 0 and dec_cmp(hi, a) >= 0
end

local function clash(a, b)
  -- partitions whose start scores within [score(a), score(b)]: every one
  -- starting in [a, b], and those starting just below a with a's score
  local offset = 0
  while true do
    local c = redis.call('ZRANGEBYSCORE', KEYS[K_IDS], a, b, 'LIMIT', offset, 100)
    for _, m in ipairs(c) do
      if meets(m, a, b) then return m end
    end
    if #c < 100 then break end
    offset = offset + 100
  end
  -- the partitions starting at the highest score below a's: of everything
  -- starting lower, only they can reach a (ranges are disjoint)
  local below = redis.call('ZREVRANGEBYSCORE', KEYS[K_IDS], '(' .. a, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if below[1] then
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[K_IDS], below[2], below[2])) do
      if meets(m, a, b) then return m end
    end
  end
  return nil
end

local now = now_ms()
local fresh = {}
-- IDs below the watermark were completed and compacted away: they are no
-- longer in `ids`, so the overlap check below could not see them
local watermark = redis.call('HGET', KEYS[K_META], 'watermark')
if watermark and not is_dec(watermark) then
  invalid('meta watermark', watermark, 'is not an integer (repair or reset the namespace)')
end
-- Fast path: when no stored partition meets the span of the whole batch
-- (the usual case: planning goes past every stored range), no new range can
-- overlap one, and the range queries per partition below are skipped.
-- (The batch's own ranges are disjoint: checked by the caller.)
local lo, hi
for _, q in ipairs(batch) do
  if not lo or dec_cmp(q.min, lo) < 0 then lo = q.min end
  if not hi or dec_cmp(q.max, hi) > 0 then hi = q.max end
end
local span_free = lo ~= nil and clash(lo, hi) == nil
for i, q in ipairs(batch) do
  local id = q.id
  local p = p_load(i, id)
  if p then
    if tostring(p.min) ~= q.min or tostring(p.max) ~= q.max then
      error({err = 'ELK_CONFLICT partition ' .. id .. ' exists with range ' .. p.min ..
        '..' .. p.max .. ', not ' .. q.min .. '..' .. q.max})
    end
  elseif watermark and dec_cmp(q.min, watermark) < 0 then
    error({err = 'ELK_CONFLICT range ' .. q.min .. '..' .. q.max .. ' of partition ' .. id ..
      ' starts below the watermark ' .. watermark .. ' (those IDs are completed and compacted)'})
  elseif span_free then
    fresh[#fresh + 1] = {i, id, q}
  else
    local other = clash(q.min, q.max)
    if other then
      error({err = 'ELK_CONFLICT range ' .. q.min .. '..' .. q.max .. ' of partition ' .. id ..
        ' overlaps partition ' .. other .. ' (id:min:max)'})
    end
    fresh[#fresh + 1] = {i, id, q}
  end
end

if #fresh > 1 then batch_stats() end
for _, f in ipairs(fresh) do
  local i, id, q = f[1], f[2], f[3]
  -- id and items as strings: cjson would write big numbers with 14 digits
  local p = {id = id, min = q.min, max = q.max, opts = q.opts or '', fence = 0,
             version = 0, attempts = 0, items = '0', created = now, node = ''}
  move(id, p, 'pending', now, 'fresh')  -- never sent yet: the tail of `fresh`
  redis.call('ZADD', KEYS[K_IDS], q.min, member(id, p))
  p_save(i, id, p)
end
count('total', #fresh)
count('created', #fresh)
-- keep the leader's id allocator ahead of ids chosen by API callers
local top = redis.call('HGET', KEYS[K_META], 'next_pid') or '0'
if not is_dec(top) then top = '0' end
local moved = false
for _, f in ipairs(fresh) do
  local nxt = dec_inc(f[2])
  if dec_cmp(nxt, top) > 0 then top, moved = nxt, true end
end
if moved then redis.call('HSET', KEYS[K_META], 'next_pid', top) end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[K_META], 'cursor', ARGV[3]) end
flush_stats()
return {'ok', #fresh}
