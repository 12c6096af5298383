"""The Redis Cluster and Sentinel helpers of tests/redis_topologies.py themselves."""

from __future__ import annotations

import pytest

from tests.redis_topologies import RedisClusterTopology, SentinelTopology

pytestmark = pytest.mark.topology


def test_cluster_has_three_masters_each_with_a_replica(redis_cluster: RedisClusterTopology):
    masters = redis_cluster.master_ports()
    assert len(masters) == 3
    replicas = {redis_cluster.replica_of(m) for m in masters}
    assert len(replicas) == 3 and not replicas & set(masters)


def test_cluster_routes_keys_and_names_their_master(redis_cluster: RedisClusterTopology):
    client = redis_cluster.client(decode_responses=True)
    try:
        a = "topo:{a}:x"
        b = redis_cluster.key_on_other_master([a], lambda i: f"topo:{{b{i}}}:x")
        client.set(a, "1")
        client.set(b, "2")
        assert redis_cluster.master_of(a) != redis_cluster.master_of(b)
        import redis as redis_py
        direct = redis_py.Redis(port=redis_cluster.master_of(a), decode_responses=True)
        assert direct.get(a) == "1"  # the key lives on the master named for it
        direct.close()
        client.delete(a, b)
    finally:
        client.close()


def test_sentinels_agree_on_the_master(redis_sentinel: SentinelTopology):
    assert redis_sentinel.master_port() in (redis_sentinel.master.port, redis_sentinel.replica.port)
    client = redis_sentinel.master_client(decode_responses=True)
    client.set("topo:s", "1")
    assert client.get("topo:s") == "1"
    client.delete("topo:s")
    client.close()


@pytest.mark.chaos
def test_cluster_failover_promotes_the_replica_and_keeps_the_data(redis_cluster_private):
    topo: RedisClusterTopology = redis_cluster_private
    client = topo.client(decode_responses=True)
    key = "topo:{f}:x"
    client.set(key, "kept")
    client.wait(1, 2000)  # replicated before the kill
    replica = topo.replica_of(topo.master_of(key))
    old, new = topo.kill_master_of(key)
    assert new == replica and old not in topo.master_ports()
    assert client.get(key) == "kept"
    topo.restart(old)
    assert topo.replica_of(new) == old
    client.close()


@pytest.mark.chaos
def test_sentinel_failover_promotes_the_replica(redis_sentinel_private):
    topo: SentinelTopology = redis_sentinel_private
    client = topo.master_client(decode_responses=True)
    client.set("topo:f", "kept")
    client.wait(1, 2000)
    old, new = topo.kill_master()
    assert new == topo.replica.port and topo.master_port() == new
    assert client.get("topo:f") == "kept"  # the client follows the sentinels
    client.close()
