"""PrometheusHooks: the Hooks subscriber that turns elk's events into metrics.

Register it with ``Elk(app, hooks=[PrometheusHooks()])`` (the worker does it
by itself when ``elk_metrics_port`` is set). It only updates the families of
:mod:`elk_celery.metrics.families`, which live in this process (or, under the
prefork pool, in this process's file in ``PROMETHEUS_MULTIPROC_DIR``);
serving them is :func:`elk_celery.metrics.start_metrics_server`'s job.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from ..hooks import Hooks
from ..worker.node import hostname_of
from . import families as f


class _Children:
    """``metric.labels(*values)`` with the children cached: prometheus_client
    re-validates the labels on every call, which was most of a hook's cost."""

    __slots__ = ("labels", "_cache")

    def __init__(self, metric: MetricWrapperBase) -> None:
        self.labels = metric.labels
        self._cache: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        try:
            return self._cache[values]
        except KeyError:
            child = self._cache[values] = self.labels(*values)
            return child


#: A cached accessor per family: ``_m.PARTITION_CLAIMS(ns, node, task, code).inc()``.
_m = SimpleNamespace(**{name: _Children(metric) for name, metric in vars(f).items()
                        if isinstance(metric, MetricWrapperBase)})

#: Claim codes that mean the claimer now holds the partition.
_HOLDING = frozenset(("ok", "preempted"))

#: on_partition_done outcome -> the counter it increments.
_OUTCOME_COUNTERS = {
    "completed": _m.PARTITIONS_COMPLETED,
    "retry": _m.PARTITIONS_RETRIED,
    "failed": _m.PARTITIONS_FAILED,
    "lost": _m.PARTITIONS_LOST,
}

_LEADER_ROLES = ("elected", "renewed", "held")

_LABELS: dict[str, str] = {}


def _node(node_id: str) -> str:
    """The ``node`` label: the hostname, stable across restarts (cached)."""
    label = _LABELS.get(node_id)
    if label is None:
        if len(_LABELS) > 1000:  # bounded: a process sees a handful of ids
            _LABELS.clear()
        label = _LABELS[node_id] = hostname_of(node_id)
    return label


class PrometheusHooks(Hooks):
    """Updates elk's Prometheus metric families on every hook call."""

    # -- leader ---------------------------------------------------------------
    def on_leader_tick(self, namespace: str, node: str, *, role: str, epoch: int,
                       duration: float) -> None:
        node = _node(node)
        _m.LEADER_TICKS(namespace, role).inc()
        _m.LEADER_TICK_DURATION(namespace).observe(duration)
        _m.LEADER_IS_LEADER(namespace, node).set(1 if role in _LEADER_ROLES else 0)
        _m.LEADER_EPOCH(namespace).set(epoch)
        if role == "elected":
            _m.LEADER_ELECTIONS(namespace, node).inc()

    def on_planned(self, namespace: str, *, created: int, planned_max_id: int | None,
                   duration: float, error: str | None = None) -> None:
        _m.LEADER_PLANNING_DURATION(namespace).observe(duration)
        if created:
            _m.LEADER_PLANNED(namespace).inc(created)
        if error is not None:
            _m.LEADER_PLANNING_ERRORS(namespace).inc()
        if planned_max_id is not None:
            _m.LEADER_PLANNED_MAX_ID(namespace).set(planned_max_id)

    def on_dispatched(self, namespace: str, *, sent: int, duration: float) -> None:
        _m.LEADER_DISPATCH_DURATION(namespace).observe(duration)
        if sent:
            _m.LEADER_DISPATCHED(namespace).inc(sent)

    def on_recovered(self, namespace: str, *, recovered: int, failed: int) -> None:
        if recovered:
            _m.LEADER_RECOVERED(namespace, "pending").inc(recovered)
        if failed:
            _m.LEADER_RECOVERED(namespace, "failed").inc(failed)

    def on_split(self, namespace: str, *, splits: int) -> None:
        _m.LEADER_SPLITS(namespace).inc(splits)

    def on_tail(self, namespace: str, *, seconds: float) -> None:
        _m.LEADER_TAIL(namespace).set(seconds)

    def on_stale_leader(self, namespace: str, node: str, epoch: int) -> None:
        node = _node(node)
        _m.LEADER_STALE_WRITES(namespace, node).inc()
        _m.LEADER_IS_LEADER(namespace, node).set(0)

    # -- nodes -------------------------------------------------------------------
    def on_heartbeat(self, namespace: str, node: str, *, ok: bool, duration: float,
                     held: int = 0, window: int = 0) -> None:
        node = _node(node)
        _m.NODE_HEARTBEAT_DURATION(namespace, node).observe(duration)
        if not ok:
            _m.NODE_HEARTBEAT_ERRORS(namespace, node).inc()
            return
        _m.NODE_HEARTBEATS(namespace, node).inc()
        _m.NODE_LAST_HEARTBEAT(namespace, node).set_to_current_time()
        _m.NODE_INFLIGHT(namespace, node).set(held)
        if window:
            _m.NODE_TASK_WINDOW(namespace, node).set(window)

    def on_leases_renewed(self, namespace: str, node: str, *, renewed: int, lost: int) -> None:
        node = _node(node)
        if renewed:
            _m.NODE_LEASE_RENEWALS(namespace, node).inc(renewed)
        if lost:
            _m.NODE_LEASES_LOST(namespace, node).inc(lost)

    # -- partitions --------------------------------------------------------------
    # (the claim's duration is the Redis 'claim' call's, observed by on_redis_call)
    def on_claim(self, namespace: str, node: str, task: str, code: str, *,
                 duration: float, queued: float | None = None) -> None:
        node = _node(node)
        _m.PARTITION_CLAIMS(namespace, node, task, code).inc()
        if code in _HOLDING:
            _m.PARTITIONS_IN_PROGRESS(namespace, node).inc()
            if queued is not None:
                _m.PARTITION_QUEUE_WAIT(namespace, task).observe(max(0.0, queued))
            if code == "preempted":
                _m.PARTITIONS_PREEMPTED(namespace, node).inc()

    def on_partition_done(self, namespace: str, node: str, task: str, *, outcome: str,
                          items: int, duration: float, min_id: int, max_id: int) -> None:
        node = _node(node)
        _m.PARTITIONS_IN_PROGRESS(namespace, node).dec()
        _m.PARTITION_DURATION(namespace, task, outcome).observe(duration)
        if outcome == "stale":
            _m.PARTITION_STALE_WRITES(namespace, node).inc()
        else:
            counter = _OUTCOME_COUNTERS.get(outcome)
            if counter is not None:
                counter(namespace, node, task).inc()
        if outcome == "completed" and items:
            _m.ITEMS_PROCESSED(namespace, node, task).inc(items)

    # -- breaker, gaps, Redis ----------------------------------------------------
    def on_breaker_refused(self, namespace: str, node: str) -> None:
        node = _node(node)
        _m.BREAKER_REFUSED(namespace, node).inc()

    def on_gaps(self, namespace: str, *, found: int, filled: int, mode: str) -> None:
        _m.GAP_SCANS(namespace, mode).inc()
        if found:
            _m.GAPS_FOUND(namespace, mode).inc(found)
        if filled:
            _m.GAPS_FILLED(namespace, mode).inc(filled)

    def on_redis_call(self, operation: str, duration: float, error: BaseException | None) -> None:
        _m.REDIS_CALL_DURATION(operation).observe(duration)
        if error is not None:
            _m.REDIS_ERRORS(operation, type(error).__name__).inc()
