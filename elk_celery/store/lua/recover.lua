-- recover.lua: the leader takes back partitions whose lease expired or
-- whose owner's heartbeat stopped. Each goes back to pending (sent again at
-- once) with its fence bumped, so the old owner's late writes are refused;
-- a partition that has already lost more owners than it has attempts goes
-- to failed instead (a poison partition must not kill workers forever).
--
-- KEYS: the common keys of _lib.lua, then the storage of partitions 1..n.
-- ARGV[1]  leader epoch ('' = not a leader write)
-- ARGV[2]  max retries (as in fail.lua)
-- ARGV[3..] candidate partition ids (the caller reads them from `leases`)
-- A candidate whose value is not an elk partition is quarantined (_lib.lua)
-- and the others carry on.
-- Reply: {'ok', {recovered ids}, {failed ids}, {newly quarantined ids}}
--        | {'stale_leader'}

-- arguments, checked before anything is written (_lib.lua: numbers)
epoch_arg(ARGV[1])
local max_retries = num_arg(ARGV[2], 'max retries', 0, MAX_EXACT)
for a = 3, #ARGV do pid_arg(ARGV[a]) end

if not leader_ok(ARGV[1]) then
  count('stale_leader_writes')
  return {'stale_leader'}
end
local now = now_ms()
local back, dead, corrupt = {}, {}, {}
for a = 3, #ARGV do
  local i, id = a - 2, ARGV[a]
  local p, fresh = p_load_q(i, id)
  if p == CORRUPT then
    if fresh then corrupt[#corrupt + 1] = id end
  elseif p and HOLDS[p.status] and (not lease_alive(i, p, now) or node_dead(p.node, now)) then
    local owner = p.node
    lease_clear(i, p)
    p.fence = next_fence(p.fence, now)
    probe_drop(p)  -- its slot, if of the current round (_lib.lua)
    if (p.attempts or 0) > max_retries then
      p.error = 'lost its owner ' .. owner .. ' on attempt ' .. (p.attempts or 0) ..
        ' and has no retries left'
      move(id, p, 'failed', now)
      dead[#dead + 1] = id
    else
      move(id, p, 'pending', now, now)
      back[#back + 1] = id
    end
    p_save(i, id, p)
  elseif not p then
    redis.call('ZREM', KEYS[K_LEASES], id)
  end
end
-- A quarantined value may no longer name its owner, whose in-flight count
-- (its task window) would keep it for good. When these candidates were the
-- whole lease index, every partition still held is known: each node's
-- count is then exactly what it still holds.
if #corrupt > 0 then
  local held, still = {}, 0
  for a = 3, #ARGV do
    local p = p_load_q(a - 2, ARGV[a])
    if p and p ~= CORRUPT and HOLDS[p.status] then
      held[p.node] = (held[p.node] or 0) + 1
      still = still + 1
    end
  end
  if redis.call('ZCARD', KEYS[K_LEASES]) == still then
    local counts = redis.call('HGETALL', KEYS[K_INFLIGHT])
    for k = 1, #counts, 2 do
      local n = held[counts[k]] or 0
      if tonumber(counts[k + 1]) > n then
        if n > 0 then redis.call('HSET', KEYS[K_INFLIGHT], counts[k], n)
        else redis.call('HDEL', KEYS[K_INFLIGHT], counts[k]) end
      end
    end
  end
end
count('recovered', #back + #dead)
return {'ok', back, dead, corrupt}
