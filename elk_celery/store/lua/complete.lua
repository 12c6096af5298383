-- complete.lua: the owner reports a partition done.
--
-- KEYS: the common keys of _lib.lua, then the storage of partition 1.
-- ARGV[1] partition id
-- ARGV[2] node id of the owner
-- ARGV[3] fence token the owner got from its claim
-- ARGV[4] items processed (integer >= 0)
-- ARGV[5] '1' = record a success with the circuit breaker
-- Reply: {'ok', version} or {'stale'|'missing', fence, status, node}

local id, node, fence = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local p = p_load(1, id)
if not owned(p, node, fence) then return stale(p) end

local items = tonumber(ARGV[4])
lease_clear(1, p)
p.items = items
p.error = nil
p.probe = nil
move(id, p, 'completed', now)
p_save(1, id, p)
count('items', items)
if ARGV[5] == '1' then breaker_success() end
return {'ok', p.version}
