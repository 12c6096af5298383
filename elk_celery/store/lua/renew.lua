-- renew.lua: extend the leases of partitions a node is processing, and
-- mark claimed ones running. Refused for a node whose own heartbeat
-- expired: a lease lives only as long as its node is alive.
--
-- KEYS: the common keys of _lib.lua, then the storage of partitions 1..n.
-- ARGV[1]  node id of the owner
-- ARGV[2]  lease length, ms
-- ARGV[3]  '1' = also move a 'claimed' partition to 'running'
-- ARGV[4..] pairs: partition id, fence token
-- Reply: {server time ms, the node's heartbeat expiry ms (-1: the node
--        never heartbeats), {ids whose lease is lost}} (lost: not owned with
--        that fence any more; a partition this owner itself completed or
--        failed is not lost). Nobody else can take a renewed partition before
--        min(heartbeat expiry, now + lease): the owner's self-fence deadline.

-- arguments, checked before anything is written (_lib.lua: numbers)
local node, lease_ms = node_arg(ARGV[1]), ms_arg(ARGV[2], 'lease ms')
for a = 4, #ARGV, 2 do
  pid_arg(ARGV[a])
  fence_arg(ARGV[a + 1])
end
local now = now_ms()
local dead = node_dead(node, now)
local lost = {}
local i = 0
for a = 4, #ARGV, 2 do
  i = i + 1
  local id, fence = ARGV[a], ARGV[a + 1]
  local p = p_load(i, id)
  if p and not HOLDS[p.status] and p.node == node and tostring(p.fence) == fence then
    -- finished by this very owner between its last check and this call:
    -- nothing was lost, nothing to renew
  elseif dead or not owned(p, node, fence) then
    lost[#lost + 1] = id
  else
    p.hb = now
    if ARGV[3] == '1' and p.status == 'claimed' then
      move(id, p, 'running', now, now + lease_ms, node)
    else
      redis.call('ZADD', KEYS[K_LEASES], now + lease_ms, id)
    end
    lease_set(i, p, now, lease_ms)
    p_save(i, id, p)
  end
end
if #lost > 0 then count('leases_lost', #lost) end
local node_exp = redis.call('ZSCORE', KEYS[K_NODES], node)
return {now, node_exp and tonumber(node_exp) or -1, lost}
