-- dispatch.lua: the leader picks pending partitions to send task messages
-- for: first those whose send time has come (re-sent work: recovered,
-- released, retried, deferred, or sent before and never claimed), then
-- never-sent ones in planning order (the list `fresh`, see _lib.lua). Each one's next
-- send is rescheduled `resend_ms` ahead, so a task message that was lost
-- (purged queue, broker restart) is sent again, while a duplicate only finds
-- the partition taken. Each picked id enters `queued` (sent, not yet
-- claimed): the leader keeps that count near its target, and claim.lua
-- wakes the leader when it falls to `refill_below` or the pending backlog
-- falls to `plan_below` (both stored in meta here, for claim.lua to read).
--
-- KEYS: the common keys of _lib.lua (no partition storage).
-- ARGV[1] leader epoch ('' = not a leader write)
-- ARGV[2] max partitions to pick (>= 0)
-- ARGV[3] resend after, ms
-- ARGV[4] refill_below: wake the leader when `queued` holds this many or fewer
--         ('' = leave meta as it is)
-- ARGV[5] plan_below: ... or when this many or fewer partitions are pending
-- Reply: {'ok', {"id:min:max", ...}, next due ms (-1 = none), server time ms}
--        | {'stale_leader'}
--   next due: the earliest send time still ahead among re-sent partitions
--   (when the leader should look again).

-- arguments, checked before anything is written (_lib.lua: numbers)
epoch_arg(ARGV[1])
local limit = num_arg(ARGV[2], 'max partitions', 0, MAX_EXACT)
local resend_ms = num_arg(ARGV[3], 'resend ms', 0, MAX_EXACT)
local refill_below = opt_num_arg(ARGV[4], 'refill_below', 0, MAX_EXACT)
local plan_below = refill_below and num_arg(ARGV[5], 'plan_below', 0, MAX_EXACT)

if not leader_ok(ARGV[1]) then
  count('stale_leader_writes')
  return {'stale_leader'}
end
local now = now_ms()
local due = {}
if limit > 0 then
  due = redis.call('ZRANGEBYSCORE', KEYS[K_PENDING], '-inf', now, 'LIMIT', 0, limit)
  if #due < limit then  -- never-sent ones of state written before `fresh` (_lib.lua)
    local old = redis.call('ZRANGEBYSCORE', KEYS[K_PENDING], FRESH, '+inf', 'LIMIT', 0,
      limit - #due)
    for _, m in ipairs(old) do due[#due + 1] = m end
  end
  if #due < limit then  -- then the planned backlog, from the head of `fresh`
    local n = limit - #due
    local fresh = redis.call('LRANGE', KEYS[K_FRESH], 0, n - 1)
    if #fresh > 0 then redis.call('LTRIM', KEYS[K_FRESH], #fresh, -1) end
    for _, m in ipairs(fresh) do due[#due + 1] = m end
  end
end
local later = now + resend_ms
for _, m in ipairs(due) do
  redis.call('ZADD', KEYS[K_PENDING], later, m)
  redis.call('ZADD', KEYS[K_QUEUED], now, string.match(m, '^([^:]+):'))
end
count('dispatched', #due)
if refill_below then
  redis.call('HSET', KEYS[K_META], 'refill_below', ARGV[4], 'plan_below', ARGV[5])
end
local nxt = redis.call('ZRANGEBYSCORE', KEYS[K_PENDING], '(' .. now, '(' .. FRESH,
  'WITHSCORES', 'LIMIT', 0, 1)
return {'ok', due, nxt[2] and tonumber(nxt[2]) or -1, now}
