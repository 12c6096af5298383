"""The leader process: the worker's leader loop, in a process of its own.

Why not a thread of the worker's main process: that process also runs
Celery's consumer, alone, and is the busiest process of a prefork worker.
A leader sending thousands of task messages there holds the GIL for whole
switch intervals at a time; every consumer I/O then waits for it, and the
pool starves while the backlog is being sent (measured in
benchmarks/bench_e2e.py). Forked like ``worker -B``'s embedded beat, from
the main process after the pool started and before any elk thread runs.

The process dies with the main process (``PR_SET_PDEATHSIG`` on Linux, a
parent check each round elsewhere), stops on SIGTERM, ignores SIGINT (a
Ctrl-C reaches the whole process group; the main process then stops it),
and stops leading while its node's heartbeat is stale (see
:class:`~.loop.LeaderLoop`). If it exits unexpectedly, the main process
leads from a thread instead (:meth:`LeaderProcess.alive` is polled by the
heartbeat).
"""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING, Any

from .loop import LeaderLoop

if TYPE_CHECKING:
    from ..job import ElkHost

log = logging.getLogger("elk_celery.leader")

#: Signals whose worker-main-process handlers must not run in the leader process.
_DEFAULTED = ("SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGTTOU", "SIGTTIN", "SIGCHLD")


def _die_with_parent(parent: int) -> None:
    try:  # Linux: SIGKILL when the main process dies, however it dies
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - elsewhere the loop checks its parent each round
        pass
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(0)


def _leader_main(elk: ElkHost, node: str, parent: int) -> None:
    _die_with_parent(parent)
    for name in _DEFAULTED:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    loop = LeaderLoop(elk, node, parent_pid=parent)
    signal.signal(signal.SIGTERM, lambda *_: loop.request_stop())
    from ..metrics_bridge import leader_process_exiting, leader_process_started
    leader_process_started(elk)
    try:
        loop.run()
    finally:
        leader_process_exiting(elk)


class LeaderProcess:
    """Runs a :class:`LeaderLoop` in a forked child of the worker's main process."""

    def __init__(self, elk: ElkHost, node: str) -> None:
        self.elk = elk
        self.node = node
        self._proc: Any = None

    def start(self) -> None:
        # billiard: Celery's multiprocessing, whose after-fork hooks give the
        # child its own broker connection pool (as for the pool and -B)
        from billiard import get_context

        self._proc = get_context("fork").Process(  # type: ignore[attr-defined]
            target=_leader_main, args=(self.elk, self.node, os.getpid()),
            name="elk-leader", daemon=True)
        self._proc.start()
        log.info("elk: leader process %s started", self._proc.pid)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    @property
    def exitcode(self) -> int | None:
        return None if self._proc is None else self._proc.exitcode

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, wait for the round in progress to end, then SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        if proc.is_alive():
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            proc.join(timeout)
            if proc.is_alive():
                log.warning("elk: leader process %s did not stop in %.0fs: killed", proc.pid, timeout)
                os.kill(proc.pid, signal.SIGKILL)
                proc.join(5)
        else:
            proc.join(0)
