"""The metric families every elk_celery process updates (through PrometheusHooks).

Naming follows the Prometheus rules: one prefix ``elk_``, base units
(``_seconds``), ``_total`` on counters, ``_info`` on info metrics. Labels are
bounded: ``namespace``, ``node``, ``task`` (a Celery task name), ``role``,
``code``, ``outcome``, ``reason``, ``mode``, ``operation`` — never a partition
id or an ID range, so the number of series does not grow with the job.
``node`` is the worker's Celery hostname (``w1@host``), stable across
restarts; the per-start node id is a label of ``elk_node_info`` only.

Every family is created at import time, in the default registry. Under
Celery's prefork pool the values live in ``PROMETHEUS_MULTIPROC_DIR`` (see
:mod:`elk_celery.metrics.server` for why that variable must be set before
``celery`` starts), so each gauge states how the processes' values combine:

* ``livemostrecent`` — "the current state as last seen" (leader flag, epoch,
  a node's in-flight count), dropped when the process that set it exits;
* ``livesum`` — additive per-process state (partitions running right now);
* ``max`` — timestamps.

Values that only Redis knows for the whole cluster (partitions per status,
who leads, the breaker) are not here: :mod:`elk_celery.metrics.cluster`
reads them at scrape time. ``elk_build_info`` is a collector of its own too,
because prometheus_client's ``Info`` does not work in multiprocess mode.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics_core import InfoMetricFamily, Metric

from ..worker.node import hostname_of, is_registered, node_id, token_of

#: PromQL name of every family -> its type ('counter', 'gauge', 'histogram',
#: 'info'). Counters are listed with their ``_total`` sample name, histograms
#: with their base name (samples ``_bucket``, ``_sum``, ``_count``), info
#: families with their ``_info`` sample name.
FAMILY_TYPES: dict[str, str] = {}

# Buckets (seconds) sized for what each histogram measures.
FAST_BUCKETS = (.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5)
TICK_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0, 30.0)
LONG_BUCKETS = (.01, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                1200.0, 1800.0, 3600.0, 7200.0)


def _counter(name: str, doc: str, labels: Sequence[str]) -> Counter:
    assert name.endswith("_total"), name
    FAMILY_TYPES[name] = "counter"
    return Counter(name, doc, labels)


def _gauge(name: str, doc: str, labels: Sequence[str], mode: str) -> Gauge:
    FAMILY_TYPES[name] = "gauge"
    return Gauge(name, doc, labels, multiprocess_mode=mode)  # type: ignore[arg-type]


def _histogram(name: str, doc: str, labels: Sequence[str], buckets: Iterable[float]) -> Histogram:
    assert name.endswith("_seconds"), name
    FAMILY_TYPES[name] = "histogram"
    return Histogram(name, doc, labels, buckets=tuple(buckets))


NS, NODE, TASK = "namespace", "node", "task"

# -- leader (runs in whichever worker process executes the leader tick) ------
LEADER_IS_LEADER = _gauge(
    "elk_leader_is_leader", "1 if this node held the leader lease at its last leader tick, else 0.",
    [NS, NODE], "livemostrecent")
LEADER_EPOCH = _gauge(
    "elk_leader_epoch", "Leader epoch (fencing token) seen at this node's last leader tick.",
    [NS], "livemostrecent")
LEADER_ELECTIONS = _counter(
    "elk_leader_elections_total", "Leader ticks in which this node won the leader lease.", [NS, NODE])
LEADER_TICKS = _counter(
    "elk_leader_ticks_total", "Leader ticks by role (elected, renewed, held, follower, deposed).", [NS, "role"])
LEADER_TICK_DURATION = _histogram(
    "elk_leader_tick_duration_seconds", "Duration of one leader tick.", [NS], TICK_BUCKETS)
LEADER_PLANNED = _counter(
    "elk_leader_planned_partitions_total", "Partitions created by the leader's planner.", [NS])
LEADER_PLANNING_DURATION = _histogram(
    "elk_leader_planning_duration_seconds", "Duration of one planning step.", [NS], TICK_BUCKETS)
LEADER_PLANNING_ERRORS = _counter(
    "elk_leader_planning_errors_total", "Planning steps that failed (planner raised or returned garbage).",
    [NS])
LEADER_PLANNED_MAX_ID = _gauge(
    "elk_leader_planned_max_id", "Highest ID planned so far, as seen at the last planning step.",
    [NS], "livemostrecent")
LEADER_SPLITS = _counter(
    "elk_leader_splits_total",
    "Tails split off running partitions onto idle slots by the leader (dynamic rebalancing).", [NS])
LEADER_TAIL = _gauge(
    "elk_leader_tail_seconds",
    "The job's last tail: from the first leader round that found nothing left to claim while "
    "partitions ran, to the round that found none running (compare with the median partition "
    "time, histogram_quantile(0.5, elk_partition_processing_duration_seconds_bucket)).",
    [NS], "livemostrecent")
LEADER_DISPATCHED = _counter(
    "elk_leader_dispatched_total", "Partition task messages sent by the leader.", [NS])
LEADER_DISPATCH_DURATION = _histogram(
    "elk_leader_dispatch_duration_seconds", "Duration of one dispatch step.", [NS], TICK_BUCKETS)
LEADER_RECOVERED = _counter(
    "elk_leader_recovered_total",
    "Partitions of dead owners taken back by the leader, by outcome (pending, failed).",
    [NS, "outcome"])
LEADER_STALE_WRITES = _counter(
    "elk_leader_stale_writes_total", "Leader writes refused because another leader took over.",
    [NS, NODE])

# -- nodes (worker main process) ---------------------------------------------
NODE_HEARTBEATS = _counter(
    "elk_node_heartbeats_total", "Heartbeats sent by this node.", [NS, NODE])
NODE_HEARTBEAT_ERRORS = _counter(
    "elk_node_heartbeat_errors_total", "Heartbeats that failed (Redis unreachable, ...).", [NS, NODE])
NODE_HEARTBEAT_DURATION = _histogram(
    "elk_node_heartbeat_duration_seconds", "Duration of one heartbeat.", [NS, NODE], FAST_BUCKETS)
NODE_LAST_HEARTBEAT = _gauge(
    "elk_node_last_heartbeat_timestamp_seconds", "Unix time of this node's last successful heartbeat.",
    [NS, NODE], "max")
NODE_INFLIGHT = _gauge(
    "elk_node_inflight_partitions", "Partitions this node holds (claimed or running), per Redis.",
    [NS, NODE], "livemostrecent")
NODE_TASK_WINDOW = _gauge(
    "elk_node_task_window", "Task window: max partitions this node processes in parallel.",
    [NS, NODE], "livemostrecent")
NODE_LEASE_RENEWALS = _counter(
    "elk_node_lease_renewals_total", "Partition leases renewed by this node.", [NS, NODE])
NODE_LEASES_LOST = _counter(
    "elk_node_leases_lost_total", "Partition leases this node found lost when renewing.", [NS, NODE])

# -- partitions (pool process running the partition task) -------------------
PARTITION_CLAIMS = _counter(
    "elk_partition_claims_total",
    "Claim attempts by result code (ok, preempted, held, completed, failed, missing, window, "
    "breaker, dead).", [NS, NODE, TASK, "code"])
PARTITION_QUEUE_WAIT = _histogram(
    "elk_partition_queue_wait_seconds", "Time from dispatch by the leader to the claim by a worker.",
    [NS, TASK], LONG_BUCKETS)
PARTITIONS_IN_PROGRESS = _gauge(
    "elk_partitions_in_progress", "Partitions this node's processes are processing right now.",
    [NS, NODE], "livesum")
PARTITIONS_COMPLETED = _counter(
    "elk_partitions_completed_total", "Partitions processed and marked completed.", [NS, NODE, TASK])
PARTITIONS_RETRIED = _counter(
    "elk_partitions_retried_total", "Partition failures that will be retried after a backoff.",
    [NS, NODE, TASK])
PARTITIONS_FAILED = _counter(
    "elk_partitions_failed_total", "Partitions that failed with no retries left (stay failed).",
    [NS, NODE, TASK])
PARTITIONS_PREEMPTED = _counter(
    "elk_partitions_preempted_total", "Partitions this node took over from a dead or expired owner.",
    [NS, NODE])
PARTITIONS_LOST = _counter(
    "elk_partitions_lost_total", "Partitions abandoned because their lease was lost (self-fenced).",
    [NS, NODE, TASK])
PARTITION_STALE_WRITES = _counter(
    "elk_partition_stale_writes_total",
    "Completion or failure writes refused because the fence token was stale.", [NS, NODE])
ITEMS_PROCESSED = _counter(
    "elk_items_processed_total", "Items processed by completed partitions.", [NS, NODE, TASK])
PARTITION_DURATION = _histogram(
    "elk_partition_processing_duration_seconds", "Time spent processing one partition, by outcome.",
    [NS, TASK, "outcome"], LONG_BUCKETS)

# -- circuit breaker ------------------------------------------------------------
BREAKER_REFUSED = _counter(
    "elk_breaker_refused_claims_total", "Claims refused because the namespace's breaker was open.",
    [NS, NODE])

# -- gaps -------------------------------------------------------------------------
GAP_SCANS = _counter("elk_gap_scans_total", "Gap detection runs, by mode (incremental, full).",
                     [NS, "mode"])
GAPS_FOUND = _counter("elk_gaps_found_total", "ID ranges found missing from the plan.", [NS, "mode"])
GAPS_FILLED = _counter("elk_gaps_filled_total", "Missing ID ranges planned as new partitions.",
                       [NS, "mode"])

# -- Redis ---------------------------------------------------------------------------
REDIS_CALL_DURATION = _histogram(
    "elk_redis_call_duration_seconds",
    "Duration of elk's Redis script calls, by operation (claim, complete, heartbeat, ...).",
    ["operation"], FAST_BUCKETS)
REDIS_ERRORS = _counter(
    "elk_redis_errors_total", "Redis calls that raised, by operation and exception class.",
    ["operation", "reason"])


# -- build and node info (collectors: prometheus_client's Info is single-process only) --
FAMILY_TYPES["elk_build_info"] = "info"
FAMILY_TYPES["elk_node_info"] = "info"


class BuildInfoCollector:
    """Yields ``elk_build_info`` (versions of elk_celery and what it runs on)."""

    def __init__(self) -> None:
        self._labels = _build_labels()

    def describe(self) -> list[Metric]:
        return [InfoMetricFamily("elk_build", "elk_celery build information.")]

    def collect(self) -> Iterator[Metric]:
        family = InfoMetricFamily("elk_build", "elk_celery build information.")
        family.add_metric([], self._labels)
        yield family


class NodeInfoCollector:
    """Yields ``elk_node_info{node, node_id, token}``: which start of the
    worker (``node`` = its hostname, the label every other family uses) is
    serving, so a restart shows as a new ``node_id`` under the same ``node``.
    Nothing before the worker bootstep set the node id."""

    def describe(self) -> list[Metric]:
        return [InfoMetricFamily("elk_node", "This worker's node: hostname and per-start id.")]

    def collect(self) -> Iterator[Metric]:
        family = InfoMetricFamily("elk_node", "This worker's node: hostname and per-start id.")
        if is_registered():
            nid = node_id()
            family.add_metric([], {"node": hostname_of(nid), "node_id": nid,
                                   "token": token_of(nid)})
        yield family


def _build_labels() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from .._version import __version__

    def ver(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "unknown"

    return {"version": __version__, "python": platform.python_version(),
            "celery": ver("celery"), "redis_py": ver("redis"),
            "prometheus_client": ver("prometheus-client")}

