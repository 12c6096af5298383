-- claim.lua: take a partition for a node. The worker's hot path: one call,
-- a compact reply; the full partition can be read afterwards.
--
-- KEYS: the common keys of _lib.lua, then the storage of partition 1.
-- ARGV[1]  partition id
-- ARGV[2]  node id of the claimer
-- ARGV[3]  target status: 'claimed' (strategy API) or 'running' (worker)
-- ARGV[4]  lease length, ms
-- ARGV[5]  '1' = take a partition whose lease expired or whose owner is dead
-- ARGV[6]  '1' = take it whatever holds it (operator's force)
-- ARGV[7]  task window: max partitions the node may hold, '0' = no cap
-- ARGV[8]  on a window/breaker refusal, resend the task after this many ms
--          ('0' = leave the pending partition's schedule alone)
-- ARGV[9]  '1' = the namespace's circuit breaker is on
-- ARGV[10] breaker open timeout, ms
-- ARGV[11] breaker: max concurrent half-open probes
-- ARGV[12] '1' = refuse when the claimer's own heartbeat expired
-- Reply: {code, fence, attempts, version, min, max, opts}
--   code: 'ok' | 'preempted' | 'missing' | 'completed' | 'failed' | 'held'
--         | 'window' | 'breaker' | 'dead'

local id, node, target = ARGV[1], ARGV[2], ARGV[3]
local lease_ms = tonumber(ARGV[4])
local now = now_ms()

local p = p_load(1, id)
if not p then return {'missing', 0, 0, 0, '', '', ''} end
local function reply(code)
  return {code, p.fence or 0, p.attempts or 0, p.version or 0, p.min, p.max, p.opts or ''}
end
if p.status == 'completed' or p.status == 'failed' then return reply(p.status) end

local preempt = false
if HOLDS[p.status] then
  if ARGV[6] ~= '1' then
    local takeable = ARGV[5] == '1' and
      (not lease_alive(1, p, now) or node_dead(p.node, now))
    if not takeable then return reply('held') end
  end
  preempt = true
end

if ARGV[12] == '1' and node_dead(node, now) then return reply('dead') end

local function defer(code)
  local ms = tonumber(ARGV[8])
  if p.status == 'pending' and ms > 0 then
    redis.call('ZADD', KEYS[K_PENDING], now + ms, member(id, p))
  end
  count('deferred_' .. code)
  return reply(code)
end

local window = tonumber(ARGV[7])
if window > 0 then
  local held = tonumber(redis.call('HGET', KEYS[K_INFLIGHT], node) or '0')
  if held >= window then return defer('window') end
end

local probe = false
if ARGV[9] == '1' then
  local b = redis.call('HMGET', KEYS[K_BREAKER], 'state', 'opened_at', 'probes')
  local state = b[1] or 'closed'
  if state ~= 'closed' then
    local opened = tonumber(b[2] or '0')
    local open_ms = tonumber(ARGV[10])
    if state == 'open' then
      if now < opened + open_ms then return defer('breaker') end
      redis.call('HSET', KEYS[K_BREAKER], 'state', 'half_open', 'probes', 0, 'half_open_at', now)
      b[3] = '0'
    elseif now >= tonumber(redis.call('HGET', KEYS[K_BREAKER], 'half_open_at') or '0') + open_ms then
      -- probes that never reported (their worker died) free their slots
      redis.call('HSET', KEYS[K_BREAKER], 'probes', 0, 'half_open_at', now)
      b[3] = '0'
    end
    if tonumber(b[3] or '0') >= tonumber(ARGV[11]) then return defer('breaker') end
    redis.call('HINCRBY', KEYS[K_BREAKER], 'probes', 1)
    probe = true
  end
end

if preempt then
  lease_clear(1, p)
  count('preempted')
end
p.fence = (p.fence or 0) + 1
p.attempts = (p.attempts or 0) + 1
p.probe = probe and 1 or nil
p.hb = now
move(id, p, target, now, now + lease_ms, node)
lease_set(1, p, now, lease_ms)
p_save(1, id, p)
count('claims')
return reply(preempt and 'preempted' or 'ok')
