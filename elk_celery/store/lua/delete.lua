-- delete.lua: delete partitions (whatever their status) and their index
-- entries. Ids that do not exist are skipped.
--
-- KEYS: the common keys of _lib.lua, then the storage of partitions 1..n.
-- ARGV[1..] partition ids
-- Reply: number deleted.

-- arguments, checked before anything is written (_lib.lua: numbers)
for _, id in ipairs(ARGV) do pid_arg(id) end
local now = now_ms()
local n = 0
for i, id in ipairs(ARGV) do
  local p = p_load(i, id)
  if p then
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
