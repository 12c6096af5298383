"""The real store on a Redis Cluster and behind Sentinel: short smoke tests
for the default suite (the deployments are shared per session)."""

from __future__ import annotations

import redis as redis_py
import pytest

from elk_celery import ElkSettings
from elk_celery.store.connection import redis_from_url
from elk_celery.store.namespace import NamespaceStore
from elk_celery.strategies import strategy_for
from tests.conftest import cleanup_namespace, unique_namespace

pytestmark = pytest.mark.topology


@pytest.fixture(params=["hash", "simple"])
def strategy_name(request):
    return request.param


def _store(url: str, namespace: str, strategy: str = "hash") -> NamespaceStore:
    return NamespaceStore(strategy_for(redis_from_url(url), namespace,
                                       ElkSettings(strategy=strategy)))


def _claim_and_complete(store: NamespaceStore, n: int = 5) -> None:
    node = "host:smoke"
    s = store.strategy
    store.register()
    store.heartbeat(node, {})
    lead = store.leader_acquire(node)
    assert lead.is_leader and lead.role == "elected"
    store.init_plan(1)
    created, first = store.plan_range(lead.epoch, 1, n * 10, 10)
    assert created == n
    sent = store.dispatch(lead.epoch)
    assert [pid for pid, _, _ in sent.due] == list(range(first, first + n))
    fences = []  # per partition: two partitions may share one (see next_fence in _lib.lua)
    for pid in range(first, first + n):
        c = s.worker_claim(pid, node, token=f"t{pid}")  # the hot path, on the process's line
        assert c.ok, c
        fences.append(c.fence)
        s.complete_partition(pid, node, c.fence, 10)
    stats = s.get_partition_stats()
    assert (stats.total_count, stats.completed_count, stats.items_processed) == (n, n, n * 10)
    assert all(f > 0 for f in fences)
    assert [ni.node_id for ni in store.nodes()] == [node]


def test_store_on_redis_cluster(redis_cluster, strategy_name):
    ns = unique_namespace("c")
    store = _store(redis_cluster.url, ns, strategy_name)
    try:
        _claim_and_complete(store)
        # every key of the namespace is on the master of its slot
        master = redis_py.Redis(port=redis_cluster.master_of(store.keys.stats))
        assert master.hget(store.keys.stats, "completed") == b"5"
        master.close()
        # a client given one seed node finds the rest
        other = _store(redis_cluster.seed_url(1), ns, strategy_name)
        assert other.strategy.get_partition_stats().completed_count == 5
    finally:
        cleanup_namespace(store.redis, ns)
        store.reset()


def test_two_namespaces_on_different_masters(redis_cluster):
    a = unique_namespace("a")
    b = redis_cluster.key_on_other_master(
        [f"elk:{{{a}}}:stats"], lambda i: f"elk:{{b{i}-{a[2:]}}}:stats").split("{")[1].split("}")[0]
    sa, sb = _store(redis_cluster.url, a), _store(redis_cluster.url, b)
    try:
        assert redis_cluster.master_of(sa.keys.stats) != redis_cluster.master_of(sb.keys.stats)
        _claim_and_complete(sa, 3)
        _claim_and_complete(sb, 4)
        assert sa.strategy.get_partition_stats().completed_count == 3
        assert sb.strategy.get_partition_stats().completed_count == 4
    finally:
        sa.reset()
        sb.reset()


