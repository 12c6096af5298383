-- split.lua: the leader splits the unclaimed tail off a running partition
-- (dynamic work rebalancing, leader/rebalance.py): the partition's end moves
-- down and a new pending partition takes the rest, in one call.
--
-- Why no ID is lost or done twice. The owner walks its range with
-- partition.blocks() and claims each block in block.lua before it processes
-- it; block.lua reads the partition's end when it claims, so the owner never
-- processes an ID beyond the end stored at its claim. Here the new end is
-- never below the owner's position (its claimed block's last ID `blk`, or its
-- checkpoint if higher) plus a margin, read in this same call; so every ID
-- the owner has claimed stays its own, and every ID of the tail is one it
-- has not claimed and now never will (its next block.lua sees the new end).
-- The parent keeps [min, new end], the tail gets [new end + 1, old end]:
-- the same IDs as before, so the `ids` index covers what it covered (gap
-- detection finds no gap, and stats `created - total`, the gap checkpoint's
-- signature, stays as it was: both grow by one).
-- Redis runs scripts one at a time, so each race is one order or the other:
--   * the owner's block claim: before, the split starts after that block;
--     after, the claim reads the new end.
--   * its completion, release, failure, or its recovery after death: before,
--     the partition is no longer running and nothing is split; after, the
--     shorter partition is completed, pending (resumed after its checkpoint,
--     within the new end), or failed, and the tail is on its own.
--   * a new claim (a recovered partition's next owner, a preemption): its
--     fence differs from the one the leader read, so the split is refused;
--     the blocks of the new owner are unknown to the leader's estimate, and
--     claim.lua clears `blk`, so a split needs a block claimed in this run.
--   * a pause or cancel (meta `control`): refused while the job is paused or
--     cancelled; a split before it leaves a pending tail that waits like
--     every pending partition.
--   * compaction: the parent is running and the tail pending, so neither is
--     compacted; a completed parent followed by its tail is contiguous.
-- A processor that does not use blocks() never has `blk` set in its run and
-- is never split: it could be processing any ID of its range.
--
-- KEYS: the common keys of _lib.lua, then the storage of partition 1 (the
--       parent, ARGV[2]) and of partition 2 (the tail, ARGV[4]).
-- ARGV[1] leader epoch
-- ARGV[2] id of the running partition to split
-- ARGV[3] the owner's fence as the leader read it: refused if it changed
-- ARGV[4] id of the new partition: the expected meta `next_pid` (the id
--         allocator), which moves one past it
-- ARGV[5] the last ID the parent should keep, as the leader computed it
-- ARGV[6] margin: the parent keeps at least this many IDs (>= 0) after its
--         owner's position as read here (the owner goes on while the tail's
--         task message travels)
-- ARGV[7] least IDs the tail must hold (>= 1), else nothing is split
-- Reply: {'ok', tail id, parent's new last ID, tail first ID, tail last ID}
--      | {'stale_leader'} | {'next_pid', current next_pid}
--      | {'refused', why}: why 'missing' | 'not_running' | 'fence' (another
--        owner) | 'no_blocks' (no block claimed in this run) | 'paused'
--        | 'small' (the tail would hold fewer than ARGV[7] IDs)
-- Stats: `pending`, `total` and `created` +1 (the tail), `splits` +1.
-- The parent's version grows (its range changed); the tail names its
-- parent (field `parent`) and gets the parent's options.

-- arguments, checked before anything is written (_lib.lua: numbers)
epoch_arg(ARGV[1])
local id = pid_arg(ARGV[2])
local fence = ARGV[3]
fence_arg(fence)
local tid = pid_arg(ARGV[4])
local at = id_arg(ARGV[5], 'split at')
local margin = num_arg(ARGV[6], 'margin', 0, MAX_EXACT)
local min_tail = num_arg(ARGV[7], 'least tail IDs', 1, MAX_EXACT)

if not leader_ok(ARGV[1]) then
  count('stale_leader_writes')
  return {'stale_leader'}
end
local next_pid = redis.call('HGET', KEYS[K_META], 'next_pid') or '0'
if next_pid ~= tid then return {'next_pid', next_pid} end

local p = p_load(1, id)
if not p then return {'refused', 'missing'} end
if p.status ~= 'running' then return {'refused', 'not_running'} end
if tostring(p.fence) ~= fence then return {'refused', 'fence'} end
if not p.blk then return {'refused', 'no_blocks'} end
local ctl = redis.call('HGET', KEYS[K_META], 'control')
if ctl == 'paused' or ctl == 'cancelled' then return {'refused', 'paused'} end

local lo_id, hi_id = tostring(p.min), tostring(p.max)
-- the owner's position: everything up to it may be claimed by it
local pos = tostring(p.blk)
if p.ckpt and dec_cmp(tostring(p.ckpt), pos) > 0 then pos = tostring(p.ckpt) end
local keep = dec_add(pos, margin)
if dec_cmp(at, keep) > 0 then keep = at end
-- the tail [keep + 1, hi] must hold at least min_tail IDs: keep + min_tail <= hi
-- (compared before adding when keep is already past hi, so no overflow)
if dec_cmp(keep, hi_id) >= 0 or dec_cmp(dec_add(keep, min_tail), hi_id) > 0 then
  return {'refused', 'small'}
end
if p_load(2, tid) then
  error({err = 'ELK_CONFLICT partition ' .. tid .. ' (meta next_pid) already exists'})
end

local now = now_ms()
local first = dec_add(keep, 1)
-- the parent: a shorter range, its `ids` entry rewritten (same score, its min)
redis.call('ZREM', KEYS[K_IDS], member(id, p))
p.max = keep
p.version = (p.version or 0) + 1
p.splits = (p.splits or 0) + 1
p.updated = now
redis.call('ZADD', KEYS[K_IDS], lo_id, member(id, p))
p_save(1, id, p)

-- the tail: pending, sent at once (score now: before the planned backlog)
local q = {id = tid, min = first, max = hi_id, opts = p.opts or '', fence = 0, version = 0,
           attempts = 0, items = '0', node = '', created = now, parent = id}
move(tid, q, 'pending', now, now)
redis.call('ZADD', KEYS[K_IDS], first, member(tid, q))
p_save(2, tid, q)
redis.call('HSET', KEYS[K_META], 'next_pid', dec_inc(tid))
count('total')
count('created')
count('splits')
return {'ok', tid, keep, first, hi_id}
