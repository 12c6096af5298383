-- dispatch.lua: the leader picks pending partitions whose send time has
-- come and reschedules each one's next send `resend_ms` ahead, so a task
-- message that was lost (purged queue, broker restart) is sent again, while
-- a duplicate only finds the partition taken.
--
-- KEYS: the common keys of _lib.lua (no partition storage).
-- ARGV[1] leader epoch ('' = not a leader write)
-- ARGV[2] max partitions to pick
-- ARGV[3] resend after, ms
-- Reply: {'ok', {"id:min:max", ...}} | {'stale_leader'}

-- arguments, checked before anything is written (_lib.lua: numbers)
epoch_arg(ARGV[1])
local limit = num_arg(ARGV[2], 'max partitions', 0, MAX_EXACT)
local resend_ms = num_arg(ARGV[3], 'resend ms', 0, MAX_EXACT)

if not leader_ok(ARGV[1]) then
  count('stale_leader_writes')
  return {'stale_leader'}
end
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[K_PENDING], '-inf', now, 'LIMIT', 0, limit)
local later = now + resend_ms
for _, m in ipairs(due) do
  redis.call('ZADD', KEYS[K_PENDING], later, m)
end
count('dispatched', #due)
return {'ok', due}
