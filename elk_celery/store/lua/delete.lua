-- delete.lua: delete partitions (whatever their status) and their index
-- entries. Ids that do not exist are skipped. One whose value is not an elk
-- partition is quarantined first (_lib.lua), then deleted with its `ids`
-- entry, so gap detection can plan its range again.
--
-- KEYS: the common keys of _lib.lua, then the storage of partitions 1..n.
-- ARGV[1..] partition ids; a quarantined one may come as its member
--           "id:min:max" (its value may no longer say its range)
-- Reply: number deleted.

-- arguments, checked before anything is written (_lib.lua: numbers)
local ids, members = {}, {}
for i, v in ipairs(ARGV) do
  local id, lo, hi = string.match(v, '^([^:]*):([^:]*):([^:]*)$')
  if id then
    id_arg(lo, 'min ID')
    id_arg(hi, 'max ID')
    members[i] = v
  end
  ids[i] = pid_arg(id or v)
end
local now = now_ms()
local n = 0
for i, id in ipairs(ids) do
  local p, _, m = p_load_q(i, id, members[i])
  if p == CORRUPT then
    redis.call('ZREM', KEYS[K_CORRUPT], id)
    if m then redis.call('ZREM', KEYS[K_IDS], m) end
    p_delete(i, id)
    count('corrupt', -1)
    n = n + 1
  elseif p then
    probe_drop(p)  -- its slot, if of the current round (_lib.lua)
    move(id, p, nil, now)
    -- its items leave the job's total with it (a refilled range counts once)
    local items = tonumber(p.items or 0) or 0
    if p.status == 'completed' and items > 0 then count('items', -items) end
    redis.call('ZREM', KEYS[K_IDS], member(id, p))
    p_delete(i, id)
    n = n + 1
  end
end
-- not count('total', -n) when n is 0: Lua's -0 reaches HINCRBY as "-0",
-- which Redis refuses ('value is not an integer'), failing the whole call.
if n > 0 then count('total', -n) end
return n
