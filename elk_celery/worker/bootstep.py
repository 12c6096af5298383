"""The worker bootstep: register the node, heartbeat, drain on shutdown.

Runs in the worker's main process. The heartbeat thread keeps the node
alive in every namespace of the app while the worker runs — including
during a warm shutdown, while the pool finishes its partitions. Only when
the pool has drained (Celery's ``worker_shutdown`` signal) does the node
give back whatever it still holds and unregister, so nothing waits for a
lease to expire.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from celery import bootsteps, signals

from ..errors import ConfigError
from ..leader.loop import LeaderLoop
from ..leader.process import LeaderProcess
from ..metrics_bridge import prepare_metrics, start_metrics_if_configured
from ..settings import shortest
from .lease import keeper
from .node import (is_prefork, new_node_id, node_id, pool_name, pool_size, set_node_id,
                   set_pool_size, task_window)

if TYPE_CHECKING:
    from ..job import ElkHost

log = logging.getLogger("elk_celery.worker")


class Heartbeat:
    """Heartbeats every namespace of the app from a daemon thread."""

    def __init__(self, elk: ElkHost, node: str, info: dict[str, Any],
                 each_beat: Callable[[], None] | None = None) -> None:
        self.elk = elk
        self.node = node
        self.info = info
        self.each_beat = each_beat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="elk-heartbeat", daemon=True)

    def register(self) -> None:
        """List the namespaces and send the first heartbeat (no thread yet)."""
        for job in list(self.elk.jobs.values()):
            try:
                job.store.register()
            except Exception as exc:  # noqa: BLE001 - only operators' listing needs it
                log.warning("elk: could not list %s in the registry: %r", job.namespace, exc)
        self.beat()  # registered before the first task can arrive

    def start(self) -> None:
        self._thread.start()

    def beat(self) -> bool:
        """Heartbeat every namespace; False if any failed."""
        hooks = self.elk.hooks
        ok = True
        for job in list(self.elk.jobs.values()):
            store = job.store
            t0 = time.perf_counter()
            try:
                job.refresh_settings(force=True)  # `elk set` applies within one heartbeat
                window = task_window(job.settings)
                _, held = store.heartbeat(self.node, {**self.info, "task_window": window,
                                                      "slots": window or pool_size() or 1})
            except Exception as exc:  # noqa: BLE001 - Redis down: try again next beat
                hooks.on_redis_call("heartbeat", time.perf_counter() - t0, exc)
                hooks.on_heartbeat(job.namespace, self.node, ok=False,
                                   duration=time.perf_counter() - t0)
                log.warning("elk: heartbeat of %s failed: %r", job.namespace, exc)
                ok = False
                continue
            hooks.on_redis_call("heartbeat", time.perf_counter() - t0, None)
            hooks.on_heartbeat(job.namespace, self.node, ok=True, duration=time.perf_counter() - t0,
                               held=held, window=window)
        return ok

    def _loop(self) -> None:
        interval = shortest((j.settings for j in self.elk.jobs.values()), "heartbeat_interval",
                            self.elk.settings.heartbeat_interval)
        # a failed heartbeat is tried again soon: the pool's processors stop
        # at the node's expiry known to their last renewal (worker/lease.py)
        retry = min(interval / 4, 1.0)
        wait = interval
        while not self._stop.wait(wait):
            wait = interval if self.beat() else retry
            if self.each_beat is not None:
                self.each_beat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class ElkWorkerStep(bootsteps.StartStopStep):
    """Added to ``app.steps['worker']`` by ``Elk(app)``, as a subclass that
    holds that ``Elk`` (:func:`install_worker_side`)."""

    #: the Elk of the app this step was made for
    elk: ElkHost

    label = "elk"
    # start after the pool (our threads are not forked into its children),
    # stop before it (the stop waits for its partitions; see stop())
    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        # runs in the main process before the pool forks: children inherit
        # the node id and the hooks
        super().__init__(worker, **kwargs)
        self.heartbeat: Heartbeat | None = None
        self.leader: LeaderLoop | LeaderProcess | None = None
        self.metrics_server: Any = None
        self._left = False
        set_node_id(new_node_id(getattr(worker, "hostname", None)), registered=True)
        # the Pool step's __init__ ran first (we require it): -c or --autoscale's max
        set_pool_size(int(getattr(worker, "max_concurrency", None) or getattr(worker, "concurrency", 0) or 0))
        elk = self.elk
        try:
            leader_queue = elk.settings.leader_queue
            elk.validate()  # every job's settings too: invalid ones fail the worker here
        except ConfigError as exc:
            # one clear line, not a traceback through Celery's blueprint
            log.critical("elk: invalid settings, worker not started: %s", exc)
            raise SystemExit(1) from None
        keeper.use_hooks(elk.hooks)  # the pool's processes inherit them
        # every worker consumes the leader ticks, whatever its -Q says: ticks
        # must not wait behind a partition backlog in a shared queue
        worker.app.amqp.queues.select_add(leader_queue)
        prepare_metrics(elk, worker)

    def start(self, worker: Any) -> None:
        elk = self.elk
        node = node_id()
        info = {"hostname": getattr(worker, "hostname", ""), "pid": os.getpid(),
                "concurrency": getattr(worker, "concurrency", None),
                "pool": pool_name(worker),
                "started": time.time()}
        # registered first, so the leader counts this node's slots from its
        # first round; the leader process forks before any elk thread exists
        # in this process
        self.heartbeat = Heartbeat(elk, node, info, each_beat=self._watch_leader)
        self.heartbeat.register()
        own = elk.settings.leader_process
        if own is None:
            own = is_prefork(worker)
        self.leader = LeaderProcess(elk, node) if own else LeaderLoop(elk, node)
        self.leader.start()
        if isinstance(self.leader, LeaderProcess):
            self.heartbeat.info["leader_pid"] = self.leader.pid
            self.heartbeat.beat()  # operators' tools tell the leader from the pool by it
        self.heartbeat.start()
        _RUNNING[id(worker.app)] = self
        log.info("elk: node %s serves %s", node, ", ".join(sorted(elk.jobs)) or "no jobs yet")
        self.metrics_server = start_metrics_if_configured(elk)

    @property
    def left(self) -> bool:
        """True once the node gave back what it held and left (shutdown)."""
        return self._left

    def leave(self) -> bool:
        """Mark the node gone; False if it already was (leave once)."""
        if self._left:
            return False
        self._left = True
        return True

    def _watch_leader(self) -> None:
        """From the heartbeat thread: a leader process that died (OOM killer,
        a crash) is replaced by a thread of this process, so the node never
        holds a lease it does not use. Not forked again: this process has
        threads now, and a fork copies their locks in whatever state."""
        leader = self.leader
        if isinstance(leader, LeaderProcess) and not leader.alive and not self.left:
            log.error("elk: the leader process exited (code %s): leading from a thread of the "
                      "worker's main process from now on", leader.exitcode)
            loop = LeaderLoop(leader.elk, leader.node)
            loop.start()
            self.leader = loop
            if self.heartbeat is not None:
                self.heartbeat.info.pop("leader_pid", None)

    def stop(self, worker: Any) -> None:
        """Warm shutdown: the consumer no longer takes tasks; keep heartbeating
        while this node's partitions are still being processed (their leases
        are being renewed), then give back whatever it still holds and leave.

        Polls Redis, not Celery's request bookkeeping: that is updated by the
        main thread's event loop, which this very call blocks. A partition
        whose pool process died is not renewed any more and stops the wait
        once its lease expires; it is then given back at once.
        """
        elk = self.elk
        errors = 0
        waiting = False
        while errors < 5 and not self.left:
            try:
                if not any(job.store.holds_live_lease(node_id()) for job in elk.jobs.values()):
                    break
            except Exception:  # noqa: BLE001 - Redis away: don't hang shutdown on it
                errors += 1
            if not waiting:
                waiting = True
                log.info("elk: draining: node %s waits for its running partitions to finish",
                         node_id())
            time.sleep(0.2)
        if waiting:
            log.info("elk: drained: node %s has no partition running any more", node_id())
        drain_and_unregister(elk, self)

    def terminate(self, worker: Any) -> None:
        """Cold shutdown: stop the pool's processes first (so no partition runs
        on after it was given back), then give everything back at once."""
        pool = getattr(worker, "pool", None)
        if pool is not None:
            try:
                pool.terminate()
            except Exception as exc:  # noqa: BLE001 - Celery terminates it again after us
                log.warning("elk: could not terminate the pool before giving back: %r", exc)
        drain_and_unregister(self.elk, self)


_RUNNING: dict[int, ElkWorkerStep] = {}


def running_step(app: Any) -> ElkWorkerStep | None:
    """The elk bootstep of ``app``'s worker running in this process, or None."""
    return _RUNNING.get(id(app))


