-- compact.lua: forget the completed prefix of a job, so memory stays bounded
-- on jobs with millions of partitions. Removes the longest contiguous run of
-- completed partitions at the low end of the `ids` index (at most the
-- candidates the caller names) from storage and from `ids`, and moves the
-- meta `watermark` past them: every ID below the watermark is done.
--
-- The run must start at the current watermark (else meta `start_id`, else
-- ARGV[2]) and be contiguous: a hole between two partitions stops it, unless
-- gap detection recorded that hole as holding no data (an entry of meta
-- `gaps` with flag 1, see elk_celery/gaps.py), so an uncovered range is never
-- hidden below the watermark.
--
-- Stats `total`, `completed` and `items` are left as they are (progress and
-- get_partition_stats stay right); `compacted` counts the partitions removed.
--
-- KEYS: the common keys of _lib.lua, then the storage of partitions 1..n
--       (the candidates of ARGV[3..], in that order).
-- ARGV[1]  leader epoch ('' = not a leader write)
-- ARGV[2]  first ID of the job, used when meta holds neither `watermark` nor
--          `start_id` (decimal string)
-- ARGV[3..] candidates: the lowest members "id:min:max" of `ids`, as the
--          caller read them (ZRANGE ids 0 n-1). The run stops at the first
--          candidate that is no longer the i-th lowest member, is not
--          completed, or does not continue the run.
-- meta read:    watermark, start_id, gaps (JSON [[lo, hi, flag], ...])
-- meta written: watermark; gaps without the entries below the new watermark
-- Reply: {'ok', partitions compacted, watermark} | {'stale_leader'}
-- arguments, checked before anything is written (_lib.lua: numbers)
epoch_arg(ARGV[1])
id_arg(ARGV[2], 'first ID')

if not leader_ok(ARGV[1]) then
  count('stale_leader_writes')
  return {'stale_leader'}
end

-- IDs are decimal strings, exact beyond 2^53: below 10^15 they are stepped
-- and compared as Lua numbers (exact there), above as digit strings
-- (non-negative ones; others fall back to numbers).
local function small(s) return #s < 16 end

local function digits_of(s)
  local d = {}
  for c in string.gmatch(s, '%d') do d[#d + 1] = tonumber(c) end
  return d
end

local function strip(s)
  return (string.gsub(s, '^0+(%d)', '%1'))
end

local function inc(s)
  if small(s) or not string.match(s, '^%d+$') then
    return string.format('%d', tonumber(s) + 1)
  end
  local d, i = digits_of(s), #s
  while i >= 1 and d[i] == 9 do d[i] = 0; i = i - 1 end
  if i < 1 then table.insert(d, 1, 1) else d[i] = d[i] + 1 end
  return strip(table.concat(d))
end

local function dec(s)
  if small(s) or not string.match(s, '^%d+$') then
    return string.format('%d', tonumber(s) - 1)
  end
  local d, i = digits_of(s), #s
  while d[i] == 0 do d[i] = 9; i = i - 1 end
  d[i] = d[i] - 1
  return strip(table.concat(d))
end

-- a < b
local function less(a, b)
  a, b = tostring(a), tostring(b)
  if (small(a) and small(b)) or not (string.match(a, '^%d+$') and string.match(b, '^%d+$')) then
    return tonumber(a) < tonumber(b)
  end
  a, b = strip(a), strip(b)
  if #a ~= #b then return #a < #b end
  return a < b
end

local meta = redis.call('HMGET', KEYS[K_META], 'watermark', 'start_id', 'gaps')
local wm = meta[1] or meta[2] or ARGV[2]
local gaps = {}
if meta[3] then
  local ok, g = pcall(cjson.decode, meta[3])
  if ok and type(g) == 'table' then gaps = g end
end

-- may the run jump the hole [from, to] (inclusive)? Only when gap detection
-- found it holds no data.
local function empty_hole(from, to)
  for _, g in ipairs(gaps) do
    if type(g) == 'table' and tonumber(g[3]) == 1 and g[1] and g[2]
        and not less(from, g[1]) and not less(g[2], to) then
      return true
    end
  end
  return false
end

local n = #ARGV - 2
local lowest = redis.call('ZRANGE', KEYS[K_IDS], 0, n - 1)
local done = 0
for i = 1, n do
  local m = ARGV[i + 2]
  if lowest[i] ~= m then break end
  local id, lo, hi = string.match(m, '^(%d+):(%-?%d+):(%-?%d+)$')
  if not id then break end
  -- a hole [wm, lo - 1] before this partition stops the run, unless empty
  if lo ~= wm and less(wm, lo) and not empty_hole(wm, dec(lo)) then break end
  local p = p_load_q(i, id, m)  -- a corrupt one is quarantined: its state is unknown
  if not p or p == CORRUPT or p.status ~= 'completed' then break end
  redis.call('ZREM', KEYS[K_IDS], m)
  p_delete(i, id)
  local nxt = inc(hi)
  if less(wm, nxt) then wm = nxt end
  done = done + 1
end

if done > 0 then
  redis.call('HSET', KEYS[K_META], 'watermark', wm)
  count('compacted', done)
  local kept, dropped = {}, false
  for _, g in ipairs(gaps) do
    if type(g) == 'table' and g[2] and less(g[2], wm) then
      dropped = true
    else
      kept[#kept + 1] = g
    end
  end
  if dropped then
    redis.call('HSET', KEYS[K_META], 'gaps', #kept > 0 and cjson.encode(kept) or '[]')
  end
end
return {'ok', done, wm}
