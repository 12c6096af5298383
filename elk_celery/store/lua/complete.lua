-- complete.lua: owners report partitions done. One call may complete
-- several partitions of one node (complete_many); each is accepted only
-- from that node with the partition's current fence.
--
-- KEYS: the common keys of _lib.lua, then the storage of partitions 1..n.
-- ARGV[1] node id of the owner
-- ARGV[2] '1' = record a success with the circuit breaker
-- ARGV[3..] triples: partition id, fence token the owner got from its
--          claim, items processed (integer >= 0)
-- Reply: 4 items per partition, in order: 'ok', version, '', ''
--        or 'stale'|'missing', current fence, status, node. A repeat of
--        the owner's own completion (same node and fence, e.g. re-sent after
--        a lost reply) is 'ok' again, not a stale write.
-- Stats: besides `items`, `node_partitions:<host>` and `node_items:<host>`
-- count completions per worker host; `run_ids` and `run_ms` add up the IDs
-- each completed run walked (from where its claim resumed) and its time.
-- Wakes the leader when nothing is left pending or sent (an idle slot).

-- arguments, checked before anything is written (_lib.lua: numbers)
local node = node_arg(ARGV[1])
local items_sum = 0
for a = 3, #ARGV, 3 do
  pid_arg(ARGV[a])
  fence_arg(ARGV[a + 1])
  items_sum = items_sum + items_arg(ARGV[a + 2])
end
items_guard(items_sum)
local now = now_ms()
-- per host: the node id less its per-start token (worker/node.py
-- hostname_of), so `elk status` rates each worker across restarts
local host = string.match(node, '^(.+):%x%x%x%x%x%x%x%x$') or node

-- Read (and so validate) every partition before changing anything; an id
-- named twice shares one table, so its second completion is stale.
local parts, seen = {}, {}
local i = 0
local probe = false
for a = 3, #ARGV, 3 do
  i = i + 1
  local id = ARGV[a]
  if seen[id] == nil then seen[id] = p_load(i, id) or false end
  parts[i] = seen[id]
end

local out = {}
local done = 0
if #parts > 1 then batch_stats() end
i = 0
for a = 3, #ARGV, 3 do
  i = i + 1
  local id, fence, p = ARGV[a], ARGV[a + 1], parts[i] or nil
  local r
  if p and p.status == 'completed' and p.node == node and tostring(p.fence) == fence then
    -- this owner's own completion again (its reply was lost): done, not stale
    r = {'ok', p.version, '', ''}
  elseif not owned(p, node, fence) then
    r = stale(p)
  else
    local items = tonumber(ARGV[a + 2])
    lease_clear(i, p)
    p.items = ARGV[a + 2]  -- a string: exact in the stored JSON
    p.error = nil
    if probe_of_round(p) then probe = true end  -- only such a probe closes it
    p.probe = nil
    move(id, p, 'completed', now)
    p_save(i, id, p)
    done = done + 1
    count('items', items)  -- summed exactly (_lib.lua: stat)
    count('node_items:' .. host, items)
    -- IDs this run walked and how long it took: the measured rate that
    -- sizes partitions by time (leader/sizing.py)
    local r0, hi = tostring(p.r0 or ''), tostring(p.max)
    if p.t0 and r0 ~= '' and #r0 < 16 and #hi < 16 then
      local n = tonumber(hi) - tonumber(r0) + 1
      if n > 0 then
        count('run_ids', n)
        count('run_ms', math.max(0, now - tonumber(p.t0)))
      end
    end
    r = {'ok', p.version, '', ''}
  end
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = r[1], r[2], r[3], r[4]
end
if done > 0 then
  count('node_partitions:' .. host, done)
  if ARGV[2] == '1' then breaker_success(probe) end
end
flush_stats()
-- a slot fell idle with nothing left to send it: the leader may split a
-- running partition for it (leader/rebalance.py)
if done > 0 and tonumber(redis.call('HGET', KEYS[K_STATS], 'pending') or '0') == 0
    and redis.call('ZCARD', KEYS[K_QUEUED]) == 0 then
  wake('idle')
end
return out
