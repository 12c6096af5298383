-- fail.lua: the owner reports a partition failed; it is retried with
-- exponential backoff until it has run out of attempts, then stays failed.
--
-- KEYS: the common keys of _lib.lua, then the storage of partition 1.
-- ARGV[1]  partition id
-- ARGV[2]  node id of the owner
-- ARGV[3]  fence token the owner got from its claim
-- ARGV[4]  error text
-- ARGV[5]  max retries: attempts beyond the first that a partition gets
-- ARGV[6]  backoff base, ms (retry n waits base * 2^(n-1))
-- ARGV[7]  backoff cap, ms
-- ARGV[8]  '1' = may be retried, '0' = fail for good now
-- ARGV[9]  '1' = record the failure with the circuit breaker
-- ARGV[10] breaker: consecutive failures that open it
-- ARGV[11] breaker: failed partitions within the window that open it
-- ARGV[12] breaker: window, ms
-- A retry wakes the leader, which then knows when to send it again.
-- Reply: {'retry', version, delay_ms} | {'failed', version, 0}
--        | {'stale'|'missing', fence, status, node}

-- arguments, checked before anything is written (_lib.lua: numbers)
local id, node, fence = pid_arg(ARGV[1]), node_arg(ARGV[2]), ARGV[3]
fence_arg(fence)
local max_retries = num_arg(ARGV[5], 'max retries', 0, MAX_EXACT)
local base_ms = num_arg(ARGV[6], 'backoff ms', 0, MAX_EXACT)
local cap_ms = num_arg(ARGV[7], 'backoff cap ms', 0, MAX_EXACT)
num_arg(ARGV[10], 'breaker consecutive failures', 1, MAX_EXACT)
num_arg(ARGV[11], 'breaker total failures', 1, MAX_EXACT)
ms_arg(ARGV[12], 'breaker window ms')
local now = now_ms()
local p = p_load(1, id)
if not owned(p, node, fence) then return stale(p) end

lease_clear(1, p)
p.error = string.sub(ARGV[4], 1, 4000)
probe_drop(p)
local attempts = p.attempts or 1
local code, delay = 'failed', 0
if ARGV[8] == '1' and attempts <= max_retries then
  code = 'retry'
  delay = math.min(base_ms * 2 ^ (attempts - 1), cap_ms)
  delay = math.floor(delay)
  move(id, p, 'pending', now, now + delay)
  count('retried')
  wake('retry')  -- the leader's next look must come when this is due
else
  move(id, p, 'failed', now)
  count('failed_for_good')
end
p_save(1, id, p)
count('failures')
if ARGV[9] == '1' then
  breaker_failure(id, now, tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]))
end
return {code, p.version, delay}
