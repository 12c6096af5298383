"""Partitions sized by time (the per-job setting ``target_partition_seconds``).

The measured rate is IDs per second per slot of recently completed runs:
complete.lua adds up, in stats ``run_ids`` and ``run_ms``, the IDs each
completed run walked (from where its claim resumed to the partition's end)
and the time from its claim to its completion. Each leader round takes the
growth of both since the round before; a round in which runs completed
gives one sample (their IDs over their time, so long runs weigh more),
averaged as ``rate += ALPHA x (sample - rate)``.

The size of the partitions planned next starts at the planner's
``partition_size()`` and moves, each time a new sample came in, towards
``rate x target_partition_seconds``, by at most x :data:`GROW` or
x :data:`SHRINK` per step (shrinking faster: a partition too long holds up
the job's end, one too short costs only a message), and never beyond
:data:`BOUND` times or below 1 / :data:`BOUND` of the planner's size, so a bad
estimate (a burst of empty ranges, a stall) cannot make absurd partitions.
Partitions already planned keep their size; splitting (leader/rebalance.py)
handles the ones that turn out long.
"""

from __future__ import annotations

from ..planners import MAX_PLANNED_ID

#: Weight of a new rate sample.
ALPHA = 0.3
#: Most growth of the partition size per step (GitLab's batched migrations: ~10 %).
GROW = 1.25
#: Most shrinking per step (GitLab: ~20 %).
SHRINK = 0.5
#: The size stays within [planner size / BOUND, planner size x BOUND].
BOUND = 16


class TimeSizer:
    """The measured rate of one job and the partition size it gives."""

    def __init__(self) -> None:
        #: IDs per second per slot, smoothed; None = no sample yet
        self.rate: float | None = None
        self.size: int | None = None
        self._last: tuple[int, int] | None = None
        self._fresh = False

    def observe(self, run_ids: int, run_ms: int) -> None:
        """The stats ``run_ids`` and ``run_ms`` as a round read them."""
        last, self._last = self._last, (run_ids, run_ms)
        if last is None:
            return
        ids, ms = run_ids - last[0], run_ms - last[1]
        if ids <= 0 or ms <= 0:  # nothing completed (or the stats were reset)
            return
        sample = ids * 1000 / ms
        self.rate = sample if self.rate is None else self.rate + ALPHA * (sample - self.rate)
        self._fresh = True

    def size_for(self, planner_size: int, target_s: float) -> int:
        """IDs per partition to plan now."""
        cur = float(self.size or planner_size)
        if self._fresh and self.rate:
            want = self.rate * target_s
            cur = min(max(want, cur * SHRINK), cur * GROW)
            cur = min(max(cur, planner_size / BOUND), planner_size * BOUND)
            self.size = max(1, min(int(cur), MAX_PLANNED_ID))  # what plan.lua takes
            self._fresh = False
        return self.size or planner_size
