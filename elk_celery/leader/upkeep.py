"""The leader's upkeep: gap checks and compaction, beside the rounds.

Both are housekeeping on what is already done (the ``ids`` index, the
completed prefix); neither decides what runs next. Inline, a full round
spent up to 50 ms compacting and a gap check's few milliseconds per
thousand new partitions, and every claim waiting for a refill waited that
long too. The leader loop hands them to this thread after each full round;
the round itself only recovers, sizes the flow, plans and dispatches.

Safe beside the rounds: compaction and the partitions a gap check creates
are fenced by the epoch the round held (a deposed leader's are refused like
its rounds'); the gap checkpoint in meta is not, and a deposed leader's late
pass may write an older one (the next check then reads more than it needs;
a deletion below it still makes that check a full one, see gaps.py). Gap
detection reads the planning cursor before it walks the index (partitions
planned meanwhile lie above it), a split made by a round meanwhile keeps
its range covered at every instant (``split.lua`` shrinks the parent and
adds the tail in one script), and the planner is called under the job's
planner lock (leader/tick.py ``planner_of``), so a planner need not be
thread-safe. One pass runs at a time; requests made while one runs
merge into the next (a full gap scan asked for is kept).

``tick_job`` without an upkeep (beat's ``leader_tick``, tests, scripts)
checks gaps and compacts within its full rounds, as before.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Callable

from ..errors import StaleLeaderError

if TYPE_CHECKING:
    from ..job import Job

log = logging.getLogger("elk_celery.leader")

#: Seconds one upkeep pass may compact for. A round could give it 50 ms
#: only, which folds about 5,000 partitions per election interval: less than
#: a job finishing 1,000/s completes, so its stored partitions grew without
#: bound. Each compact call still blocks Redis for a few ms at most (500
#: partitions), and no round waits for the pass.
COMPACT_BUDGET = 2.0


class Upkeep:
    """Runs ``work(job, epoch, full_gaps)`` for one job, from a daemon thread,
    for the leader ``node`` (named in ``on_stale_leader`` when a pass is
    refused)."""

    def __init__(self, job: Job, work: Callable[..., object], node: str = "") -> None:
        self.job, self._work, self.node = job, work, node
        self._cond = threading.Condition()
        self._asked: tuple[int, bool] | None = None  # (epoch, full gap scan)
        self._busy = self._closing = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"elk-upkeep-{job.namespace}")
        self._thread.start()

    def request(self, epoch: int, full_gaps: bool) -> None:
        """Ask for a pass under ``epoch``; returns at once."""
        with self._cond:
            if self._asked is not None and self._asked[0] == epoch:
                full_gaps = full_gaps or self._asked[1]
            self._asked = (epoch, full_gaps)
            self._cond.notify_all()

    def idle(self, timeout: float) -> bool:
        """Wait until no pass is asked for or running (True) or ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: self._asked is None and not self._busy, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Let a running pass finish (for up to ``timeout``); drop one not started."""
        with self._cond:
            self._closing = True
            self._asked = None
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._asked is not None or self._closing)
                if self._closing:
                    return
                epoch, full_gaps = self._asked  # type: ignore[misc]
                self._asked, self._busy = None, True
            try:
                self._work(self.job, epoch, full_gaps=full_gaps)
            except StaleLeaderError:
                # deposed meanwhile: the new leader does its own upkeep; the
                # refused write is said like a refused round's
                self.job.elk.hooks.on_stale_leader(self.job.namespace, self.node, epoch)
            except Exception as exc:  # noqa: BLE001 - Redis away: the next full round asks again
                log.warning("elk: %s: gap check / compaction failed: %r", self.job.namespace, exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
