"""Lease keeping inside the process that runs partitions.

One daemon thread per process renews the leases of the partitions that
process runs, every heartbeat interval, in one script call per namespace.
Renewal is refused once the node's own heartbeat expired (its main process
died or hangs), so leases live only as long as the node does. When a lease
is lost the processor is stopped: ``LeaseLost`` is raised inside its thread
at its next Python instruction (a call blocked in C sees it on return).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import LeaseLost

log = logging.getLogger("elk_celery.lease")


def _async_raise(thread_ident: int, exc: type[BaseException] | None) -> None:
    # exc=None clears an exception that is set but not raised yet
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_ident), ctypes.py_object(exc) if exc is not None else None)


@dataclass(eq=False)
class Held:
    store: Any
    partition_id: int
    fence: int
    node_id: str
    thread_ident: int
    lost: bool = False
    interruptible: bool = True
    #: when the lease was last known good (monotonic): a keeper that cannot
    #: reach Redis gives up before the lease can have lapsed elsewhere
    renewed_at: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def stop_interrupts(self) -> None:
        """The processor returned: no async exception may land after this."""
        with self.lock:
            self.interruptible = False
            if self.lost:
                _async_raise(self.thread_ident, None)


class LeaseKeeper:
    def __init__(self) -> None:
        self._held: dict[tuple[str, int], Held] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid = -1
        self._thread: threading.Thread | None = None
        self.hooks: Any = None

    def hold(self, store: Any, partition_id: int, fence: int, node_id: str) -> Held:
        h = Held(store, partition_id, fence, node_id, threading.get_ident())
        with self._lock:
            self._held[(store.namespace, partition_id)] = h
            self._ensure_thread()
        return h

    def drop(self, h: Held) -> None:
        with self._lock:
            if self._held.get((h.store.namespace, h.partition_id)) is h:
                del self._held[(h.store.namespace, h.partition_id)]

    def held(self) -> list[Held]:
        with self._lock:
            return list(self._held.values())

    def _ensure_thread(self) -> None:
        # threads do not survive fork: each pool child starts its own
        if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._loop, name="elk-lease-keeper", daemon=True)
            self._thread.start()

    def _interval(self, held: list[Held]) -> float:
        return min((h.store.settings.heartbeat_interval for h in held), default=1.0)

    def renew_now(self) -> None:
        groups: dict[tuple[int, str], list[Held]] = {}
        for h in self.held():
            if not h.lost and h.interruptible:  # a finished processor needs no lease
                groups.setdefault((id(h.store), h.node_id), []).append(h)
        for (_, node), hs in groups.items():
            store = hs[0].store
            t0 = time.perf_counter()
            err: BaseException | None = None
            try:
                lost = set(store.strategy.renew_leases(node, [(h.partition_id, h.fence) for h in hs]))
            except Exception as exc:  # noqa: BLE001 - Redis down: retry next round
                err = exc
                log.warning("elk: lease renewal for %s failed: %r", store.namespace, exc)
                # self-fence: past this, the leader may already have handed it on
                s = store.settings
                limit = s.partition_lock_expiry - s.heartbeat_interval
                for h in hs:
                    if time.monotonic() - h.renewed_at > limit:
                        self._lose(h)
                continue
            finally:
                if self.hooks is not None:
                    self.hooks.on_redis_call("renew", time.perf_counter() - t0, err)
            now = time.monotonic()
            for h in hs:
                if h.partition_id in lost:
                    self._lose(h)
                else:
                    h.renewed_at = now
            if self.hooks is not None:
                self.hooks.on_leases_renewed(store.namespace, node, renewed=len(hs) - len(lost),
                                             lost=len(lost))

    def _lose(self, h: Held) -> None:
        log.warning("elk: lost the lease of %s partition %s (fence %s): stopping its processor",
                    h.store.namespace, h.partition_id, h.fence)
        with h.lock:
            h.lost = True
            if h.interruptible:
                _async_raise(h.thread_ident, LeaseLost)

    def _loop(self) -> None:
        while True:
            held = self.held()
            self._wake.wait(self._interval(held))
            self._wake.clear()
            if held:
                self.renew_now()
            # an idle process reports its last completion within a second
            from . import completion
            completion.settle_all(older_than=0.2)


#: The keeper of this process.
keeper = LeaseKeeper()
