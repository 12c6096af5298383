"""Leadership, once won, is exercised by the leader node's main process.

Beat's ticks go to whichever worker takes them, so the node holding a
namespace's lease would otherwise lead only on the ticks it happens to
receive (one in N with N workers) and could even let its lease lapse. The
tick elects; this loop, in the worker's main process, then renews the lease
and recovers, plans and dispatches every ``leader_election_interval`` for as
long as this node holds it.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from .tick import tick_job

if TYPE_CHECKING:
    from ..app import Elk

log = logging.getLogger("elk_celery.leader")


class LeaderLoop:
    def __init__(self, elk: Elk, node: str) -> None:
        self.elk = elk
        self.node = node
        self._stop = threading.Event()
        self._epochs: dict[str, int] = {}  # the epoch each namespace was last led with
        self._thread = threading.Thread(target=self._loop, name="elk-leader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def run_once(self) -> int:
        """Lead every namespace this node holds the lease of; returns how many."""
        led = 0
        for job in list(self.elk.jobs.values()):
            if self._stop.is_set():
                break
            try:
                holder = job.store.leader()
                if holder is not None and holder[0] == self.node:
                    # a full gap scan on the first round of each new epoch
                    new = self._epochs.get(job.namespace) != holder[1]
                    tick_job(job, self.node, full_gaps=new)
                    self._epochs[job.namespace] = holder[1]
                    led += 1
            except Exception as exc:  # noqa: BLE001 - Redis or broker down: next round
                log.warning("elk: leader round for %s failed: %r", job.namespace, exc)
        return led

    def _loop(self) -> None:
        interval = min((j.settings.leader_election_interval for j in self.elk.jobs.values()),
                       default=self.elk.settings.leader_election_interval)
        while not self._stop.wait(interval):
            self.run_once()