def drain_and_unregister(elk: ElkHost, step: ElkWorkerStep) -> None:
    """After the pool drained: give back what the node still holds, leave.
    Runs once, from the step's stop/terminate or the worker_shutdown signal."""
    if not step.leave():
        return
    _RUNNING.pop(id(elk.app), None)
    node = node_id()
    if step.leader is not None:
        step.leader.stop()
    for job in list(elk.jobs.values()):
        try:
            released = job.store.unregister(node)
            if released:
                log.info("elk: %s: gave back partitions %s on shutdown", job.namespace, released)
            leader = job.store.leader()
            if leader and leader[0] == node:
                job.store.leader_release(node)
                log.info("elk: %s: released the leader lease", job.namespace)
            log.info("elk: %s: node %s left", job.namespace, node)
        except Exception as exc:  # noqa: BLE001
            log.warning("elk: could not unregister from %s: %r", job.namespace, exc)
    if step.heartbeat is not None:
        step.heartbeat.stop()
    if step.metrics_server is not None:
        step.metrics_server.stop()


def install_worker_side(elk: ElkHost) -> None:
    """Add the bootstep (holding ``elk``) to the app's worker; leave on shutdown."""
    app = elk.app
    step = type(ElkWorkerStep.__name__, (ElkWorkerStep,),
                {"elk": elk, "__module__": __name__, "__qualname__": ElkWorkerStep.__qualname__})
    app.steps["worker"].add(step)

    @signals.worker_shutdown.connect(weak=False)
    def _on_shutdown(sender: Any = None, **_: Any) -> None:
        step = _RUNNING.pop(id(elk.app), None)
        if step is not None and getattr(sender, "app", elk.app) is elk.app:
            drain_and_unregister(elk, step)