def test_server_time_is_the_namespace_masters(redis_cluster):
    store = _store(redis_cluster.url, unique_namespace("t"))
    master = redis_py.Redis(port=redis_cluster.master_of(store.keys.stats))
    sec, _ = master.time()
    master.close()
    assert abs(store.server_time_ms() // 1000 - sec) <= 2


def test_store_behind_sentinel(redis_sentinel, strategy_name):
    ns = unique_namespace("s")
    store = _store(redis_sentinel.url, ns, strategy_name)
    try:
        _claim_and_complete(store)
        master = redis_py.Redis(port=redis_sentinel.master_port())
        assert master.hget(store.keys.stats, "completed") == b"5"
        master.close()
    finally:
        store.reset()


def _cli(url: str, *args: str) -> str:
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "elk_celery.cli", "--redis-url", url, *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.parametrize("topology", ["redis_cluster", "redis_sentinel"])
def test_cli_and_metrics_read_the_topology(topology, request):
    import json

    from elk_celery.metrics.cluster import ClusterCollector

    url = request.getfixturevalue(topology).url
    ns = unique_namespace("m")
    store = _store(url, ns)
    try:
        _claim_and_complete(store, 3)
        status = json.loads(_cli(url, "status", "-n", ns, "--json"))["namespaces"][0]
        assert status["namespace"] == ns and status["counts"]["completed"] == 3
        assert status["leader"]["node_id"] == "host:smoke"
        up = {m.name: m for m in ClusterCollector([store]).collect()}
        assert [s.value for s in up["elk_cluster_up"].samples] == [1]
        assert "reset (" in _cli(url, "reset", "-n", ns, "--yes")
        assert store.strategy.get_partition_stats().total_count == 0
    finally:
        store.reset()


def _line_port(store: NamespaceStore) -> int:
    return int(store.strategy.line._conn.port)


def test_worker_line_follows_a_cluster_failover(redis_cluster):
    """A graceful failover (CLUSTER FAILOVER on the replica) moves the slot:
    the line's next claim gets MOVED, falls back to the cluster client, and
    the claim after that goes straight to the new master."""
    from tests.redis_topologies import _client, wait_for
    store = _store(redis_cluster.url, unique_namespace("l"))
    s = store.strategy
    try:
        s.create_partitions_if_not_exist([{"partition_id": i, "min_id": i * 10 + 1,
                                           "max_id": i * 10 + 10} for i in range(3)])
        store.heartbeat("h:1", {})
        assert s.worker_claim(0, "h:1", token="a").ok
        old = redis_cluster.master_of(store.keys.stats)
        assert _line_port(store) == old
        replica = redis_cluster.replica_of(old)
        _client(replica).execute_command("CLUSTER FAILOVER")
        new = redis_cluster.wait_promoted(redis_cluster.slot_of(store.keys.stats), old)
        assert new == replica
        c = s.worker_claim(1, "h:1", token="b")  # MOVED on the line: answered by the fallback
        assert c.ok and s.get_partition(1).node_id == "h:1"
        assert s.worker_claim(2, "h:1", token="c").ok
        assert _line_port(store) == new
    finally:
        store.reset()
        # the shared cluster again has a replica under every master for the next tests
        wait_for("the old master serves as a replica", redis_cluster.settled)


@pytest.mark.chaos  # a Sentinel failover takes ~10 s
def test_worker_line_follows_a_sentinel_failover(redis_sentinel):
    """SENTINEL FAILOVER: the old master turns replica and answers READONLY;
    the line falls back and reconnects to the master the sentinels name."""
    from tests.redis_topologies import _client, wait_for
    store = _store(redis_sentinel.url, unique_namespace("l"))
    s = store.strategy
    try:
        s.create_partitions_if_not_exist([{"partition_id": i, "min_id": i * 10 + 1,
                                           "max_id": i * 10 + 10} for i in range(3)])
        store.heartbeat("h:1", {})
        assert s.worker_claim(0, "h:1", token="a").ok
        old = redis_sentinel.master_port()
        assert _line_port(store) == old
        _client(redis_sentinel.sentinels[0].port).execute_command(
            "SENTINEL", "FAILOVER", redis_sentinel.service)
        new = redis_sentinel.wait_promoted(old)
        wait_for("the old master runs as a replica",
                 lambda: _client(old).info("replication")["role"] == "slave")
        c = s.worker_claim(1, "h:1", token="b")
        assert c.ok and s.get_partition(1).node_id == "h:1"
        assert s.worker_claim(2, "h:1", token="c").ok
        assert _line_port(store) == new
    finally:
        store.reset()


def test_cluster_url_credentials_reach_the_nodes(redis_cluster):
    """The nodes have no user ``u``: AUTH u pw is refused, so it was sent."""
    from redis.exceptions import RedisClusterException
    seed = redis_cluster.seed_url(1).replace("redis+cluster://", "redis+cluster://u:pw@")
    with pytest.raises(RedisClusterException, match="username-password"):
        redis_from_url(seed)


def test_one_seed_is_enough(redis_cluster):
    client = redis_from_url(redis_cluster.seed_url(1), socket_timeout=3)
    assert client.get_connection_kwargs()["socket_timeout"] == 3
    assert len(client.get_primaries()) == 3
    client.close()


def test_sentinel_url_credentials_go_to_the_right_servers():
    client = redis_from_url("redis+sentinel://:srv@127.0.0.1:1,127.0.0.1:2/svc/4"
                            "?sentinel_username=su&sentinel_password=spw")
    pool = client.connection_pool
    assert pool.service_name == "svc"
    assert pool.connection_kwargs["password"] == "srv" and pool.connection_kwargs["db"] == 4
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1, 2]
    assert {(s.connection_pool.connection_kwargs["username"],
             s.connection_pool.connection_kwargs["password"]) for s in sentinels} == {("su", "spw")}
