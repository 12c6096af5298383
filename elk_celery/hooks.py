"""Hooks: plain callbacks elk_celery calls at each step, no-ops by default.

Subclass :class:`Hooks`, override what you need and pass an instance to
``Elk(app, hooks=[...])``. Metrics are one such subscriber
(elk_celery.metrics). A hook that raises is logged and ignored: observing
the job must never break it.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Any, Iterator

log = logging.getLogger("elk_celery.hooks")


class Hooks:
    """Every method is a no-op; override the ones you need."""

    # -- leader (the leader process or thread; a pool process for beat ticks) -
    def on_leader_tick(self, namespace: str, node: str, *, role: str, epoch: int,
                       duration: float) -> None:
        """After each leader round and beat tick; role 'elected' | 'renewed' | 'held'
        (a tick that only elects, in the leader's node) | 'follower' | 'dead' (this
        node's own heartbeat expired) | 'deposed'."""

    def on_planned(self, namespace: str, *, created: int, planned_max_id: int | None,
                   duration: float, error: str | None = None) -> None:
        """After planning; ``error`` names a planner that raised or returned garbage."""

    def on_dispatched(self, namespace: str, *, sent: int, duration: float) -> None:
        """After task messages for pending partitions were sent."""

    def on_recovered(self, namespace: str, *, recovered: int, failed: int) -> None:
        """After partitions of dead owners went back to pending (or failed)."""

    def on_split(self, namespace: str, *, splits: int) -> None:
        """After a round split ``splits`` tails off running partitions onto idle slots."""

    def on_tail(self, namespace: str, *, seconds: float) -> None:
        """A job's tail ended: ``seconds`` from the first round that found nothing
        left to claim while partitions ran, to the round that found none running."""

    def on_stale_leader(self, namespace: str, node: str, epoch: int) -> None:
        """A leader write was refused: another leader took over."""

    # -- nodes (worker main process) -------------------------------------
    def on_heartbeat(self, namespace: str, node: str, *, ok: bool, duration: float,
                     held: int = 0, window: int = 0) -> None:
        """After a heartbeat; ``held`` partitions in flight vs the task ``window``."""

    def on_leases_renewed(self, namespace: str, node: str, *, renewed: int, lost: int) -> None:
        """After a lease renewal round of one pool process."""

    # -- partitions (pool process running the task) ----------------------
    def on_claim(self, namespace: str, node: str, task: str, code: str, *,
                 duration: float, queued: float | None = None) -> None:
        """After a claim; code 'ok' | 'preempted' | 'held' | 'completed' | 'failed'
        | 'missing' | 'window' | 'breaker' | 'dead'. ``queued``: seconds since dispatch."""

    def on_partition_done(self, namespace: str, node: str, task: str, *, outcome: str,
                          items: int, duration: float, min_id: int, max_id: int) -> None:
        """After processing; outcome 'completed' | 'retry' | 'failed' | 'stale' | 'lost'."""

    # -- circuit breaker ------------------------------------------------------
    def on_breaker_refused(self, namespace: str, node: str) -> None:
        """A claim was refused because the namespace's breaker is open."""

    # -- gaps -----------------------------------------------------------------
    def on_gaps(self, namespace: str, *, found: int, filled: int, mode: str) -> None:
        """After gap detection ('incremental' or 'full')."""

    # -- Redis ----------------------------------------------------------------
    def on_redis_call(self, operation: str, duration: float, error: BaseException | None) -> None:
        """After each script call the runtime makes (claim, complete, heartbeat, ...)."""


class HookChain(Hooks):
    """Calls every registered hook in turn; failures are logged, never raised."""

    def __init__(self, hooks: list[Hooks] | None = None) -> None:
        self.hooks: list[Hooks] = list(hooks or [])

    def add(self, hook: Hooks) -> None:
        if hook not in self.hooks:
            self.hooks.append(hook)

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("on_"):
            hooks = object.__getattribute__(self, "hooks")

            def call(*args: Any, **kwargs: Any) -> None:
                for h in hooks:
                    try:
                        getattr(h, name)(*args, **kwargs)
                    except Exception:  # noqa: BLE001 - observers must not break the job
                        log.exception("elk hook %s.%s failed", type(h).__name__, name)
            return call
        return object.__getattribute__(self, name)


@contextmanager
def timed(hooks: Hooks, operation: str) -> Iterator[None]:
    """Report one Redis call's duration and error to ``hooks.on_redis_call``."""
    t0 = time.perf_counter()
    err: BaseException | None = None
    try:
        yield
    except BaseException as exc:
        err = exc
        raise
    finally:
        hooks.on_redis_call(operation, time.perf_counter() - t0, err)
