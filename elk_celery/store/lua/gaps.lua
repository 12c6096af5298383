-- gaps.lua: one bounded step of a gap scan over the `ids` index, run inside
-- Redis so that checking a million partitions moves the gaps found, not a
-- million index entries (see elk_celery/gaps.py). Read-only.
--
-- IDs are handled as Lua numbers: the caller uses this script only when
-- every ID of the span is below 2^53 in magnitude (else it scans in Python).
--
-- KEYS: the common keys of _lib.lua (no partition storage; only `ids` is read).
-- ARGV[1] expected: the first ID not yet known to be covered (decimal)
-- ARGV[2] end: the last ID of the span to scan (decimal)
-- ARGV[3] max index entries to read in this call
-- ARGV[4] '1' = first step: a partition starting below `expected` may reach
--         into the span, look at it too
-- Reply: {expected after this step, '1' if the scan is finished else '0',
--         entries read, {gap min, gap max, gap min, gap max, ...}}
--   (all IDs as decimal strings). The next step starts at the returned
--   expected: partitions never overlap, so every partition starting below
--   it has been seen.
-- arguments (_lib.lua: numbers); the caller keeps them below 2^53
local expected = num_arg(ARGV[1], 'expected ID', -MAX_EXACT, MAX_EXACT)
local last = num_arg(ARGV[2], 'end ID', -MAX_EXACT, MAX_EXACT)
local limit = num_arg(ARGV[3], 'max entries', 1, MAX_EXACT)
local gaps = {}

local function bounds(m)
  local lo, hi = string.match(m, ':(%-?%d+):(%-?%d+)$')
  return tonumber(lo), tonumber(hi)
end

if ARGV[4] == '1' then
  local below = redis.call('ZREVRANGEBYSCORE', KEYS[K_IDS], '(' .. ARGV[1], '-inf', 'LIMIT', 0, 1)
  if below[1] then
    local _, hi = bounds(below[1])
    if hi + 1 > expected then expected = hi + 1 end
  end
end

local read = 0
local finished = true
if expected <= last then
  local chunk = redis.call('ZRANGEBYSCORE', KEYS[K_IDS], fmt(expected), ARGV[2], 'LIMIT', 0, limit)
  read = #chunk
  for _, m in ipairs(chunk) do
    local lo, hi = bounds(m)
    if lo > expected then
      gaps[#gaps + 1] = fmt(expected)
      gaps[#gaps + 1] = fmt(lo - 1)
    end
    if hi + 1 > expected then expected = hi + 1 end
  end
  finished = read < limit or expected > last
end
if finished and expected <= last then
  gaps[#gaps + 1] = fmt(expected)
  gaps[#gaps + 1] = fmt(last)
  expected = last + 1
end
return {fmt(expected), finished and '1' or '0', read, gaps}
