-- heartbeat.lua: a node says it is alive. A node whose heartbeat expired
-- comes back with its next heartbeat (its old leases stay lost). A node
-- that is new, or back, wakes the leader: there are more slots to fill.
--
-- KEYS: the common keys of _lib.lua (no partition storage).
-- ARGV[1] node id
-- ARGV[2] heartbeat lifetime, ms
-- ARGV[3] JSON description of the node (host, pid, task window, slots, ...)
-- Reply: {server time ms, partitions the node holds}

-- arguments, checked before anything is written (_lib.lua: numbers)
local lifetime = ms_arg(ARGV[2], 'heartbeat lifetime ms')
node_arg(ARGV[1])
local now = now_ms()
local before = redis.call('ZSCORE', KEYS[K_NODES], ARGV[1])
redis.call('ZADD', KEYS[K_NODES], now + lifetime, ARGV[1])
redis.call('HSET', KEYS[K_NODES_INFO], ARGV[1], ARGV[3])
if not before or tonumber(before) <= now then wake('node') end
return {now, tonumber(redis.call('HGET', KEYS[K_INFLIGHT], ARGV[1]) or '0')}
