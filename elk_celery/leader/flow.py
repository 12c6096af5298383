"""How much the leader keeps planned and sent: demand paces the flow.

A pool process that finishes a partition takes the next task message from
the broker at once; the leader only has to keep enough messages there. Two
targets, recomputed every round from what :meth:`NamespaceStore.flow` reads:

* **queued** (task messages sent, not yet claimed; ``D``):
  ``slots + ceil(2 x rate x refill_latency)``. ``slots`` is the sum of the
  live nodes' task windows (one spare message per slot), ``rate`` the
  measured completion rate (partitions/s, smoothed over about 2 s while there
  is work; the last round's own rate when that is higher), ``refill_latency`` how
  long the leader takes from a wake-up to sent messages (3 x the smoothed
  round time, where a round publishing through the loop's outbox counts the
  outbox's last pick-to-published time too, at most 1 s of it; at least
  0.2 s). Claims wake the leader once half of it is
  left, so the queue never runs dry while the leader refills it, and a
  re-sent partition never waits behind more than about that much work.
* **pending** (planned, not yet claimed; ``P``): at least the original's
  backlog, ``slots x worker_partition_multiple``, and enough for one more
  second at the measured rate beyond ``D``; ``max_pending_partitions``,
  when set, caps both.

A sent message counts as queued for three times the wait the queue implies
(at least 2 s, at most an hour): one whose worker was killed with it prefetched, or whose
queue was purged, is sent again only after ``allocation_interval``, and must
not hold the flow back until then. A message that merely waits longer (all
slots busy with long partitions) makes the leader send a few more than needed,
never more than the pending backlog.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..models import MAX_EXACT
from .rebalance import TailClock
from .sizing import TimeSizer

if TYPE_CHECKING:
    from ..settings import ElkSettings
    from ..store.namespace import Flow

#: Time constant of the completion-rate average, seconds.
RATE_TAU = 2.0
#: Least refill latency assumed, seconds. More than a round takes: a round
#: has a fixed cost (five Redis round trips and kombu's per-publish setup,
#: ~3 ms), so rounds that send a few messages each cost the leader more per
#: message than the partitions cost the pool; at 0.2 s a round sends about
#: 0.2 s of work, and a re-sent partition waits behind at most about that.
MIN_REFILL = 0.2
#: Seconds a sent message counts as on its way at least (see queued_horizon_ms).
QUEUED_HORIZON_MIN = 2.0
#: ... and at most: a job with work pending and nothing finishing (every
#: worker gone for a while) sees its smoothed rate decay towards zero, and the
#: wait it implies must stay a number the flow script takes.
QUEUED_HORIZON_MAX = 3600.0
#: Completions a round must have seen for its own rate to size the flow.
INST_MIN = 4
#: Seconds of work planned beyond the queued messages.
PLAN_AHEAD = 1.0


@dataclass(frozen=True)
class Targets:
    slots: int
    #: task messages to keep sent and unclaimed
    queued: int
    #: claims wake the leader when at most this many are left
    refill_below: int
    #: partitions to keep pending
    pending: int
    #: claims wake the leader when at most this many are pending
    plan_below: int


class FlowMeter:
    """The completion rate and round time of one job, as its leader saw them
    (and its partition sizer and tail clock)."""

    def __init__(self) -> None:
        self.rate = 0.0          # partitions finished per second, smoothed
        self.inst = 0.0          # ... over the last round only
        self.round_s = 0.0       # a leader round, smoothed
        self.last_queued = 0     # the queued target of the last round
        self._last: tuple[int, int] | None = None  # (server ms, finished)
        self.sizer = TimeSizer()  # IDs/s of completed runs (target_partition_seconds)
        self.tail = TailClock()   # the job's tail (the tail metric)

    def observe(self, now_ms: int, finished: int, busy: bool = True) -> None:
        """``busy``: there was work to do (partitions pending or sent). A job
        with nothing to do finishes nothing, which says nothing about how fast
        it goes: its rate is kept for when work comes back (a tailing job, the
        next batch), instead of starting again from nothing."""
        last, self._last = self._last, (now_ms, finished)
        if last is None or now_ms <= last[0]:
            return
        dt = (now_ms - last[0]) / 1000
        done = max(0, finished - last[1])  # a reset makes the count go back
        if not busy and done == 0:
            return
        inst = done / dt
        # a round's own rate is worth trusting only over a few completions
        self.inst = inst if done >= INST_MIN and dt >= 0.05 else 0.0
        alpha = 1 - math.exp(-dt / RATE_TAU)
        self.rate += alpha * (inst - self.rate)

    def queued_horizon_ms(self, queued: int) -> int:
        """How long a sent message may wait unclaimed before the flow stops
        counting it (it is probably lost): three times the wait the queue
        implies at the measured rate, between QUEUED_HORIZON_MIN and
        QUEUED_HORIZON_MAX."""
        wait = queued / self.rate if self.rate > 0 else 0.0
        return int(1000 * min(QUEUED_HORIZON_MAX, max(QUEUED_HORIZON_MIN, 3 * wait)))

    def round_took(self, seconds: float) -> None:
        self.round_s = seconds if self.round_s == 0 else self.round_s + 0.2 * (seconds - self.round_s)

    def targets(self, settings: ElkSettings, flow: Flow) -> Targets:
        slots = max(1, flow.slots)
        refill = max(MIN_REFILL, 3 * self.round_s)
        # the smoothed rate lags a job speeding up (its first seconds): the
        # last round's rate, when higher, sizes the flow at once
        rate = max(self.rate, self.inst)
        queued = slots + math.ceil(2 * rate * refill)
        pending = max(slots * settings.worker_partition_multiple,
                      queued + math.ceil(rate * PLAN_AHEAD))
        if settings.max_pending_partitions:
            pending = min(pending, settings.max_pending_partitions)
        # the scripts take counts up to 2^53-1 (a sum of huge task windows)
        pending = min(pending, MAX_EXACT)
        queued = min(queued, pending)
        slots = min(slots, MAX_EXACT)
        return Targets(slots=slots, queued=queued, refill_below=queued // 2,
                       pending=pending, plan_below=min(pending - 1, max(queued, pending // 2)))
