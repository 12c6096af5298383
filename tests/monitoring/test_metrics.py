"""Metric families, PrometheusHooks, the cluster collector and the /metrics
server, in this process (single-process mode) against the real Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request

import pytest
import redis
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from elk_celery import ConfigError, ElkSettings, HashPartitionStrategy
from elk_celery.breaker import CircuitBreaker
from elk_celery.metrics import (METRIC_NAMES, METRIC_TYPES, ClusterCollector, PrometheusHooks,
                                start_metrics_server)
from elk_celery.metrics import families
from elk_celery.store.namespace import NamespaceStore
from tests.monitoring.conftest import ROOT, run_promtool

ALLOWED_LABELS = {"namespace", "node", "status", "reason", "outcome", "code", "task", "role",
                  "operation", "mode", "event"}
TASK = "tests.orders"
#: one failure opens the breaker; a failure is final
SETTINGS = ElkSettings(circuit_breaker_consecutive_failures=1, max_retries=0)


def family_objects() -> list[MetricWrapperBase]:
    return [v for v in vars(families).values() if isinstance(v, MetricWrapperBase)]


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(server) -> str:
    return urllib.request.urlopen(server.url, timeout=10).read().decode()


def parse(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


@pytest.fixture
def store(redis_client, namespace):
    return NamespaceStore(HashPartitionStrategy(redis_client, namespace, SETTINGS))


@pytest.fixture
def server_for():
    servers = []

    def start(stores, **settings):
        s = start_metrics_server(ElkSettings(metrics_port=0, **settings), stores)
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.stop()


def exercise_every_hook(ns: str, node: str = "n1") -> PrometheusHooks:
    h = PrometheusHooks()
    h.on_leader_tick(ns, node, role="elected", epoch=3, duration=0.004)
    h.on_planned(ns, created=4, planned_max_id=400, duration=0.01)
    h.on_planned(ns, created=0, planned_max_id=None, duration=0.01, error="planner raised")
    h.on_dispatched(ns, sent=4, duration=0.002)
    h.on_recovered(ns, recovered=2, failed=1)
    h.on_split(ns, splits=3)
    h.on_tail(ns, seconds=1.5)
    h.on_stale_leader(ns, node, 2)
    h.on_heartbeat(ns, node, ok=True, duration=0.001, held=2, window=3)
    h.on_heartbeat(ns, node, ok=False, duration=0.5)
    h.on_leases_renewed(ns, node, renewed=2, lost=1)
    for code in ("ok", "preempted", "ok", "ok", "ok", "ok", "held", "window"):
        h.on_claim(ns, node, TASK, code, duration=0.0005, queued=1.5)
    for outcome in ("completed", "retry", "failed", "stale", "lost"):
        h.on_partition_done(ns, node, TASK, outcome=outcome, items=100, duration=2.0,
                            min_id=1, max_id=100)
    h.on_breaker_refused(ns, node)
    h.on_gaps(ns, found=2, filled=2, mode="full")
    h.on_redis_call("claim", 0.0003, None)
    h.on_redis_call("claim", 0.2, redis.ConnectionError("down"))
    return h


# -- families ------------------------------------------------------------------
def test_at_least_thirty_families_with_prometheus_names():
    objs = family_objects()
    assert len(objs) >= 30
    assert len(METRIC_NAMES) >= 50  # with the cluster families and build info
    for m in objs:
        name = m._name + ("_total" if m._type == "counter" else "")
        assert name in METRIC_TYPES, name
        assert name.startswith("elk_")
        assert set(m._labelnames) <= ALLOWED_LABELS, (name, m._labelnames)
        assert "partition_id" not in m._labelnames and "min_id" not in m._labelnames
        if m._type == "histogram":
            assert name.endswith("_seconds"), name
        if m._type == "gauge":
            assert not name.endswith(("_total", "_count", "_sum", "_bucket")), name
            assert m._multiprocess_mode != "all", f"{name}: choose a multiprocess mode"
    for name, kind in METRIC_TYPES.items():
        assert name.startswith("elk_") and name == name.lower()
        assert name.endswith("_total") == (kind == "counter"), name
        assert name.endswith("_info") == (kind == "info"), name
    assert "elk_build_info" in METRIC_NAMES


def test_hooks_update_the_families(namespace):
    exercise_every_hook(namespace)
    ns, node, task = {"namespace": namespace}, {"namespace": namespace, "node": "n1"}, \
        {"namespace": namespace, "task": TASK}
    nt = {**node, "task": TASK}
    assert value("elk_leader_is_leader", **node) == 0  # the stale-leader write came after
    assert value("elk_leader_epoch", **ns) == 3
    assert value("elk_leader_elections_total", **node) == 1
    assert value("elk_leader_ticks_total", **ns, role="elected") == 1
    assert value("elk_leader_planned_partitions_total", **ns) == 4
    assert value("elk_leader_planning_errors_total", **ns) == 1
    assert value("elk_leader_planned_max_id", **ns) == 400
    assert value("elk_leader_planning_duration_seconds_count", **ns) == 2
    assert value("elk_leader_dispatched_total", **ns) == 4
    assert value("elk_leader_recovered_total", **ns, outcome="pending") == 2
    assert value("elk_leader_recovered_total", **ns, outcome="failed") == 1
    assert value("elk_leader_stale_writes_total", **node) == 1
    assert value("elk_leader_splits_total", **ns) == 3
    assert value("elk_leader_tail_seconds", **ns) == 1.5
    assert value("elk_node_heartbeats_total", **node) == 1
    assert value("elk_node_heartbeat_errors_total", **node) == 1
    assert value("elk_node_heartbeat_duration_seconds_count", **node) == 2
    assert value("elk_node_inflight_partitions", **node) == 2
    assert value("elk_node_task_window", **node) == 3
    assert value("elk_node_last_heartbeat_timestamp_seconds", **node) > 1.6e9
    assert value("elk_node_lease_renewals_total", **node) == 2
    assert value("elk_node_leases_lost_total", **node) == 1
    assert value("elk_partition_claims_total", **nt, code="ok") == 5
    assert value("elk_partition_claims_total", **nt, code="window") == 1
    assert value("elk_partition_queue_wait_seconds_count", **task) == 6  # claims that hold
    assert value("elk_partitions_preempted_total", **node) == 1
    assert value("elk_partitions_in_progress", **node) == 1  # 6 held, 5 done
    for counter in ("completed", "retried", "failed", "lost"):
        assert value(f"elk_partitions_{counter}_total", **nt) == 1, counter
    assert value("elk_partition_stale_writes_total", **node) == 1
    assert value("elk_items_processed_total", **nt) == 100  # completed partitions only
    assert value("elk_partition_processing_duration_seconds_count", **task, outcome="completed") == 1
    assert value("elk_breaker_refused_claims_total", **node) == 1
    assert value("elk_gap_scans_total", **ns, mode="full") == 1
    assert value("elk_gaps_found_total", **ns, mode="full") == 2
    assert value("elk_gaps_filled_total", **ns, mode="full") == 2
    assert value("elk_redis_errors_total", operation="claim", reason="ConnectionError") >= 1


# -- the cluster collector -------------------------------------------------------
def make_state(store: NamespaceStore) -> None:
    """Real Redis state: 6 partitions in every status, a leader, two nodes
    (one expired), an open breaker, a planning cursor."""
    s = store.strategy
    s.create_partitions_if_not_exist(
        [{"partition_id": i, "min_id": i * 100 + 1, "max_id": i * 100 + 100} for i in range(6)])
    store.heartbeat("n1")
    store.redis.zadd(store.keys.nodes, {"gone": 1})  # a node whose heartbeat expired long ago
    store.leader_acquire("n1")
    c0 = s.claim(0, "n1")
    s.complete_partition(0, "n1", c0.fence, 100)
    assert s.claim(2, "n1").ok  # running, held by n1
    c1 = s.claim(1, "n1")
    assert s.fail_partition(1, "n1", c1.fence, "boom")[0] == "failed"  # opens the breaker (1 failure)
    store.set_meta(cursor=601)


def test_cluster_collector_reads_the_whole_job_from_redis(store, server_for):
    make_state(store)
    ns = store.namespace
    s = parse(scrape(server_for([store])))
    L = (("namespace", ns),)

    def g(name: str, *extra: tuple[str, str]) -> float:
        return s[(name, tuple(sorted(L + extra)))]
    assert g("elk_cluster_up") == 1
    assert g("elk_cluster_partitions", ("status", "pending")) == 3
    assert g("elk_cluster_partitions", ("status", "running")) == 1
    assert g("elk_cluster_partitions", ("status", "completed")) == 1
    assert g("elk_cluster_partitions", ("status", "failed")) == 1
    assert g("elk_cluster_partitions", ("status", "claimed")) == 0
    assert g("elk_cluster_items_processed_total") == 100
    assert g("elk_cluster_quarantined_partitions") == 0
    assert g("elk_cluster_events_total", ("event", "created")) == 6
    assert g("elk_cluster_events_total", ("event", "elections")) == 1
    assert g("elk_cluster_leader_present") == 1
    assert g("elk_cluster_leader_epoch") == store.leader()[1] > 1  # Redis time in ms, see _lib.lua
    assert g("elk_cluster_leader_info", ("node", "n1"), ("node_id", "n1")) == 1
    assert 0 < g("elk_cluster_leader_lease_remaining_seconds") <= 30
    assert g("elk_cluster_live_nodes") == 1
    assert g("elk_cluster_registered_nodes") == 2
    assert g("elk_cluster_node_inflight_partitions", ("node", "n1")) == 1
    breaker = CircuitBreaker(store).state()
    assert breaker.state == "open"
    assert g("elk_cluster_breaker_state") == 2
    assert g("elk_cluster_breaker_trips_total") == breaker.trips == 1
    assert g("elk_cluster_breaker_consecutive_failures") == breaker.consecutive_failures
    assert g("elk_cluster_breaker_refused_claims_total") == breaker.refused
    assert g("elk_cluster_planning_cursor") == 601
    assert g("elk_cluster_oldest_pending_age_seconds") >= 0
    assert g("elk_cluster_lease_overdue_seconds") == 0


def test_node_label_is_the_hostname_across_restarts(store, server_for, namespace):
    """Node ids are unique per worker start; the ``node`` label is the hostname,
    so a restart continues the same series; elk_node_info names the start."""
    from elk_celery.worker import node as node_mod
    old, new = "w1@h:0123abcd", "w1@h:89abcdef"  # two starts of worker w1@h
    s = store.strategy
    s.create_partitions_if_not_exist(
        [{"partition_id": i, "min_id": i * 10 + 1, "max_id": i * 10 + 10} for i in range(4)])
    store.heartbeat(old)
    store.heartbeat(new)
    store.leader_acquire(new)
    for pid, node in ((0, old), (1, new), (2, new)):
        c = s.claim(pid, node)
        s.complete_partition(pid, node, c.fence, 10)
    assert s.claim(3, old).ok  # still held by the old start
    h = PrometheusHooks()
    for node in (old, new):
        h.on_partition_done(namespace, node, TASK, outcome="completed", items=10, duration=1.0,
                            min_id=1, max_id=10)
    saved = (node_mod._node_id, node_mod._registered)
    node_mod.set_node_id(new)
    try:
        text = scrape(server_for([store]))
    finally:
        node_mod._node_id, node_mod._registered = saved
    m = parse(text)
    L = (("namespace", namespace),)
    assert value("elk_partitions_completed_total", namespace=namespace, node="w1@h", task=TASK) == 2
    assert value("elk_items_processed_total", namespace=namespace, node="w1@h", task=TASK) == 20
    assert value("elk_partitions_completed_total", namespace=namespace, node=old, task=TASK) == 0
    assert m[("elk_cluster_node_partitions_completed_total", L + (("node", "w1@h"),))] == 3
    assert m[("elk_cluster_node_items_processed_total", L + (("node", "w1@h"),))] == 30
    assert m[("elk_cluster_node_inflight_partitions", L + (("node", "w1@h"),))] == 1
    assert m[("elk_cluster_leader_info", L + (("node", "w1@h"), ("node_id", new)))] == 1
    info = [k for k in m if k[0] == "elk_node_info"]
    assert info == [("elk_node_info", (("node", "w1@h"), ("node_id", new), ("token", "89abcdef")))]
    # the per-host counters are not events
    assert not any(k[0] == "elk_cluster_events_total" and "node_" in dict(k[1])["event"] for k in m)
    assert "node_partitions:w1@h" in s.get_partition_stats().counters


def test_cluster_collector_uses_one_pipeline_per_namespace(private_redis):
    # a private redis-server, so no other client's commands are counted
    client = redis.Redis.from_url(private_redis.url)
    stores = [NamespaceStore(HashPartitionStrategy(client, ns, SETTINGS)) for ns in ("a", "b")]
    for st in stores:
        make_state(st)
    before = client.info("stats")
    list(ClusterCollector(stores).collect())
    after = client.info("stats")
    # 11 pipelined reads per namespace, and two for its running partition's
    # progress (its record's bucket, and the hash of the layout before
    # buckets, store/layouts.py), + this INFO; no scans
    assert after["total_commands_processed"] - before["total_commands_processed"] == 2 * 13 + 1
    assert after["total_connections_received"] == before["total_connections_received"]
    client.close()


def test_cluster_collector_survives_an_unreachable_redis(server_for, redis_client, namespace):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = NamespaceStore(HashPartitionStrategy(
        redis.Redis(port=port, socket_connect_timeout=0.5), "unreachable"))
    live = NamespaceStore(HashPartitionStrategy(redis_client, namespace))
    s = parse(scrape(server_for(lambda: [dead, live])))
    assert s[("elk_cluster_up", (("namespace", "unreachable"),))] == 0
    assert s[("elk_cluster_up", (("namespace", namespace),))] == 1


# -- the server ---------------------------------------------------------------------
def test_real_scrape_passes_promtool_check_metrics(store, server_for, promtool):
    make_state(store)
    exercise_every_hook(store.namespace)
    text = scrape(server_for([store]))
    r = run_promtool(promtool, "check", "metrics", stdin=text)
    assert r.returncode == 0 and (r.stdout + r.stderr) == "", r.stdout + r.stderr


def test_scrape_exposes_every_name_in_metric_names(store, server_for):
    make_state(store)
    exercise_every_hook(store.namespace)
    text = scrape(server_for([store]))
    exposed = {f.name + ("_total" if f.type == "counter" else "")
               + ("_info" if f.type == "info" else "")
               for f in text_string_to_metric_families(text) if f.name.startswith("elk_")}
    # the text format shows info metrics as gauges named ..._info
    exposed = {n[:-len("_info_info")] + "_info" if n.endswith("_info_info") else n for n in exposed}
    assert METRIC_NAMES - exposed == set()
    labels = {f.name: f.samples[0].labels for f in text_string_to_metric_families(text)
              if f.name == "elk_build_info"}
    assert labels["elk_build_info"]["version"]


def test_server_binds_the_configured_address(server_for):
    s = server_for([], metrics_address="127.0.0.1")
    assert s.address == "127.0.0.1" and s.port > 0
    assert s.url == f"http://127.0.0.1:{s.port}/metrics"


def test_busy_port_and_missing_port_are_clear_errors(server_for):
    s = server_for([])
    with pytest.raises(ConfigError, match="every worker on a host needs its own"):
        start_metrics_server(ElkSettings(metrics_port=s.port), [])
    with pytest.raises(ConfigError, match="elk_metrics_port is not set"):
        start_metrics_server(ElkSettings(), [])


def test_multiproc_dir_set_too_late_is_refused(monkeypatch, tmp_path):
    # prometheus_client was imported in memory mode in this process
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="before `celery` starts"):
        start_metrics_server(ElkSettings(metrics_port=0), [])


def test_unwritable_multiproc_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(blocker / "metrics"),
           "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c",
                        "from elk_celery.metrics import setup_multiprocess; setup_multiprocess()"],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "is not a writable folder" in r.stderr and "ConfigError" in r.stderr
