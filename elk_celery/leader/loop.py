"""The leader loop: every worker runs one, and demand paces it.

Each job gets a thread. It takes the namespace's leader lease when the lease
is free or its holder is dead (so the first worker leads at once, and no
beat tick is needed to elect), and then leads for as long as it holds it:
a round runs whenever the job's own progress asks for one (claims that
leave the sent messages or the pending backlog low, retries, releases, new
nodes: the scripts push a wake-up that this thread waits on), when a
re-sent partition falls due, and at least every ``leader_election_interval``
(a *full* round, which also recovers partitions of dead owners and asks the
job's upkeep thread to check for gaps and compact). Two threads per job work
beside the rounds: the outbox publishes what a round picked
(:mod:`.outbox`), the upkeep does the housekeeping (:mod:`.upkeep`), so a
round lasts a few Redis calls. A node that does not hold the lease only
tries to take it once per interval.

It runs in a process of its own beside the worker's main process
(:mod:`.process`) or in threads of the main process. If the main process
hangs, the node's heartbeat goes stale and the lease script refuses to renew
it (role ``dead``), so someone alive takes over.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Collection

from .outbox import Outbox
from .tick import tick_job, upkeep_pass
from .upkeep import COMPACT_BUDGET, Upkeep

if TYPE_CHECKING:
    from ..job import ElkHost, Job

log = logging.getLogger("elk_celery.leader")

#: Leader roles that mean this node leads.
LEADING = frozenset(("elected", "renewed"))


class LeaderLoop:
    """Leads every job of ``elk`` that ``node`` holds (or can take) the lease of.

    ``parent_pid``: when set (the leader process), the loop ends as soon as
    that process is gone. ``namespaces``: lead only these jobs (default: all).
    """

    def __init__(self, elk: ElkHost, node: str, parent_pid: int | None = None,
                 namespaces: Collection[str] | None = None) -> None:
        self.elk = elk
        self.node = node
        self.parent_pid = parent_pid
        self.namespaces = None if namespaces is None else frozenset(namespaces)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def _jobs(self) -> list[Job]:
        return [job for ns, job in list(self.elk.jobs.items())
                if self.namespaces is None or ns in self.namespaces]

    def start(self) -> None:
        """Lead from daemon threads of this process, one per job."""
        for job in self._jobs():
            t = threading.Thread(target=self._lead, args=(job,), daemon=True,
                                 name=f"elk-leader-{job.namespace}")
            t.start()
            self._threads.append(t)

    def request_stop(self) -> None:
        """Ask the threads to stop (safe from a signal handler)."""
        self._stopping.set()

    def stop(self) -> None:
        self._stopping.set()
        for job in self._jobs():
            try:  # unblock a thread waiting for a wake-up
                job.store.wake("stop")
            except Exception:  # noqa: BLE001 - Redis away: it wakes at its timeout
                pass
        for t in self._threads:
            t.join(timeout=30)

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def _orphaned(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def run(self) -> None:
        """Lead until stopped (or orphaned): the leader process's main."""
        self.start()
        while not self._stopping.wait(1.0):
            if self._orphaned():
                log.warning("elk: the worker's main process is gone: the leader process exits")
                break
        self.stop()

    def _lead(self, job: Job) -> None:
        outbox = Outbox(job)  # publishes this job's messages beside the rounds
        upkeep = Upkeep(job, functools.partial(upkeep_pass, compact_budget=COMPACT_BUDGET), self.node)
        try:
            self._rounds(job, outbox, upkeep)
        finally:
            upkeep.close()
            outbox.close()

    def _rounds(self, job: Job, outbox: Outbox, upkeep: Upkeep) -> None:
        interval = job.settings.leader_election_interval
        next_full = 0.0   # monotonic time of the next full round
        dead_logged = stuck_logged = False
        while not self._stopping.is_set():
            try:
                stuck = outbox.stuck_for()
                if stuck > job.settings.leader_lock_expiry:
                    # publishing hangs (a stalled broker connection): stop renewing,
                    # so the lease lapses to a node that can publish, as it did when
                    # a round published and hung itself
                    if not stuck_logged:
                        log.error("elk: %s: publishing task messages has hung for %.0f s: not "
                                  "leading until it returns", job.namespace, stuck)
                        stuck_logged = True
                    next_full = 0.0
                    self._stopping.wait(interval)
                    continue
                stuck_logged = False
                full = time.monotonic() >= next_full
                outbox.hold()  # rounds go first (see leader/outbox.py)
                try:
                    out = tick_job(job, self.node, full=full, outbox=outbox, upkeep=upkeep)
                finally:
                    outbox.release()
                role = out["role"]
                if role == "dead":
                    if not dead_logged:
                        log.warning("elk: %s: not leading: this node's heartbeat is stale",
                                    job.namespace)
                        dead_logged = True
                    self._stopping.wait(interval)
                    continue
                dead_logged = False
                if role not in LEADING:
                    next_full = 0.0  # a full round first, should the lease come here
                    self._stopping.wait(interval)
                    continue
                if full or role == "elected":
                    next_full = time.monotonic() + interval
                timeout = next_full - time.monotonic()
                if out.get("next_due_in") is not None:
                    timeout = min(timeout, out["next_due_in"] + 0.005)
                if not self._stopping.is_set():
                    job.store.wait_for_wake(max(0.0, timeout))
            except Exception as exc:  # noqa: BLE001 - Redis or broker down: try again
                log.warning("elk: leader round for %s failed: %r", job.namespace, exc)
                self._stopping.wait(min(interval, 1.0))
