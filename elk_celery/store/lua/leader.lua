-- leader.lua: the leader lease of a namespace, with a fencing epoch that
-- grows on every change of hands (next_fence in _lib.lua: unique across a
-- loss of state too).
--
-- KEYS: the common keys of _lib.lua (no partition storage).
-- ARGV[1] 'acquire' (take it when free or its holder is dead, renew it when
--         we hold it) | 'elect' (the same, but leave our own lease alone: only
--         the process that leads renews it, so a hung leader loses it)
--         | 'release' (only by its holder)
-- ARGV[2] node id
-- ARGV[3] lease length, ms
-- Reply: {is leader 0/1, epoch, holder,
--         'elected'|'renewed'|'held'|'follower'|'released'|'dead'}
--   ('dead': the node registered a heartbeat that has expired)

-- arguments, checked before anything is written (_lib.lua: numbers)
local op, node, ms = ARGV[1], node_arg(ARGV[2]), ms_arg(ARGV[3], 'lease ms')
if op ~= 'acquire' and op ~= 'elect' and op ~= 'release' then
  invalid('operation', op, "must be 'acquire', 'elect' or 'release'")
end
local now = now_ms()
local cur = redis.call('GET', KEYS[K_LEADER])
local holder, epoch = '', 0
if cur then holder, epoch = string.match(cur, '^(.*)|(%d+)$') end
epoch = tonumber(epoch) or 0

if op == 'release' then
  if cur and holder == node then
    redis.call('DEL', KEYS[K_LEADER])
    return {0, epoch, '', 'released'}
  end
  return {0, epoch, holder, 'follower'}
end

-- A node whose own heartbeat expired (its worker's main process hangs or
-- is cut off) neither renews nor takes the lease: someone alive must lead.
if node_dead(node, now) then return {0, epoch, holder, 'dead'} end

if cur and holder == node then
  if op == 'elect' then return {1, epoch, node, 'held'} end
  redis.call('PEXPIRE', KEYS[K_LEADER], ms)
  return {1, epoch, node, 'renewed'}
end
if cur and not node_dead(holder, now) then
  return {0, epoch, holder, 'follower'}
end
epoch = next_fence(redis.call('HGET', KEYS[K_META], 'epoch'), now)  -- see _lib.lua
redis.call('HSET', KEYS[K_META], 'epoch', fmt(epoch))
redis.call('SET', KEYS[K_LEADER], node .. '|' .. fmt(epoch), 'PX', ms)
count('elections')
return {1, epoch, node, 'elected'}
