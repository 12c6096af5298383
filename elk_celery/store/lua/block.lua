-- block.lua: the owner of a running partition records its checkpoint and
-- claims the next block of its range (partition.blocks(), .checkpoint(),
-- .progress() of worker/runner.py PartitionContext). Everything up to the checkpoint is
-- done; the claimed block (field `blk`: its last ID) is what runs now; the
-- rest is unclaimed. A crash re-does at most the claimed block: the next
-- owner's claim and blocks start after the checkpoint (_lib.lua resume_from).
-- Fenced like every owner's write. The block's end is computed from the
-- partition's current end, read here, so a range shortened meanwhile (by a
-- leader) ends the walk earlier.
--
-- KEYS: the common keys of _lib.lua, then the storage of partition 1.
-- ARGV[1] partition id
-- ARGV[2] node id of the owner
-- ARGV[3] fence token the owner got from its claim
-- ARGV[4] last ID done ('' = nothing new): the checkpoint moves there; never
--         back, and only within the partition's range
-- ARGV[5] block size: claim the next block of at most this many IDs after
--         the checkpoint ('0' = claim none: only record)
-- ARGV[6] items processed so far by this run ('' = leave as is)
-- Reply: {'ok', block first ID, block last ID, partition's last ID, stop}
--        (first/last '' when no block is claimed: size 0, the range is done,
--        or stop; stop '1' when the job was paused or cancelled with
--        stop-running (control.lua): hand the partition back)
--        | {'stale'|'missing', current fence, status, node}

-- arguments, checked before anything is written (_lib.lua: numbers)
local id = pid_arg(ARGV[1])
local node = node_arg(ARGV[2])
local fence = ARGV[3]
fence_arg(fence)
local done = ARGV[4]
if done ~= '' then id_arg(done, 'last ID done') end
local size = num_arg(ARGV[5], 'block size', 0, 2147483647)
local items = ARGV[6] ~= '' and items_arg(ARGV[6]) or nil

local p = p_load(1, id)
if not owned(p, node, fence) then return stale(p) end
local lo_id, hi_id = tostring(p.min), tostring(p.max)
if done ~= '' then
  -- within min-1..max (min-1: nothing done), never back
  if dec_cmp(done, hi_id) > 0 then done = hi_id end
  if dec_cmp(done, lo_id) >= 0 and (not p.ckpt or dec_cmp(done, p.ckpt) > 0) then
    p.ckpt = done
  end
end
if items ~= nil then p.prog = fmt(items) end
local now = now_ms()
p.ckpt_at = now

local ctl = redis.call('HMGET', KEYS[K_META], 'control', 'stop_running')
local stop = (ctl[1] == 'paused' or ctl[1] == 'cancelled') and ctl[2] == '1'
local first, last = '', ''
if size > 0 and not stop then
  first = resume_from(p)
  if dec_cmp(first, hi_id) <= 0 then
    last = dec_add(first, size - 1)
    if dec_cmp(last, hi_id) > 0 then last = hi_id end
    p.blk = last
  else
    first = ''
  end
end
p_save(1, id, p)
if done ~= '' then count('checkpoints') end
return {'ok', first, last, hi_id, stop and '1' or '0'}
