-- update.lua: compare-and-set update of one partition. Only the allowed
-- status transitions pass; the range and the fence cannot be changed here.
--
-- KEYS: the common keys of _lib.lua, then the storage of partition 1.
-- ARGV[1] partition id
-- ARGV[2] expected version ('' = no check)
-- ARGV[3] JSON object of fields to set: status, node, error, opts, items
-- ARGV[4] lease length, ms (used when the new status holds a lease)
-- Reply: {'ok', version} | {'conflict', current version} | {'missing'}
--        | {'transition', from, to}

local TRANSITIONS = {
  pending   = {pending = true, claimed = true, running = true, failed = true},
  claimed   = {claimed = true, running = true, pending = true, completed = true, failed = true},
  running   = {running = true, pending = true, completed = true, failed = true},
  completed = {completed = true, pending = true},
  failed    = {failed = true, pending = true},
}
-- arguments, checked before anything is written (_lib.lua: numbers)
local id = pid_arg(ARGV[1])
opt_num_arg(ARGV[2], 'expected version', 0, MAX_EXACT)
local lease_ms = ms_arg(ARGV[4], 'lease ms')
local ok, f = pcall(cjson.decode, ARGV[3])
if not ok or type(f) ~= 'table' then invalid('fields', ARGV[3], 'expected a JSON object') end
if f.status ~= nil and not STATUSES[f.status] then invalid('status', f.status, 'unknown status') end
if f.node ~= nil and type(f.node) ~= 'string' then invalid('node id', f.node, 'must be a string') end
local new_items = f.items ~= nil and items_arg(f.items) or nil

local now = now_ms()
local p = p_load(1, id)
if not p then return {'missing'} end
if ARGV[2] ~= '' and tostring(p.version) ~= ARGV[2] then return {'conflict', p.version} end
local to = f.status or p.status
if not TRANSITIONS[p.status][to] then return {'transition', p.status, to} end
-- the items stat sums the items of completed partitions: keep it so
local items_before = p.status == 'completed' and (tonumber(p.items or 0) or 0) or 0
-- a completed partition run again starts from its first ID
if p.status == 'completed' and to == 'pending' then p.ckpt, p.blk, p.prog = nil, nil, nil end
if f.error ~= nil then p.error = (f.error ~= cjson.null) and f.error or nil end
if f.opts ~= nil then p.opts = f.opts end
if new_items ~= nil then p.items = fmt(new_items) end
local node = f.node or p.node
if HOLDS[to] and (node == nil or node == '') then
  return {'transition', p.status, to .. ' without a node'}
end
local items_after = to == 'completed' and (tonumber(p.items or 0) or 0) or 0
if items_after ~= items_before then items_guard(items_after - items_before) end
if to ~= p.status or (HOLDS[to] and node ~= p.node) then
  if HOLDS[p.status] then lease_clear(1, p) end
  if HOLDS[to] then p.fence = next_fence(p.fence, now) end
  move(id, p, to, now, HOLDS[to] and now + lease_ms or now, node)
  if HOLDS[to] then lease_set(1, p, now, lease_ms) end
else
  p.version = (p.version or 0) + 1
  p.updated = now
end
if items_after ~= items_before then count('items', items_after - items_before) end
p_save(1, id, p)
return {'ok', p.version}
