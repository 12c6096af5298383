"""Failovers of a Redis Cluster master and of a Sentinel master.

Replication is asynchronous, so a promoted replica can miss the last writes
of its master. These tests make it miss them for sure (the replica is
SIGSTOPped while the master takes the writes, then the master is SIGKILLed)
and check that fences and leader epochs handed out before the failover are
never handed out again: next_fence in store/lua/_lib.lua takes the larger of
the stored value + 1 and the server's clock in ms, and the clock has moved
on by the time a replica takes over.
"""

from __future__ import annotations

import pytest

from elk_celery import ElkSettings
from elk_celery.store.connection import redis_from_url
from elk_celery.store.namespace import NamespaceStore
from elk_celery.strategies import strategy_for
from tests.conftest import unique_namespace
from tests.redis_topologies import _client

pytestmark = [pytest.mark.topology, pytest.mark.chaos]


def _store(url: str) -> NamespaceStore:
    return NamespaceStore(strategy_for(redis_from_url(url, socket_timeout=5), unique_namespace("f"),
                                       ElkSettings(leader_lock_expiry=1, leader_election_interval=0.5)))


def _cut_off(replica, master_port: int) -> None:
    """Stop ``replica`` and close the master's link to it: the master's next
    writes go to no socket (a stopped process would still find them in its
    socket buffer when resumed), so the replica misses them for good."""
    replica.pause()
    c = _client(master_port)
    try:
        assert c.client_kill_filter(_type="replica") >= 1
    finally:
        c.close()


def _before_failover(store: NamespaceStore, cut_off):
    """Claim partition 0 and elect a leader with the replica in sync, then
    again with the replica cut off (writes it will never see). Returns
    (fence, epoch) in sync, (fence, epoch) the replica missed."""
    s = store.strategy
    s.create_partitions_if_not_exist([{"partition_id": 0, "min_id": 1, "max_id": 10}])
    store.heartbeat("a:1", {})
    e1 = store.leader_acquire("a:1").epoch
    f1 = s.claim(0, "a:1", token="one").fence
    replicated = _client(store_master_port(store)).wait(1, 5000)
    assert replicated == 1
    cut_off()
    store.heartbeat("b:1", {})
    f2 = s.claim(0, "b:1", force=True, token="two").fence  # a new owner, on the master only
    store.leader_release("a:1")
    e2 = store.leader_acquire("b:1").epoch
    assert f2 > f1 and e2 > e1
    return (f1, e1), (f2, e2)


def store_master_port(store: NamespaceStore) -> int:
    from elk_celery.store.connection import is_cluster
    if is_cluster(store.redis):
        return int(store.redis.get_node_from_key(store.keys.stats).port)
    return int(store.redis.connection_pool.get_master_address()[1])


def _after_failover(store: NamespaceStore, synced, missed) -> None:
    (f1, e1), (f2, e2) = synced, missed
    s = store.strategy
    # the promoted replica really missed the second claim and election
    assert s.get_partition(0).fence == f1
    assert store.leader() == ("a:1", e1) or store.leader() is None
    store.heartbeat("c:1", {})
    f3 = s.claim(0, "c:1", force=True, token="three").fence
    store.leader_release("a:1")
    e3 = store.leader_acquire("c:1").epoch
    assert f3 > f2, f"fence {f3} after the failover repeats one handed out before it ({f2})"
    assert e3 > e2, f"epoch {e3} after the failover repeats one handed out before it ({e2})"
    # and the stale owners' writes are refused
    from elk_celery.errors import StaleFenceError
    for node, fence in (("a:1", f1), ("b:1", f2)):
        with pytest.raises(StaleFenceError):
            s.complete_partition(0, node, fence, 10)


def test_fences_and_epochs_stay_unique_across_a_cluster_failover(redis_cluster_private):
    topo = redis_cluster_private
    store = _store(topo.url)
    master = topo.master_of(store.keys.stats)
    replica = topo.server(topo.replica_of(master))
    synced, missed = _before_failover(store, lambda: _cut_off(replica, master))
    topo.server(master).kill()
    replica.resume()
    new = topo.wait_promoted(topo.slot_of(store.keys.stats), master)
    assert new == replica.port
    _after_failover(store, synced, missed)


def test_fences_and_epochs_stay_unique_across_a_sentinel_failover(redis_sentinel_private):
    topo = redis_sentinel_private
    store = _store(topo.url)
    replica = topo.replica
    old = topo.master_port()
    synced, missed = _before_failover(store, lambda: _cut_off(replica, old))
    topo.server(old).kill()
    replica.resume()
    assert topo.wait_promoted(old) == replica.port
    _after_failover(store, synced, missed)
