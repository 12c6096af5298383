-- release.lua: the owner gives partitions back (draining shutdown, a lost
-- processor): they become pending and are sent again at once. A release is
-- not an attempt, so it gives the attempt back.
--
-- KEYS: the common keys of _lib.lua, then the storage of partitions 1..n.
-- ARGV[1]  node id of the owner
-- ARGV[2]  '1' = also unregister the node (it is shutting down)
-- ARGV[3..] pairs: partition id, fence token ('' = whatever fence the node holds)
-- Reply: the ids released.

-- arguments, checked before anything is written (_lib.lua: numbers)
local node = node_arg(ARGV[1])
for a = 3, #ARGV, 2 do
  pid_arg(ARGV[a])
  if ARGV[a + 1] ~= '' then fence_arg(ARGV[a + 1]) end
end
local now = now_ms()
local released = {}
local i = 0
for a = 3, #ARGV, 2 do
  i = i + 1
  local id, fence = ARGV[a], ARGV[a + 1]
  local p = p_load(i, id)
  if p and HOLDS[p.status] and p.node == node and (fence == '' or tostring(p.fence) == fence) then
    lease_clear(i, p)
    p.attempts = math.max((p.attempts or 1) - 1, 0)
    probe_drop(p)  -- its slot, if of the current round (_lib.lua)
    move(id, p, 'pending', now, now)
    p_save(i, id, p)
    count('released')
    released[#released + 1] = id
  end
end
if #released > 0 then wake('release') end  -- to be sent again at once
if ARGV[2] == '1' then
  redis.call('ZREM', KEYS[K_NODES], node)
  redis.call('HDEL', KEYS[K_NODES_INFO], node)
  -- its count goes only when nothing is left in it (a claim may have come
  -- in after the caller read what the node holds)
  if tonumber(redis.call('HGET', KEYS[K_INFLIGHT], node) or '0') <= 0 then
    redis.call('HDEL', KEYS[K_INFLIGHT], node)
  end
end
return released
