"""Dynamic work rebalancing: the leader splits stragglers onto idle slots.

A job is as slow as its slowest partition: at its end, idle slots wait on a
few long partitions. A partition whose processor walks its range with
``partition.blocks()`` claims each block in Redis before processing it, so
the unclaimed rest of its range can be given to another partition safely
(store/lua/split.lua holds the argument). Each leader round with idle slots
(live slots with nothing pending or sent to take, :attr:`Flow.idle_slots`)
and the job not paused or cancelled:

1. reads the running partitions and estimates, for each one walked in
   blocks in this run, its rate from its own progress (IDs up to its
   checkpoint since the claim's resume point, over the time from the claim
   to that checkpoint) and so the time its unclaimed rest takes;
2. gives the idle slots, one at a time, to the partition whose pieces would
   still be longest (rest / (tails + 2)), as long as each piece takes at
   least :data:`SPLIT_MIN_SECONDS` and :data:`SPLIT_BLOCKS` of its blocks, at
   most :data:`MAX_SPLITS_PER_ROUND` tails a round;
3. cuts each chosen partition's rest into ``tails + 1`` equal pieces (after
   a margin of one block the owner keeps, so its next block claim finds
   work while the tails' messages travel), from the end down: one split
   call per tail, each refused if the owner changed.

The tails are pending at once and sent in the same round. A tail is split
again in a later round if it is still long when slots fall idle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..models import MAX_EXACT, Partition, Status

if TYPE_CHECKING:
    from ..store.namespace import Flow, NamespaceStore

#: Least time (seconds) each piece of a split - the owner's share and each
#: tail - is estimated to take: shorter pieces cost more in messages and
#: claims than they save.
SPLIT_MIN_SECONDS = 0.5
#: ... and at least this many of the owner's blocks ("well above one block").
SPLIT_BLOCKS = 3
#: Most tails split off in one leader round.
MAX_SPLITS_PER_ROUND = 4
#: Seconds before the leader looks again while a partition walked in blocks
#: runs and slots are idle but its rate is not known yet (no checkpoint).
RECHECK_S = 0.25


@dataclass(frozen=True)
class Estimate:
    """A running partition's progress, from its own record."""

    partition: Partition
    #: the owner's position: its claimed block's last ID (or checkpoint, if higher)
    position: int
    #: IDs per second, from its checkpoint's advance since the claim
    rate: float
    #: IDs of the block it runs now (at least 1)
    block: int

    @property
    def remaining(self) -> int:
        return self.partition.max_id - self.position

    @property
    def remaining_s(self) -> float:
        return self.remaining / self.rate

    @property
    def piece_min_s(self) -> float:
        return max(SPLIT_MIN_SECONDS, SPLIT_BLOCKS * self.block / self.rate)


def walks_blocks(p: Partition) -> bool:
    """Running, with a block claimed by its current run (only those can split)."""
    return p.status == Status.RUNNING and p.block_end is not None


def estimate(p: Partition) -> Estimate | None:
    """The partition's estimate, or None when it cannot be split or its rate
    is not known yet (no block recorded done in this run)."""
    if not walks_blocks(p) or None in (p.checkpoint, p.run_started_ms, p.run_from,
                                       p.checkpoint_ms):
        return None
    assert p.checkpoint is not None and p.block_end is not None
    assert p.run_from is not None and p.run_started_ms is not None and p.checkpoint_ms is not None
    done = p.checkpoint - p.run_from + 1
    elapsed = (p.checkpoint_ms - p.run_started_ms) / 1000
    if done <= 0 or elapsed <= 0:
        return None
    return Estimate(p, max(p.block_end, p.checkpoint), done / elapsed,
                    max(1, p.block_end - p.checkpoint))


def choose(estimates: list[Estimate], idle: int,
           limit: int = MAX_SPLITS_PER_ROUND) -> list[tuple[Estimate, int]]:
    """How many tails each partition gives: the idle slots go one by one to
    the partition whose pieces would still be longest, while each piece stays
    worth a split. Returns (estimate, tails) with tails >= 1."""
    tails = [0] * len(estimates)
    for _ in range(min(idle, limit)):
        best, best_s = -1, 0.0
        for i, e in enumerate(estimates):
            piece = e.remaining_s / (tails[i] + 2)
            if piece >= e.piece_min_s and piece > best_s:
                best, best_s = i, piece
        if best < 0:
            break
        tails[best] += 1
    return [(e, n) for e, n in zip(estimates, tails) if n]


def cuts(e: Estimate, tails: int) -> list[int]:
    """The last ID the partition keeps after each split call, from the end
    down: its rest after a one-block margin in ``tails + 1`` equal pieces."""
    rest = e.remaining - e.block
    piece = rest // (tails + 1)
    start = e.position + e.block
    return [start + piece * t for t in range(tails, 0, -1)]


@dataclass
class Rebalanced:
    splits: int = 0
    #: seconds before the leader should look again (None: when woken)
    recheck_in: float | None = None


def rebalance(store: NamespaceStore, epoch: int, flow: Flow) -> Rebalanced:
    """Split running partitions onto the idle slots ``flow`` shows."""
    out = Rebalanced()
    idle = flow.idle_slots
    if idle <= 0 or flow.held <= 0 or flow.control in ("paused", "cancelled"):
        return out
    running = [p for p in store.strategy.get_filtered_partitions(Status.RUNNING)
               if walks_blocks(p)]
    estimates = [e for e in map(estimate, running) if e is not None]
    if len(estimates) < len(running):
        out.recheck_in = RECHECK_S  # some rate is not known yet
    for e, n in choose(estimates, idle):
        piece = (e.remaining - e.block) // (n + 1)
        for at in cuts(e, n):
            s = store.split_partition(epoch, e.partition.partition_id, e.partition.fence, at,
                                      margin=e.block,
                                      min_tail=min(MAX_EXACT, max(1, piece // 2)))
            if not s.ok:
                break  # the owner moved on, finished or changed: next round
            out.splits += 1
    return out


class TailClock:
    """The job's tail: from the first round that finds nothing planned left to
    claim (nothing pending or sent) while partitions still run, to the round
    that finds nothing held either. Split tails do not restart it; newly
    planned partitions do."""

    def __init__(self) -> None:
        self.started_ms: int | None = None

    def planned(self) -> None:
        self.started_ms = None

    def observe(self, flow: Flow, split: int = 0) -> float | None:
        """Seconds of the tail that just ended, else None."""
        waiting = flow.pending + flow.queued
        if self.started_ms is None:
            if waiting == 0 and flow.held > 0 and not split:
                self.started_ms = flow.now_ms
            return None
        if waiting == 0 and flow.held == 0:
            tail = (flow.now_ms - self.started_ms) / 1000
            self.started_ms = None
            return tail
        return None
