"""ClusterCollector: the whole job's state, read from Redis at scrape time.

Process-local counters say what *this* worker did; the cluster gauges say
where the *job* stands — partitions per status, who leads, the breaker, the
live nodes — so a single scrape of any worker shows everything. They are
read on each scrape with one pipelined round trip per namespace (no key
scans), and are built with prometheus_client's ``*MetricFamily`` classes, so
nothing is written to ``PROMETHEUS_MULTIPROC_DIR``.

Register this collector only in the process that serves ``/metrics``
(:func:`elk_celery.metrics.start_metrics_server` does), never in pool
children. Every worker exports the same cluster series: aggregate them with
``max by (namespace, ...)`` in queries, as the shipped dashboard and alert
rules do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.metrics_core import (CounterMetricFamily, GaugeMetricFamily,
                                            InfoMetricFamily, Metric)

from ..eta import eta_of
from ..models import PartitionStats, Status
from ..store.codec import text
from ..store.namespace import NamespaceStore, parse_samples
from ..worker.node import hostname_of

log = logging.getLogger("elk_celery.metrics")

#: Breaker states as numbers (``elk_cluster_breaker_state``).
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}

#: Stats hash fields that are not event counters (status counts and the total).
_NOT_EVENTS = frozenset([s.value for s in Status] + ["total", "items", "corrupt"])
#: Per-host completion counters in the stats hash (complete.lua), by prefix.
NODE_COUNTERS = {"node_partitions:": "elk_cluster_node_partitions_completed_total",
                 "node_items:": "elk_cluster_node_items_processed_total"}

#: PromQL name -> type of every family this collector yields.
CLUSTER_FAMILY_TYPES: dict[str, str] = {
    "elk_cluster_up": "gauge",
    "elk_cluster_scrape_duration_seconds": "gauge",
    "elk_cluster_partitions": "gauge",
    "elk_cluster_quarantined_partitions": "gauge",
    "elk_cluster_items_processed_total": "counter",
    "elk_cluster_events_total": "counter",
    "elk_cluster_leader_present": "gauge",
    "elk_cluster_leader_epoch": "gauge",
    "elk_cluster_leader_lease_remaining_seconds": "gauge",
    "elk_cluster_leader_info": "info",
    "elk_cluster_live_nodes": "gauge",
    "elk_cluster_registered_nodes": "gauge",
    "elk_cluster_node_inflight_partitions": "gauge",
    "elk_cluster_node_partitions_completed_total": "counter",
    "elk_cluster_node_items_processed_total": "counter",
    "elk_cluster_breaker_state": "gauge",
    "elk_cluster_breaker_trips_total": "counter",
    "elk_cluster_breaker_consecutive_failures": "gauge",
    "elk_cluster_breaker_refused_claims_total": "counter",
    "elk_cluster_oldest_pending_age_seconds": "gauge",
    "elk_cluster_lease_overdue_seconds": "gauge",
    "elk_cluster_planning_cursor": "gauge",
    "elk_cluster_job_state": "gauge",
    "elk_cluster_partitions_remaining": "gauge",
    "elk_cluster_eta_seconds": "gauge",
    "elk_cluster_eta_info": "info",
    "elk_cluster_partition_progress_ratio": "gauge",
    "elk_cluster_partition_items_so_far": "gauge",
}

#: Job control states as numbers (``elk_cluster_job_state``).
JOB_STATES = {"running": 0, "paused": 1, "cancelled": 2}
#: Running partitions whose progress is exported (the first by lease expiry).
PROGRESS_LIMIT = 50

_HELP = {
    "elk_cluster_up": "1 if the namespace's state could be read from Redis on this scrape.",
    "elk_cluster_scrape_duration_seconds": "Time taken to read the namespace's state from Redis.",
    "elk_cluster_partitions": "Partitions of the namespace by status (with the quarantined ones, "
                              "the total).",
    "elk_cluster_quarantined_partitions":
        "Partitions whose stored value is not an elk partition, left out of the job.",
    "elk_cluster_items_processed_total": "Items processed by completed partitions, whole cluster.",
    "elk_cluster_events_total": "Partition and leader events counted by the Redis scripts, by event.",
    "elk_cluster_leader_present": "1 if a node holds the namespace's leader lease.",
    "elk_cluster_leader_epoch": "Latest leader epoch (fencing token) of the namespace.",
    "elk_cluster_leader_lease_remaining_seconds": "Time left on the leader lease (0 without a leader).",
    "elk_cluster_leader": "The node holding the namespace's leader lease.",
    "elk_cluster_live_nodes": "Nodes whose heartbeat has not expired.",
    "elk_cluster_registered_nodes": "Nodes in the registry, live or dead.",
    "elk_cluster_node_inflight_partitions":
        "Partitions each node (worker hostname) holds, claimed or running.",
    "elk_cluster_node_partitions_completed_total":
        "Partitions each node (worker hostname) completed, whole job, across restarts.",
    "elk_cluster_node_items_processed_total":
        "Items each node (worker hostname) processed, whole job, across restarts.",
    "elk_cluster_breaker_state": "Shared circuit breaker: 0 closed, 1 half-open, 2 open.",
    "elk_cluster_breaker_trips_total": "Times the shared circuit breaker opened.",
    "elk_cluster_breaker_consecutive_failures": "Partition failures in a row (breaker counter).",
    "elk_cluster_breaker_refused_claims_total": "Claims refused while the breaker was open.",
    "elk_cluster_oldest_pending_age_seconds":
        "How long the oldest due pending partition has waited (0 when none is due).",
    "elk_cluster_lease_overdue_seconds":
        "How long ago the most overdue partition lease expired without recovery (0 when none).",
    "elk_cluster_planning_cursor": "The leader's planning cursor (next ID to plan from).",
    "elk_cluster_job_state": "Job control: 0 running, 1 paused, 2 cancelled (elk pause/cancel).",
    "elk_cluster_partitions_remaining":
        "Partitions left: planned and not finished, plus the IDs the planner still reports "
        "in partitions of the planned size.",
    "elk_cluster_eta_seconds": "Estimated time to finish, by bound: estimate, low, high "
                               "(only while the ETA's state is ok).",
    "elk_cluster_eta": "The ETA's state: ok, estimating, stalled, done, paused, cancelled, "
                       "nothing_planned.",
    "elk_cluster_partition_progress_ratio":
        "Share of a running partition's IDs up to its checkpoint (blocks(), checkpoint()).",
    "elk_cluster_partition_items_so_far":
        "Items a running partition reported so far (progress(), blocks()).",
}


#: name -> its *MetricFamily (Counter/Gauge/Info: add_metric differs, hence Any)
Families = dict[str, Any]


def _families() -> Families:
    out: Families = {}
    for name, kind in CLUSTER_FAMILY_TYPES.items():
        base = name[:-5] if kind == "info" else name
        doc = _HELP[base]
        if kind == "counter":
            out[name] = CounterMetricFamily(name, doc, labels=_labels(name))
        elif kind == "info":
            out[name] = InfoMetricFamily(base, doc, labels=_labels(name))
        else:
            out[name] = GaugeMetricFamily(name, doc, labels=_labels(name))
    return out


def _labels(name: str) -> list[str]:
    extra = {"elk_cluster_partitions": ["status"], "elk_cluster_events_total": ["event"],
             "elk_cluster_node_inflight_partitions": ["node"],
             "elk_cluster_node_partitions_completed_total": ["node"],
             "elk_cluster_node_items_processed_total": ["node"],
             "elk_cluster_eta_seconds": ["bound"],
             "elk_cluster_partition_progress_ratio": ["partition"],
             "elk_cluster_partition_items_so_far": ["partition"]}
    return ["namespace", *extra.get(name, [])]


StoresArg = Iterable[NamespaceStore] | Callable[[], Iterable[NamespaceStore]]


class ClusterCollector:
    """Yields the cluster-wide ``elk_cluster_*`` families for every namespace.

    ``stores`` is a list of :class:`NamespaceStore`, or a callable returning
    one (so jobs registered after the server started are included).
    """

    def __init__(self, stores: StoresArg) -> None:
        self._stores = stores
        self._last_error_log: dict[str, float] = {}

    def stores(self) -> list[NamespaceStore]:
        stores = self._stores() if callable(self._stores) else self._stores
        return list(stores)

    def describe(self) -> list[Metric]:
        # Names only, so registries can check for clashes without touching Redis.
        return list(_families().values())

    def collect(self) -> Iterator[Metric]:
        fam = _families()
        for store in self.stores():
            self._collect_one(store, fam)
        yield from fam.values()

    def _collect_one(self, store: NamespaceStore, fam: Families) -> None:
        ns = store.namespace
        t0 = time.perf_counter()
        try:
            state = store.overview(leases=PROGRESS_LIMIT)
        except Exception as exc:  # noqa: BLE001 - a scrape must never fail because of Redis
            fam["elk_cluster_up"].add_metric([ns], 0)
            now = time.monotonic()
            if now - self._last_error_log.get(ns, -1e9) > 60:
                self._last_error_log[ns] = now
                log.warning("elk metrics: cannot read namespace %s from Redis: %r", ns, exc)
            return
        fam["elk_cluster_up"].add_metric([ns], 1)
        _add_state(ns, state, fam)
        try:
            _add_control(store, state, fam)
        except Exception as exc:  # noqa: BLE001 - the rest of the scrape stands
            log.debug("elk metrics: no control/ETA/progress for %s: %r", ns, exc)
        fam["elk_cluster_scrape_duration_seconds"].add_metric([ns], time.perf_counter() - t0)


def _add_state(ns: str, st: dict[str, Any], fam: Families) -> None:
    now = st["now"]
    stats = PartitionStats.from_hash(st["stats"])
    for status in Status:
        fam["elk_cluster_partitions"].add_metric([ns, status.value], getattr(stats, f"{status.value}_count"))
    fam["elk_cluster_quarantined_partitions"].add_metric([ns], stats.quarantined_count)
    fam["elk_cluster_items_processed_total"].add_metric([ns], stats.items_processed)
    for event, value in sorted(stats.counters.items()):
        prefix = next((p for p in NODE_COUNTERS if event.startswith(p)), None)
        if prefix is not None:
            fam[NODE_COUNTERS[prefix]].add_metric([ns, event[len(prefix):]], value)
        elif event not in _NOT_EVENTS:
            fam["elk_cluster_events_total"].add_metric([ns, event], value)

    meta, leader = st["meta"], st["leader"]
    holder = text(leader).rpartition("|")[0] if leader else ""
    fam["elk_cluster_leader_present"].add_metric([ns], 1 if leader else 0)
    fam["elk_cluster_leader_epoch"].add_metric([ns], _num(meta.get("epoch")))
    pttl = st["pttl"]
    fam["elk_cluster_leader_lease_remaining_seconds"].add_metric(
        [ns], pttl / 1000 if leader and pttl > 0 else 0)
    if leader:
        fam["elk_cluster_leader_info"].add_metric([ns], {"node": hostname_of(holder),
                                                         "node_id": holder})

    nodes = st["nodes"]
    fam["elk_cluster_live_nodes"].add_metric([ns], sum(1 for _, exp in nodes if exp > now))
    fam["elk_cluster_registered_nodes"].add_metric([ns], len(nodes))
    per_host: dict[str, int] = {}
    for node, held in ((text(a), int(b)) for a, b in st["inflight"].items()):
        host = hostname_of(node)  # an old start of the same worker adds to it
        per_host[host] = per_host.get(host, 0) + held
    for host, held in sorted(per_host.items()):
        fam["elk_cluster_node_inflight_partitions"].add_metric([ns, host], held)

    b = st["breaker"]
    fam["elk_cluster_breaker_state"].add_metric([ns], BREAKER_STATES.get(b.get("state", "closed"), 0))
    fam["elk_cluster_breaker_trips_total"].add_metric([ns], _num(b.get("trips")))
    fam["elk_cluster_breaker_consecutive_failures"].add_metric([ns], _num(b.get("consecutive")))
    fam["elk_cluster_breaker_refused_claims_total"].add_metric(
        [ns], stats.counters.get("deferred_breaker", 0))

    pending, leases = st["pending"], st["leases"]
    fam["elk_cluster_oldest_pending_age_seconds"].add_metric(
        [ns], max(0.0, (now - pending[0][1]) / 1000) if pending else 0.0)
    fam["elk_cluster_lease_overdue_seconds"].add_metric(
        [ns], max(0.0, (now - leases[0][1]) / 1000) if leases else 0.0)
    cursor = _cursor(meta.get("cursor"))
    if cursor is not None:
        fam["elk_cluster_planning_cursor"].add_metric([ns], cursor)


def _add_control(store: NamespaceStore, st: dict[str, Any], fam: Families) -> None:
    """The job's control state, its ETA and its running partitions' progress."""
    ns = store.namespace
    state = st["meta"].get("control") or "running"
    fam["elk_cluster_job_state"].add_metric([ns], JOB_STATES.get(state, 0))
    stats = PartitionStats.from_hash(st["stats"])
    eta = eta_of(store, stats.total_count, stats.completed_count + stats.failed_count,
                 st["now"], meta=st["meta"], state=state, samples=st["samples"])
    fam["elk_cluster_partitions_remaining"].add_metric([ns], eta.remaining)
    fam["elk_cluster_eta_info"].add_metric([ns], {"state": eta.state})
    if eta.state in ("ok", "done"):
        for bound, value in (("estimate", eta.seconds), ("low", eta.low_s), ("high", eta.high_s)):
            if value is not None:
                fam["elk_cluster_eta_seconds"].add_metric([ns, bound], value)
    if st["lease_ids"]:  # one more read, only while partitions run
        for p in store.strategy.get_partitions(st["lease_ids"]):
            if p.status not in (Status.CLAIMED, Status.RUNNING):
                continue
            fam["elk_cluster_partition_progress_ratio"].add_metric(
                [ns, str(p.partition_id)], p.done_fraction)
            if p.progress_items is not None:
                fam["elk_cluster_partition_items_so_far"].add_metric(
                    [ns, str(p.partition_id)], p.progress_items)


def _num(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def _cursor(raw: str | None) -> float | None:
    """The planning cursor (the next ID to plan) as a number, if it is one."""
    try:
        return float(int(raw))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
