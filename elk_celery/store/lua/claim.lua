-- claim.lua: take partitions for a node. The worker's hot path: one call,
-- a compact reply; the full partition can be read afterwards. One call may
-- claim several partitions (claim_many): they are decided one after the
-- other, exactly as separate calls in that order would be.
--
-- KEYS: the common keys of _lib.lua, then the storage of partitions 1..n.
-- ARGV[1]  node id of the claimer
-- ARGV[2]  target status: 'claimed' (strategy API) or 'running' (worker)
-- ARGV[3]  lease length, ms
-- ARGV[4]  '1' = take a partition whose lease expired or whose owner is dead
-- ARGV[5]  '1' = take it whatever holds it (operator's force)
-- ARGV[6]  task window: max partitions the node may hold, '0' = no cap
-- ARGV[7]  on a window/breaker refusal, resend the task after this many ms
--          ('0' = leave the pending partition's schedule alone)
-- ARGV[8]  '1' = the namespace's circuit breaker is on
-- ARGV[9]  breaker open timeout, ms
-- ARGV[10] breaker: max concurrent half-open probes
-- ARGV[11] '1' = refuse when the claimer's own heartbeat expired
-- ARGV[12] cluster-wide rate limit: claims per 1000 s ('0' = none); a token
--          bucket in meta (`rl_tokens`, `rl_at`) holding one second's worth
--          (at least one claim). A claim that finds it empty is refused
--          'throttled' (the partition's schedule is left alone: the worker
--          waits and claims again, holding its message)
-- ARGV[13] claim token ('' = none): a partition this node holds under the
--          same token was claimed by an earlier try of this very call (its
--          reply was lost); it is answered 'ok' again, unchanged
-- ARGV[14..] partition ids, one or more (the i-th uses the i-th storage keys)
-- Reply: 7 items per partition, in order: code, fence, attempts, version,
--   min (where the work resumes: after the checkpoint, block.lua), max,
--   opts; code: 'ok' | 'preempted' | 'missing' | 'completed' | 'failed'
--   | 'held' | 'window' | 'breaker' | 'dead' | 'paused' | 'cancelled'
--   | 'throttled'
--   ('paused'/'cancelled': meta `control`, set by control.lua; the pending
--   partition is due again at once, for when the job resumes)
-- Whatever the outcome, each partition leaves `queued`: its task message
-- was taken. When that leaves `queued` at or below meta `refill_below`, or
-- the pending backlog at or below meta `plan_below` (set by dispatch.lua),
-- the leader is woken to send and plan more.

local FIRST = 14
-- arguments, checked before anything is written (_lib.lua: numbers)
local node, target = node_arg(ARGV[1]), ARGV[2]
if not HOLDS[target] then invalid('target', target, "must be 'claimed' or 'running'") end
local lease_ms = ms_arg(ARGV[3], 'lease ms')
local window = num_arg(ARGV[6], 'task window', 0, MAX_EXACT)
local defer_ms = num_arg(ARGV[7], 'defer ms', 0, MAX_EXACT)
local open_ms = ms_arg(ARGV[9], 'breaker open timeout ms')
local max_probes = num_arg(ARGV[10], 'breaker probes', 0, MAX_EXACT)
local rate = num_arg(ARGV[12], 'claims per 1000 s', 0, MAX_EXACT) / 1000  -- per second
for a = FIRST, #ARGV do pid_arg(ARGV[a]) end
local token = ARGV[13]
if #token > 200 then invalid('claim token', token, 'must be at most 200 characters') end
local now = now_ms()

-- Read (and so validate) every partition before changing anything: a
-- corrupt one fails the call with nothing written.
-- An id named twice shares one table, so its second claim sees the first.
local parts, seen = {}, {}
for a = FIRST, #ARGV do
  local id = ARGV[a]
  if seen[id] == nil then seen[id] = p_load(a - FIRST + 1, id) or false end
  parts[a - FIRST + 1] = seen[id]
end

-- A closed breaker stays closed during this call (only failures open it).
local breaker_on = ARGV[8] == '1' and
  (redis.call('HGET', KEYS[K_BREAKER], 'state') or 'closed') ~= 'closed'
local control = redis.call('HGET', KEYS[K_META], 'control')  -- 'paused' | 'cancelled' | nil
if control ~= 'paused' and control ~= 'cancelled' then control = nil end
local dead = nil  -- the claimer's own liveness, read once when asked
local out = {}
local claims = 0

-- Take a token from the cluster-wide bucket (ARGV[12]); false when empty.
local function take_token()
  local b = redis.call('HMGET', KEYS[K_META], 'rl_tokens', 'rl_at')
  local cap = math.max(1, rate)
  local tokens, at = tonumber(b[1]) or cap, tonumber(b[2]) or now
  tokens = math.min(cap, tokens + math.max(0, now - at) * rate / 1000)
  local ok = tokens >= 1
  if ok then tokens = tokens - 1 end
  redis.call('HSET', KEYS[K_META], 'rl_tokens', string.format('%.6f', tokens), 'rl_at', now)
  return ok
end

local function reply(p, code)
  local n = #out
  out[n + 1], out[n + 2], out[n + 3] = code, p.fence or 0, p.attempts or 0
  out[n + 4], out[n + 5], out[n + 6], out[n + 7] = p.version or 0, resume_from(p), p.max, p.opts or ''
end

local function claim_one(i, id, p)
  if not p then
    local n = #out
    out[n + 1], out[n + 2], out[n + 3], out[n + 4] = 'missing', 0, 0, 0
    out[n + 5], out[n + 6], out[n + 7] = '', '', ''
    return
  end
  if p.status == 'completed' or p.status == 'failed' then return reply(p, p.status) end
  -- a retry of this very claim whose reply was lost: the same answer, no
  -- second attempt, window slot or fence
  if token ~= '' and HOLDS[p.status] and p.node == node and p.claim == token then
    return reply(p, 'ok')
  end

  local preempt = false
  if HOLDS[p.status] then
    if ARGV[5] ~= '1' then
      local takeable = ARGV[4] == '1' and
        (not lease_alive(i, p, now) or node_dead(p.node, now))
      if not takeable then return reply(p, 'held') end
    end
    preempt = true
  end

  -- a paused or cancelled job (control.lua): the message is dropped, and the
  -- partition is due first when the leader sends again after resume
  if control then
    if p.status == 'pending' then schedule(id, p, now) end
    count('refused_' .. control)
    return reply(p, control)
  end

  if ARGV[11] == '1' then
    if dead == nil then dead = node_dead(node, now) end
    if dead then return reply(p, 'dead') end
  end

  -- resend after defer_ms, or when the breaker admits probes if later
  -- (no point sending the backlog round every second while it is open)
  local function defer(code, until_ms)
    if p.status == 'pending' and defer_ms > 0 then
      schedule(id, p, math.max(now + defer_ms, until_ms or 0))
    end
    count('deferred_' .. code)
    return reply(p, code)
  end

  if window > 0 then
    local held = tonumber(redis.call('HGET', KEYS[K_INFLIGHT], node) or '0')
    if held >= window then return defer('window') end
  end

  if rate > 0 and not take_token() then
    count('throttled')
    return reply(p, 'throttled')
  end

  -- the breaker's probe rounds: _lib.lua
  local probe = nil
  if breaker_on then
    local admitted, mark = breaker_admit(now, open_ms, max_probes, preempt and p or nil)
    if not admitted then return defer('breaker', mark) end
    probe = mark
  elseif p.probe then
    probe_drop(p)  -- a preempted probe gives its slot back
  end

  if preempt then
    lease_clear(i, p)
    count('preempted')
  end
  p.fence = next_fence(p.fence, now)
  p.attempts = (p.attempts or 0) + 1
  p.probe = probe
  p.claim = token ~= '' and token or nil
  p.hb = now
  -- this run: when it started and where (its progress rate, leader/rebalance.py);
  -- `blk` is a block claimed by this run only (split.lua)
  p.t0, p.r0, p.blk = now, resume_from(p), nil
  move(id, p, target, now, now + lease_ms, node)
  lease_set(i, p, now, lease_ms)
  p_save(i, id, p)
  claims = claims + 1
  return reply(p, preempt and 'preempted' or 'ok')
end

if #parts > 1 then batch_stats() end
for i, p in ipairs(parts) do
  redis.call('ZREM', KEYS[K_QUEUED], ARGV[FIRST + i - 1])
  claim_one(i, ARGV[FIRST + i - 1], p)
end
if claims > 0 then count('claims', claims) end
flush_stats()

local low = redis.call('HMGET', KEYS[K_META], 'refill_below', 'plan_below')
if (low[1] and redis.call('ZCARD', KEYS[K_QUEUED]) <= tonumber(low[1]))
    or (low[2] and tonumber(redis.call('HGET', KEYS[K_STATS], 'pending') or '0')
        <= tonumber(low[2])) then
  wake('claim')
end
return out
