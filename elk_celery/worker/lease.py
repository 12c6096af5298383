"""Lease keeping inside the process that runs partitions.

Two daemon threads per process. The *renewer* renews the leases of the
partitions this process runs, about every heartbeat interval, in one script
call per namespace. The *fence* stops a processor (``LeaseLost`` raised
inside its thread at its next Python instruction; a call blocked in C sees
it on return) when a renewal finds the lease lost, or when the partition's
deadline passes.

Why a deadline. The leader recovers a partition, and a preempting claim
takes it, as soon as its lease expired *or its node's heartbeat expired*
(Redis server time). The heartbeat comes from the worker's main process,
the renewal from this one. So each renewal that goes through returns
Redis's time, the node's heartbeat expiry and the new lease expiry
(renew.lua), and nobody else can own the partition before::

    D = min(heartbeat expiry, lease expiry)            (Redis time)

Both recover.lua and a preempting claim test exactly that, on Redis's clock
when they run, so a successor claims at D at the earliest (in practice up
to a leader interval plus a message's delivery later; no slack of that kind
is counted on here). A node that was dead and heartbeats again keeps
nothing that was recovered meanwhile: its fence was bumped, so the next
renewal finds it lost.

The keeper maps D to its own monotonic clock from the moment it *sent* that
renewal: Redis read its clock after that moment, so
``sent + (D - redis_now)`` is at or before D in real time. The processor is
stopped at that instant minus a margin, ``min(hb, node_expiry - hb) / 2``
(the stop's own latency and the keeper's wake-up under load), whatever
happens to later renewals: a renewal that fails, hangs on a stalled
connection or is refused changes nothing about D. A main process that
heartbeats later moves the real expiry later, never earlier, so the figure
read at the last good renewal is safe to keep; the next good renewal reads
the later one.

Right after a claim no renewal has run yet: the claim proved the node alive,
and its main process heartbeats every ``hb``, so its expiry is at least
``node_expiry - hb`` away unless that process is already hung; the first
renewal (within ``hb``) reads the real figure. A hung main process can so
cost at most one heartbeat interval of overlap, right after a claim.

Renewals run every ``hb``, sooner when D comes near (a heartbeat of the
main process that is late, but within ``node_expiry``, is then seen before
D), and every ``retry`` (a fraction of ``hb``) after a failure. With
``node_expiry`` much closer to ``hb`` than the default 3 x, the margin
shrinks with it, and so does the slack a late heartbeat has.

What this cannot cover: a processor blocked in one C call (a query, a
sleep) longer than the margin stops only when that call returns; use
``PartitionContext.lost`` / ``check()`` and timeouts shorter than
``node_expiry - hb`` on such calls. And D is only as durable as Redis's
writes: a failover that loses the latest heartbeat writes moves the real
expiry earlier than the one read here.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import LeaseLost
from ..settings import shortest

log = logging.getLogger("elk_celery.lease")


def _async_raise(thread_ident: int, exc: type[BaseException] | None) -> None:
    # exc=None clears an exception that is set but not raised yet
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_ident), ctypes.py_object(exc) if exc is not None else None)


def fence_timing(settings: Any) -> tuple[float, float]:
    """(margin, retry) in seconds for these settings: the processor stops
    ``margin`` before its deadline; a failed renewal is retried after ``retry``."""
    hb, ne = settings.heartbeat_interval, settings.node_expiry_s
    margin = min(hb, ne - hb) / 2
    retry = max(0.02, min(1.0, hb / 4, margin / 2))
    return margin, retry


@dataclass(eq=False)
class Held:
    store: Any
    partition_id: int
    fence: int
    node_id: str
    thread_ident: int
    #: monotonic time by which the processor must have stopped
    deadline: float
    #: monotonic time of the next renewal
    due: float
    lost: bool = False
    interruptible: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    def expired(self) -> bool:
        """Lost, or past the deadline (even if the fence thread has not run yet)."""
        return self.lost or time.monotonic() >= self.deadline

    def stop_interrupts(self) -> None:
        """The processor returned: no async exception may land after this."""
        with self.lock:
            self.interruptible = False
            if self.lost:
                _async_raise(self.thread_ident, None)


def _next_due(now: float, deadline: float, settings: Any) -> float:
    # every heartbeat; sooner as the deadline nears, so a late (but in
    # time) heartbeat of the main process is seen before it
    hb = float(settings.heartbeat_interval)
    margin, retry = fence_timing(settings)
    return now + max(retry, min(hb, deadline - now - margin))


class LeaseKeeper:
    def __init__(self) -> None:
        self._held: dict[tuple[str, int], Held] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._fence_cv = threading.Condition(self._lock)
        self._pid = -1
        self._threads: list[threading.Thread] = []
        self.hooks: Any = None
        # when the renewer and the fence next look (monotonic): a partition
        # held later than that needs no wake-up (waking both threads on every
        # claim cost a no-op partition 0.1 ms of CPU, bench_e2e.py --profile)
        # (infinity while a thread is awake or not started: then it sees the
        # partition anyway, or is woken to)
        self._renew_at = math.inf
        self._fence_at = math.inf

    def use_hooks(self, hooks: Any) -> None:
        """Report renewals to ``hooks``: the worker bootstep's, once, before
        the pool forks (its processes inherit them)."""
        self.hooks = hooks

    def adopt_hooks(self, hooks: Any) -> None:
        """:meth:`use_hooks` unless some were given (a partition run outside
        a worker: the first run's)."""
        if self.hooks is None:
            self.hooks = hooks

    def hold(self, store: Any, partition_id: int, fence: int, node_id: str, *,
             claimed_at: float | None = None, heartbeats: bool = True) -> Held:
        """Keep the lease a claim sent at monotonic time ``claimed_at`` (default:
        now) got; ``heartbeats``: the node is kept alive by a bootstep."""
        s = store.settings
        t = time.monotonic() if claimed_at is None else claimed_at
        safe = s.partition_lock_expiry
        if heartbeats:
            safe = min(safe, s.node_expiry_s - s.heartbeat_interval)
        deadline = t + safe - fence_timing(s)[0]
        h = Held(store, partition_id, fence, node_id, threading.get_ident(), deadline,
                 _next_due(t, deadline, s))
        with self._lock:
            self._held[(store.namespace, partition_id)] = h
            self._ensure_threads()
            if h.deadline < self._fence_at:
                self._fence_cv.notify_all()
        if h.due < self._renew_at:
            self._wake.set()
        return h

    def drop(self, h: Held) -> None:
        with self._lock:
            if self._held.get((h.store.namespace, h.partition_id)) is h:
                del self._held[(h.store.namespace, h.partition_id)]

    def held(self) -> list[Held]:
        with self._lock:
            return list(self._held.values())

    def _ensure_threads(self) -> None:
        # threads do not survive fork: each pool child starts its own
        if self._pid != os.getpid() or not all(t.is_alive() for t in self._threads):
            self._pid = os.getpid()
            self._threads = [
                threading.Thread(target=self._loop, name="elk-lease-keeper", daemon=True),
                threading.Thread(target=self._fence_loop, name="elk-lease-fence", daemon=True)]
            for t in self._threads:
                t.start()

    def renew_now(self, due_only: bool = False) -> None:
        """Renew the held leases (``due_only``: those due within half a heartbeat)."""
        now = time.monotonic()
        groups: dict[tuple[int, str], list[Held]] = {}
        for h in self.held():
            if h.lost or not h.interruptible:  # a finished processor needs no lease
                continue
            if due_only and h.due > now + h.store.settings.heartbeat_interval / 2:
                continue
            groups.setdefault((id(h.store), h.node_id), []).append(h)
        for (_, node), hs in groups.items():
            self._renew(hs[0].store, node, hs)

    def _renew(self, store: Any, node: str, hs: list[Held]) -> None:
        s = store.settings
        sent = time.monotonic()
        t0 = time.perf_counter()
        err: BaseException | None = None
        try:
            r = store.strategy.renew_leases_timed(node, [(h.partition_id, h.fence) for h in hs])
        except Exception as exc:  # noqa: BLE001 - Redis away: soon again; the deadline stands
            err = exc
            log.warning("elk: lease renewal for %s failed: %s: %s", store.namespace,
                        type(exc).__name__, exc)
            retry_at = time.monotonic() + fence_timing(s)[1]
            for h in hs:
                h.due = retry_at
            return
        finally:
            if self.hooks is not None:
                self.hooks.on_redis_call("renew", time.perf_counter() - t0, err)
        lost = set(r.lost)
        deadline = sent + r.safe_ms / 1000 - fence_timing(s)[0]
        now = time.monotonic()
        for h in hs:
            if h.partition_id in lost:
                self._lose(h, "its renewal found it lost")
            else:
                # never later than what this renewal proved (a reply may be old)
                h.deadline = deadline
                h.due = _next_due(now, deadline, s)
        with self._lock:
            self._fence_cv.notify_all()
        if self.hooks is not None:
            self.hooks.on_leases_renewed(store.namespace, node, renewed=len(hs) - len(lost),
                                         lost=len(lost))

    def _lose(self, h: Held, why: str) -> bool:
        with h.lock:
            if h.lost or not h.interruptible:
                return False
            h.lost = True
            _async_raise(h.thread_ident, LeaseLost)
        log.warning("elk: lost the lease of %s partition %s (fence %s), %s: stopping its "
                    "processor", h.store.namespace, h.partition_id, h.fence, why)
        return True

    def _loop(self) -> None:
        """The renewer: renew what is due; settle idle completions."""
        while True:
            held = [h for h in self.held() if not h.lost and h.interruptible]
            now = time.monotonic()
            idle = shortest((h.store.settings for h in held), "heartbeat_interval", 1.0)
            until = min([h.due for h in held] + [now + idle])
            self._renew_at = until
            self._wake.wait(max(0.0, until - now))
            self._renew_at = math.inf  # awake: whatever is held from now on wakes it again
            self._wake.clear()
            if held:
                self.renew_now(due_only=True)
            # an idle process reports its last completion within a second
            from . import completion
            completion.settle_all(older_than=0.2)

    def _fence_loop(self) -> None:
        """The fence: stop every processor whose deadline passed. Apart from
        the renewer, which may hang in a call to a stalled Redis."""
        while True:
            with self._lock:
                live = [h for h in self._held.values() if not h.lost and h.interruptible]
                now = time.monotonic()
                late = [h for h in live if h.deadline <= now]
                if not late:
                    nxt = min((h.deadline for h in live), default=now + 1.0)
                    self._fence_at = nxt
                    self._fence_cv.wait(max(0.001, nxt - now))
                    self._fence_at = math.inf
                    continue
            for h in late:
                if self._lose(h, "no renewal went through in time (the node may be dead "
                                 "to the leader by now)") and self.hooks is not None:
                    self.hooks.on_leases_renewed(h.store.namespace, h.node_id, renewed=0, lost=1)


#: The keeper of this process.
keeper = LeaseKeeper()
