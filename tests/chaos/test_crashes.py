"""Crashes with real signals: SIGKILL of the leader's and of a busy worker,
SIGTERM draining, SIGSTOP of an owner (fencing), a Redis restart."""

from __future__ import annotations

import os
import signal

import pytest

from tests.chaos.checker import read_runs
from tests.conftest import wait_for
from tests.integration.helpers import coverage, done, ledger, stats

from elk_celery import HashPartitionStrategy, Keys
from elk_celery.store.namespace import NamespaceStore

pytestmark = pytest.mark.chaos


def _store(client, namespace) -> NamespaceStore:
    return NamespaceStore(HashPartitionStrategy(client, namespace))


def _proc_of(c, node_id: str):
    name = node_id.split("@", 1)[0]
    return next(p for p in c.procs if p.log_path.name == f"{name}.log")


def _running_partition(c, redis_client, namespace) -> int:
    """Wait for a partition to be running; its id."""
    leases = Keys(namespace).leases
    wait_for(lambda: redis_client.zcard(leases) >= 1, 30, lambda: "a running partition\n" + c.logs())
    return int(redis_client.zrange(leases, 0, 0)[0])


def test_leader_killed_another_takes_over(cluster, redis_client, namespace):
    c = cluster(max_id=6_000, size=100, window=2, sleep=0.1)
    c.beat()
    c.worker("w1", concurrency=2)
    c.worker("w2", concurrency=2)
    store = _store(redis_client, namespace)
    holder, epoch = wait_for(store.leader, 30, lambda: "a leader\n" + c.logs())
    wait_for(lambda: stats(redis_client, namespace).completed_count >= 5, 30, "progress")
    _proc_of(c, holder).signal(signal.SIGKILL, group=True)

    def new_leader():
        cur = store.leader()
        return cur if cur and cur[0] != holder else None
    # node expiry (2 s) + a tick: well within the leader lock expiry + one tick
    new_holder, new_epoch = wait_for(new_leader, 10, lambda: "a new leader\n" + c.logs())
    assert new_epoch > epoch
    wait_for(lambda: done(redis_client, namespace, 60), 90, lambda: "60 partitions\n" + c.logs())
    missing, _ = coverage(ledger(redis_client, namespace), 6_000)
    assert not missing


def test_worker_killed_mid_partition_is_finished_by_another(cluster, redis_client, namespace):
    c = cluster(max_id=400, size=100, window=1, sleep=2.0)
    c.beat()
    victim = c.worker("victim", concurrency=1)
    strategy = HashPartitionStrategy(redis_client, namespace)
    pid = _running_partition(c, redis_client, namespace)
    victim.signal(signal.SIGKILL, group=True)
    victim.wait(10)
    c.worker("rescuer", concurrency=1)
    wait_for(lambda: done(redis_client, namespace, 4), 60, lambda: "4 partitions\n" + c.logs())
    p = strategy.get_partition(pid)
    assert p.node_id.startswith("rescuer@") and p.fence >= 2
    assert stats(redis_client, namespace).recovered >= 1
    missing, twice = coverage(ledger(redis_client, namespace), 400)
    assert not missing and not twice  # the victim died before writing its ledger entry


def test_sigterm_drains_in_flight_partitions(cluster, redis_client, namespace):
    c = cluster(max_id=1_000, size=100, window=2, sleep=1.5)
    c.beat()
    w = c.worker("drainer", concurrency=2)
    keys = Keys(namespace)
    wait_for(lambda: redis_client.zcard(keys.leases) >= 2, 30, lambda: "two running partitions\n" + c.logs())
    running = {int(x) for x in redis_client.zrange(keys.leases, 0, -1)}
    node = next(n.decode() for n in redis_client.zrange(keys.nodes, 0, -1)
                if n.decode().startswith("drainer@"))
    w.signal(signal.SIGTERM)
    assert w.wait(30) == 0
    strategy = HashPartitionStrategy(redis_client, namespace)
    after = strategy.get_partitions(running)
    # each finished (warm shutdown waits) or went back to pending at once
    assert all(str(p.status) in ("completed", "pending") for p in after), [str(p.status) for p in after]
    assert any(str(p.status) == "completed" for p in after)
    assert redis_client.zscore(keys.nodes, node) is None, "the node unregistered"
    assert not redis_client.hget(keys.inflight, node)
    assert stats(redis_client, namespace).running_count == 0


