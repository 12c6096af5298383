"""PrometheusHooks: the Hooks subscriber that turns elk's events into metrics.

Register it with ``Elk(app, hooks=[PrometheusHooks()])`` (the worker does it
by itself when ``elk_metrics_port`` is set). It only updates the families of
:mod:`elk_celery.metrics.families`, which live in this process (or, under the
prefork pool, in this process's file in ``PROMETHEUS_MULTIPROC_DIR``);
serving them is :func:`elk_celery.metrics.start_metrics_server`'s job.
"""

from __future__ import annotations

from ..hooks import Hooks
from . import families as f

#: Claim codes that mean the claimer now holds the partition.
_HOLDING = frozenset(("ok", "preempted"))

#: on_partition_done outcome -> the counter it increments.
_OUTCOME_COUNTERS = {
    "completed": f.PARTITIONS_COMPLETED,
    "retry": f.PARTITIONS_RETRIED,
    "failed": f.PARTITIONS_FAILED,
    "lost": f.PARTITIONS_LOST,
    "released": f.PARTITIONS_RELEASED,
}

_LEADER_ROLES = ("elected", "renewed")


class PrometheusHooks(Hooks):
    """Updates elk's Prometheus metric families on every hook call."""

    # -- leader ---------------------------------------------------------------
    def on_leader_tick(self, namespace: str, node: str, *, role: str, epoch: int,
                       duration: float) -> None:
        f.LEADER_TICKS.labels(namespace, role).inc()
        f.LEADER_TICK_DURATION.labels(namespace).observe(duration)
        f.LEADER_IS_LEADER.labels(namespace, node).set(1 if role in _LEADER_ROLES else 0)
        f.LEADER_EPOCH.labels(namespace).set(epoch)
        if role == "elected":
            f.LEADER_ELECTIONS.labels(namespace, node).inc()

    def on_planned(self, namespace: str, *, created: int, planned_max_id: int | None,
                   duration: float, error: str | None = None) -> None:
        f.LEADER_PLANNING_DURATION.labels(namespace).observe(duration)
        if created:
            f.LEADER_PLANNED.labels(namespace).inc(created)
        if error is not None:
            f.LEADER_PLANNING_ERRORS.labels(namespace).inc()
        if planned_max_id is not None:
            f.LEADER_PLANNED_MAX_ID.labels(namespace).set(planned_max_id)

    def on_dispatched(self, namespace: str, *, sent: int, duration: float) -> None:
        f.LEADER_DISPATCH_DURATION.labels(namespace).observe(duration)
        if sent:
            f.LEADER_DISPATCHED.labels(namespace).inc(sent)

    def on_recovered(self, namespace: str, *, recovered: int, failed: int) -> None:
        if recovered:
            f.LEADER_RECOVERED.labels(namespace, "pending").inc(recovered)
        if failed:
            f.LEADER_RECOVERED.labels(namespace, "failed").inc(failed)

    def on_stale_leader(self, namespace: str, node: str, epoch: int) -> None:
        f.LEADER_STALE_WRITES.labels(namespace, node).inc()
        f.LEADER_IS_LEADER.labels(namespace, node).set(0)

    # -- nodes -------------------------------------------------------------------
    def on_heartbeat(self, namespace: str, node: str, *, ok: bool, duration: float,
                     held: int = 0, window: int = 0) -> None:
        f.NODE_HEARTBEAT_DURATION.labels(namespace, node).observe(duration)
        if not ok:
            f.NODE_HEARTBEAT_ERRORS.labels(namespace, node).inc()
            return
        f.NODE_HEARTBEATS.labels(namespace, node).inc()
        f.NODE_LAST_HEARTBEAT.labels(namespace, node).set_to_current_time()
        f.NODE_INFLIGHT.labels(namespace, node).set(held)
        if window:
            f.NODE_TASK_WINDOW.labels(namespace, node).set(window)

    def on_leases_renewed(self, namespace: str, node: str, *, renewed: int, lost: int) -> None:
        if renewed:
            f.NODE_LEASE_RENEWALS.labels(namespace, node).inc(renewed)
        if lost:
            f.NODE_LEASES_LOST.labels(namespace, node).inc(lost)

    # -- partitions --------------------------------------------------------------
    def on_claim(self, namespace: str, node: str, task: str, code: str, *,
                 duration: float, queued: float | None = None) -> None:
        f.PARTITION_CLAIMS.labels(namespace, node, task, code).inc()
        f.PARTITION_CLAIM_DURATION.labels(namespace).observe(duration)
        if code in _HOLDING:
            f.PARTITIONS_IN_PROGRESS.labels(namespace, node).inc()
            if queued is not None:
                f.PARTITION_QUEUE_WAIT.labels(namespace, task).observe(max(0.0, queued))
            if code == "preempted":
                f.PARTITIONS_PREEMPTED.labels(namespace, node).inc()

    def on_partition_done(self, namespace: str, node: str, task: str, *, outcome: str,
                          items: int, duration: float, min_id: int, max_id: int) -> None:
        f.PARTITIONS_IN_PROGRESS.labels(namespace, node).dec()
        f.PARTITION_DURATION.labels(namespace, task, outcome).observe(duration)
        if outcome == "stale":
            f.PARTITION_STALE_WRITES.labels(namespace, node).inc()
        else:
            counter = _OUTCOME_COUNTERS.get(outcome)
            if counter is not None:
                counter.labels(namespace, node, task).inc()
        if outcome == "completed" and items:
            f.ITEMS_PROCESSED.labels(namespace, task).inc(items)

    # -- breaker, gaps, Redis ----------------------------------------------------
    def on_breaker_refused(self, namespace: str, node: str) -> None:
        f.BREAKER_REFUSED.labels(namespace, node).inc()

    def on_gaps(self, namespace: str, *, found: int, filled: int, mode: str) -> None:
        f.GAP_SCANS.labels(namespace, mode).inc()
        if found:
            f.GAPS_FOUND.labels(namespace, mode).inc(found)
        if filled:
            f.GAPS_FILLED.labels(namespace, mode).inc(filled)

    def on_redis_call(self, operation: str, duration: float, error: BaseException | None) -> None:
        f.REDIS_CALL_DURATION.labels(operation).observe(duration)
        if error is not None:
            f.REDIS_ERRORS.labels(operation, type(error).__name__).inc()
