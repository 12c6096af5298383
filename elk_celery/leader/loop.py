"""Leadership, once won, is exercised by the leader node itself.

Beat's ticks go to whichever worker takes them, so the node holding a
namespace's lease would otherwise lead only on the ticks it happens to
receive (one in N with N workers) and could even let its lease lapse. The
tick elects; this loop then renews the lease and recovers, plans and
dispatches every ``leader_election_interval`` for as long as this node
holds it. It runs in a process of its own beside the worker's main process
(:mod:`.process`) or in a thread of the main process.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from .tick import tick_job

if TYPE_CHECKING:
    from ..app import Elk

log = logging.getLogger("elk_celery.leader")


class LeaderLoop:
    """Leads every namespace ``node`` holds the lease of, each interval.

    ``parent_pid``: when set (the leader process), the loop ends as soon as
    that process is gone.
    """

    def __init__(self, elk: Elk, node: str, parent_pid: int | None = None) -> None:
        self.elk = elk
        self.node = node
        self.parent_pid = parent_pid
        self._stop = threading.Event()
        self._epochs: dict[str, int] = {}  # the epoch each namespace was last led with
        self._silent: set[str] = set()     # namespaces where this node is not live (logged once)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Lead from a daemon thread of this process."""
        self._thread = threading.Thread(target=self.run, name="elk-leader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_once(self) -> int:
        """Lead every namespace this node holds the lease of; returns how many."""
        led = 0
        for job in list(self.elk.jobs.values()):
            if self._stop.is_set():
                break
            try:
                holder = job.store.leader()
                if holder is None or holder[0] != self.node:
                    continue
                # The main process heartbeats the node. If it hangs (or is
                # stopped) while this loop runs on, the node is dead to
                # everyone else: stop renewing so another node takes over,
                # and don't recover this node's own partitions from under it.
                if self.node not in job.store.live_node_ids():
                    if job.namespace not in self._silent:
                        log.warning("elk: %s: not leading: this node's heartbeat is stale",
                                    job.namespace)
                        self._silent.add(job.namespace)
                    continue
                self._silent.discard(job.namespace)
                # a full gap scan on the first round of each new epoch
                new = self._epochs.get(job.namespace) != holder[1]
                tick_job(job, self.node, full_gaps=new)
                self._epochs[job.namespace] = holder[1]
                led += 1
            except Exception as exc:  # noqa: BLE001 - Redis or broker down: next round
                log.warning("elk: leader round for %s failed: %r", job.namespace, exc)
        return led

    def _orphaned(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def run(self) -> None:
        """Lead each interval until stopped (or orphaned)."""
        interval = min((j.settings.leader_election_interval for j in self.elk.jobs.values()),
                       default=self.elk.settings.leader_election_interval)
        while not self._stop.wait(interval):
            if self._orphaned():
                log.warning("elk: the worker's main process is gone: the leader process exits")
                return
            self.run_once()