def test_paused_owner_is_fenced_off(cluster, redis_client, namespace):
    # SIGSTOP a whole worker: its heartbeats stop, its partition is preempted
    # by another worker; on SIGCONT its late completion is refused.
    c = cluster(max_id=200, size=100, window=1, sleep=3.0, allow_preemption=True)
    c.beat()
    sleeper = c.worker("sleeper", concurrency=1)
    strategy = HashPartitionStrategy(redis_client, namespace)
    pid = _running_partition(c, redis_client, namespace)
    first = strategy.get_partition(pid)
    sleeper.signal(signal.SIGSTOP, group=True)
    c.worker("taker", concurrency=1)
    wait_for(lambda: done(redis_client, namespace, 2), 60, lambda: "2 partitions\n" + c.logs())
    sleeper.signal(signal.SIGCONT, group=True)
    final = strategy.get_partition(pid)
    assert final.fence > first.fence and final.node_id.startswith("taker@")
    # the paused owner resumes: it must not complete the partition again.
    # Either its processor is stopped (its deadline passed while it was
    # stopped: LeaseLost without asking Redis) or its completion is refused
    def refused():
        s = stats(redis_client, namespace)
        stopped = any(r.worker == "sleeper" and r.error == "LeaseLost"
                      for r in read_runs(redis_client, namespace))
        return stopped or s.stale_writes + s.counters.get("leases_lost", 0) >= 1
    wait_for(refused, 20, lambda: "the resumed owner's lease loss or refused write\n" + c.logs())
    assert strategy.get_partition(pid).node_id.startswith("taker@")
    runs = [r for r in ledger(redis_client, namespace) if r[0] == first.min_id]
    assert all(r[3] == final.fence for r in runs if r[2].startswith("taker@"))


def test_redis_restart_loses_nothing(tmp_path, redis_client):
    """Coordination state and broker on one Redis with AOF, killed mid-run."""
    from elk_celery._redis_server import RedisServer
    from tests.conftest import Cluster, unique_namespace
    import redis as redis_lib

    ns = unique_namespace("rr")
    with RedisServer(appendonly=True, extra_args=["--appendfsync", "always"]) as server:
        server.start()
        client = redis_lib.Redis.from_url(server.url)
        c = Cluster(server.url, ns, tmp_path, max_id=3_000, size=100, window=2, sleep=0.1)
        try:
            c.beat()
            c.worker("w1", concurrency=2)
            c.worker("w2", concurrency=2)
            wait_for(lambda: stats(client, ns).completed_count >= 5, 30, lambda: "progress\n" + c.logs())
            server.kill()
            server.start()
            client = redis_lib.Redis.from_url(server.url)
            wait_for(lambda: done(client, ns, 30), 120, lambda: "30 partitions after the restart\n" + c.logs())
            missing, _ = coverage(ledger(client, ns), 3_000)
            assert not missing
        finally:
            c.stop()


def test_shutdown_after_a_pool_process_died(cluster, redis_client, namespace):
    # a pool child is SIGKILLed mid-partition (as by the OOM killer), then the
    # worker gets SIGTERM: it must not wait for ever, and must not leave the
    # dead child's partition running under its name
    c = cluster(max_id=300, size=100, window=1, sleep=5.0)
    c.beat()
    w = c.worker("oom", concurrency=1)
    keys = Keys(namespace)
    pid = _running_partition(c, redis_client, namespace)
    children = [int(x) for x in open(f"/proc/{w.pid}/task/{w.pid}/children").read().split()]
    assert children, "the prefork pool has a child"
    for child in children:
        os.kill(child, signal.SIGKILL)
    w.signal(signal.SIGTERM)
    assert w.wait(30) == 0
    p = HashPartitionStrategy(redis_client, namespace).get_partition(pid)
    assert not (str(p.status) in ("claimed", "running") and p.node_id.startswith("oom@")), p
    assert redis_client.zscore(keys.nodes, p.node_id or "none") is None


def test_a_pool_process_killed_alone_gives_its_partition_back(cluster, redis_client, namespace):
    # the OOM killer takes one pool child mid-partition; the worker lives on.
    # Leases are renewed by the process running the partition, so this one
    # lapses (3 s here) and the partition runs again, on the same worker.
    c = cluster(max_id=300, size=100, window=1, sleep=2.0)
    c.beat()
    w = c.worker("solo", concurrency=1)
    strategy = HashPartitionStrategy(redis_client, namespace)
    pid = _running_partition(c, redis_client, namespace)
    fence = strategy.get_partition(pid).fence
    node = strategy.get_partition(pid).node_id
    info = next(n.info for n in _store(redis_client, namespace).nodes() if n.node_id == node)
    children = [int(x) for x in open(f"/proc/{w.pid}/task/{w.pid}/children").read().split()]
    pool = [ch for ch in children if ch != info.get("leader_pid")]
    assert len(pool) == 1, (children, info)
    os.kill(pool[0], signal.SIGKILL)
    wait_for(lambda: done(redis_client, namespace, 3), 60, lambda: "3 partitions\n" + c.logs())
    assert w.proc.poll() is None, "the worker itself lives on"
    p = strategy.get_partition(pid)
    assert p.node_id.startswith("solo@") and p.fence > fence
    st = stats(redis_client, namespace)
    assert st.recovered + st.preempted >= 1, st  # taken back after its lease lapsed
    missing, twice = coverage(ledger(redis_client, namespace), 300)
    assert not missing and not twice
