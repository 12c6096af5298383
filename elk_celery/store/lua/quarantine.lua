-- quarantine.lua: quarantine a partition whose stored value is not an elk
-- partition (quarantine() in _lib.lua), e.g. when a worker's claim met one;
-- a readable or missing partition is left alone.
--
-- KEYS: the common keys of _lib.lua, then the storage of partition 1.
-- ARGV[1] partition id
-- ARGV[2] its range "min:max" as the task message had it, '' = unknown
-- Reply: 'quarantined' (now) | 'already' | 'healthy' | 'missing'

-- arguments, checked before anything is written (_lib.lua: numbers)
local id = pid_arg(ARGV[1])
local member = nil
if ARGV[2] ~= '' then
  local lo, hi = string.match(ARGV[2], '^([^:]*):([^:]*)$')
  if not lo then invalid('range', ARGV[2], "expected 'min:max'") end
  id_arg(lo, 'min ID')
  id_arg(hi, 'max ID')
  member = id .. ':' .. ARGV[2]
end

local p, fresh = p_load_q(1, id, member)
if not p then return 'missing' end
if p ~= CORRUPT then return 'healthy' end
return fresh and 'quarantined' or 'already'
