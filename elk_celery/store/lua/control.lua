-- control.lua: pause, resume or cancel a job (`elk pause|resume|cancel`,
-- Job.pause()/.resume()/.cancel()). The state lives in meta, where
-- claim.lua refuses claims of a paused or cancelled job, block.lua tells
-- running partitions to stop (with stop-running), and the leader stops
-- planning and sending. A cancelled job stays cancelled until `elk reset`.
--
-- KEYS: the common keys of _lib.lua.
-- ARGV[1] 'pause' | 'resume' | 'cancel'
-- ARGV[2] '1' = running partitions stop at their next block and are handed
--         back (pause and cancel); '0' = they finish
-- Meta fields written: `control` ('paused' | 'cancelled'; absent = running),
-- `stop_running` ('1' | absent), `control_at` (ms).
-- Reply: {'ok', new state} | {'cancelled'} (resume or pause of a
--        cancelled job: refused)

local action, stop = ARGV[1], ARGV[2]
if action ~= 'pause' and action ~= 'resume' and action ~= 'cancel' then
  invalid('control action', action, "must be 'pause', 'resume' or 'cancel'")
end
if stop ~= '0' and stop ~= '1' then invalid('stop running', stop, "must be '0' or '1'") end
local cur = redis.call('HGET', KEYS[K_META], 'control')
if cur == 'cancelled' and action ~= 'cancel' then return {'cancelled'} end
local now = now_ms()
local state = 'running'
if action == 'resume' then
  redis.call('HDEL', KEYS[K_META], 'control', 'stop_running')
  redis.call('HSET', KEYS[K_META], 'control_at', now)
  count('job_resumed')
else
  state = action == 'pause' and 'paused' or 'cancelled'
  redis.call('HSET', KEYS[K_META], 'control', state, 'control_at', now)
  if stop == '1' then redis.call('HSET', KEYS[K_META], 'stop_running', '1')
  else redis.call('HDEL', KEYS[K_META], 'stop_running') end
  count('job_' .. state)
end
wake('control')  -- the leader stops (or goes on) at once
return {'ok', state}
