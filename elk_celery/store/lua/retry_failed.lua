-- retry_failed.lua: put failed partitions back to pending with their
-- attempts reset (the operator's "retry failed"). The last error is kept
-- in `error` until the next outcome.
--
-- KEYS: the common keys of _lib.lua, then the storage of partitions 1..n.
-- ARGV[1..] partition ids (the caller reads them from `failed`)
-- One whose value is not an elk partition is quarantined (_lib.lua), not retried.
-- Reply: the ids re-queued.

-- arguments, checked before anything is written (_lib.lua: numbers)
for _, id in ipairs(ARGV) do pid_arg(id) end
local now = now_ms()
local done = {}
for i, id in ipairs(ARGV) do
  local p = p_load_q(i, id)
  if p and p ~= CORRUPT and p.status == 'failed' then
    p.attempts = 0
    move(id, p, 'pending', now, now)
    p_save(i, id, p)
    done[#done + 1] = id
  end
end
count('retried_by_operator', #done)
if #done > 0 then wake('retry') end
return done
