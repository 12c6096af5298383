"""The leader's outbox: task messages are published by a thread of their own.

A round's decisions (which partitions to send, recovered, planned) are in
Redis once its scripts return; publishing the messages is what takes the
time (about 65 us of CPU per message on this machine, so a round sending
300 would last 20 ms more, and longer on a loaded host). The leader loop
hands each round's picks to its job's outbox and ends the round, so
recovery, planning and the next wake-up never wait behind the broker.

Rounds go first: building messages is Python work that holds the GIL, and a
round thread coming back from each of its Redis calls would wait up to a
switch interval (5 ms) for it. The loop brackets each round with
:meth:`Outbox.hold` / :meth:`Outbox.release`, and the outbox waits before
each message while a round runs.

Nothing is lost by the hand-off: a picked partition is marked sent in
Redis before it is published, exactly as when the round sends it itself. A
message that never leaves (the process killed with it in the outbox, the
broker refusing it) is sent again by the flow, as a lost message is, after
``allocation_interval``. A message published after its leader was deposed
is harmless: claims are fenced, and a partition already taken refuses it.

``tick_job`` without an outbox (beat's ``leader_tick``, tests, scripts)
sends in the round, as before.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Sequence

from .sender import PartitionSender

if TYPE_CHECKING:
    from ..job import Job

log = logging.getLogger("elk_celery.leader")

#: What a round hands over: the picked (partition id, min id, max id), the
#: extra kwargs, and the perf_counter time the pick started (for on_dispatched).
Batch = tuple[Sequence[tuple[int, int, int]], dict[str, Any], float]

#: The most the flow adds to a round's time for publishing (seconds).
MAX_LAG = 1.0


class Outbox:
    """Publishes one job's picked partitions in order, from a daemon thread."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self._q: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._pending = 0          # messages handed over, not yet published (or dropped)
        self._lock = threading.Condition()
        self._sender: tuple[str | None, PartitionSender] | None = None
        self._free = threading.Event()  # clear while a round runs
        self._free.set()
        #: seconds from pick to published of the last batch (the flow's refill latency)
        self.last_lag = 0.0
        #: perf_counter time publishing of the current batch began (None: idle)
        self._busy_since: float | None = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"elk-outbox-{job.namespace}")
        self._thread.start()

    def put(self, due: Sequence[tuple[int, int, int]], kwargs: dict[str, Any],
            started: float) -> None:
        """Queue ``due`` for publishing; returns at once."""
        with self._lock:
            self._pending += len(due)
        self._q.put((due, kwargs, started))

    def hold(self) -> None:
        """A round starts: publishing waits before its next message."""
        self._free.clear()

    def release(self) -> None:
        """The round ended: publishing goes on."""
        self._free.set()

    def lag(self) -> float:
        """The last batch's pick-to-published time while something waits to be
        published, else 0; at most :data:`MAX_LAG` (one slow batch must not
        size the flow for long)."""
        return min(MAX_LAG, self.last_lag) if self._pending else 0.0

    def stuck_for(self) -> float:
        """Seconds the batch being published has been at it (0: idle)."""
        since = self._busy_since
        return 0.0 if since is None else max(0.0, time.perf_counter() - since)

    @property
    def pending(self) -> int:
        """Messages handed over and not yet published."""
        return self._pending

    def flush(self, timeout: float) -> bool:
        """Wait until everything handed over is published (True) or ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._lock.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Publish what is queued (for up to ``timeout``), then end the thread."""
        self._q.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive() or self._pending:
            log.warning("elk: %s: %d task message(s) not published at stop; the next leader "
                        "sends them again after allocation_interval", self.job.namespace,
                        self._pending)

    def _sender_for(self, queue_name: str | None) -> PartitionSender:
        # built once per queue setting: it reads the task's options (`elk set queue=` changes it)
        if self._sender is None or self._sender[0] != queue_name:
            job = self.job
            self._sender = (queue_name, PartitionSender(job.elk.app, job.task, job.namespace,
                                                        queue_name))
        return self._sender[1]

    def _run(self) -> None:
        job = self.job
        while True:
            item = self._q.get()
            if item is None:
                return
            due, kwargs, started = item
            self._busy_since = time.perf_counter()
            try:
                # a round lasts milliseconds (planning releases the hold); one
                # that never releases still lets a message out every 50 ms
                self._sender_for(job.settings.queue).send(
                    due, kwargs, before_each=lambda: self._free.wait(0.05))
                self.last_lag = max(0.0, time.perf_counter() - started)
                job.elk.hooks.on_dispatched(job.namespace, sent=len(due), duration=self.last_lag)
            except Exception as exc:  # noqa: BLE001 - broker away: the flow sends them again
                log.warning("elk: %s: publishing %d task message(s) failed (%r); they are "
                            "sent again after allocation_interval", job.namespace, len(due), exc)
            finally:
                self._busy_since = None
                with self._lock:
                    self._pending -= len(due)
                    self._lock.notify_all()
