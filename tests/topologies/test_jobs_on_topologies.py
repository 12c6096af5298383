"""Jobs on real ``celery worker`` subprocesses whose elk state lives on a
Redis Cluster or behind Sentinel (the broker stays the test's own Redis)."""

from __future__ import annotations

import pytest

from elk_celery import HashPartitionStrategy
from elk_celery.store.connection import redis_from_url
from tests.integration.helpers import coverage, ledger
from tests.redis_topologies import wait_for

pytestmark = [pytest.mark.topology, pytest.mark.chaos]


def _on(c, state_url: str, broker_url: str) -> None:
    """Point the workers' elk state at ``state_url``; broker and ledger stay on ``broker_url``."""
    c.env.update({"ELK_REDIS_URL": state_url, "ELK_TEST_BROKER_URL": broker_url,
                  "ELK_TEST_LEDGER_URL": broker_url})


def _done(state, total: int) -> bool:
    s = state.get_partition_stats()
    return s.total_count == total and s.completed_count == total


def _run_job(cluster, redis_url, redis_client, namespace, state_url, partitions=20):
    c = cluster(max_id=partitions * 50, size=50, window=2)
    _on(c, state_url, redis_url)
    c.worker("w1", concurrency=2)
    c.worker("w2", concurrency=2)
    state = HashPartitionStrategy(redis_from_url(state_url), namespace)
    try:
        wait_for(f"{partitions} partitions completed", lambda: _done(state, partitions), 90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{c.logs()}") from None
    missing, twice = coverage(ledger(redis_client, namespace), partitions * 50)
    assert not missing and not twice
    assert state.get_partition_stats().items_processed == partitions * 50
    return state


def test_job_on_redis_cluster(redis_cluster, cluster, redis_url, redis_client, namespace):
    state = _run_job(cluster, redis_url, redis_client, namespace, redis_cluster.url)
    # the state is on the master of the namespace's slot, nowhere else
    assert redis_cluster.master_of(state.keys.stats) in redis_cluster.master_ports()
    assert not redis_client.exists(state.keys.stats)
    from tests.conftest import cleanup_namespace
    cleanup_namespace(state.redis, namespace)


def test_job_behind_sentinel(redis_sentinel, cluster, redis_url, redis_client, namespace):
    state = _run_job(cluster, redis_url, redis_client, namespace, redis_sentinel.url)
    assert not redis_client.exists(state.keys.stats)
    from tests.conftest import cleanup_namespace
    cleanup_namespace(state.redis, namespace)


def _completed(state) -> int:
    return state.get_partition_stats().completed_count


def _job_survives(c, state, redis_client, namespace, total: int, max_id: int, kill) -> None:
    """Run the job, call ``kill()`` once a quarter is done, then check every
    ID was processed; duplicates are allowed (writes lost in the failover)
    and printed."""
    try:
        wait_for("a quarter of the job done", lambda: _completed(state) >= total // 4, 90)
        kill()
        wait_for(f"{total} partitions completed after the failover",
                 lambda: _done(state, total), 180, every=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{c.logs()}") from None
    missing, twice = coverage(ledger(redis_client, namespace), max_id)
    assert not missing, f"IDs never processed: {sorted(missing)[:20]}"
    print(f"\n{namespace}: {len(twice)} partition(s) run more than once after the failover: "
          f"{sorted(twice.items())[:10]}")


def _two_workers_fail_over(topo, cluster, redis_url, redis_client, namespace, kill):
    """80 partitions on two workers; ``kill(state)`` once a quarter is done.
    Returns (killed port, new master port)."""
    c = cluster(max_id=4000, size=50, window=2, sleep=0.05)
    _on(c, topo.url, redis_url)
    for name in ("w1", "w2"):
        c.worker(name, concurrency=2)
    state = HashPartitionStrategy(redis_from_url(topo.url), namespace)
    killed: list[tuple[int, int]] = []
    _job_survives(c, state, redis_client, namespace, 80, 4000,
                  lambda: killed.append(kill(state)))
    return state, killed[0]


def test_job_survives_a_cluster_master_failover(redis_cluster_private, cluster, redis_url,
                                                redis_client, namespace):
    topo = redis_cluster_private
    state, (old, new) = _two_workers_fail_over(
        topo, cluster, redis_url, redis_client, namespace,
        lambda state: topo.kill_master_of(state.keys.stats))
    assert topo.master_of(state.keys.stats) == new != old


def test_job_survives_a_sentinel_failover(redis_sentinel_private, cluster, redis_url,
                                          redis_client, namespace):
    topo = redis_sentinel_private
    _, (old, new) = _two_workers_fail_over(topo, cluster, redis_url, redis_client, namespace,
                                           lambda state: topo.kill_master())
    assert topo.master_port() == new == topo.replica.port != old


def test_two_jobs_on_different_masters_one_fails_over(redis_cluster_private, cluster, redis_url,
                                                      redis_client, namespace):
    """Two namespaces whose slots are on different masters run at once; the
    master of the first is killed: both finish, every ID of each processed."""
    topo = redis_cluster_private
    other = topo.key_on_other_master([f"elk:{{{namespace}}}:stats"],
                                     lambda i: f"elk:{{{namespace}-b{i}}}:stats").split("{")[1].split("}")[0]
    jobs = []
    for ns in (namespace, other):
        c = cluster(max_id=2000, size=50, window=2, sleep=0.05)
        c.namespace = ns
        c.env["ELK_TEST_NS"] = ns
        _on(c, topo.url, redis_url)
        c.worker(f"{ns}-w1", concurrency=2)
        jobs.append((c, HashPartitionStrategy(redis_from_url(topo.url), ns)))
    (c1, s1), (c2, s2) = jobs
    assert topo.master_of(s1.keys.stats) != topo.master_of(s2.keys.stats)
    try:
        _job_survives(c1, s1, redis_client, namespace, 40, 2000,
                      lambda: topo.kill_master_of(s1.keys.stats))
        wait_for("the other job done", lambda: _done(s2, 40), 120)
        missing, _ = coverage(ledger(redis_client, other), 2000)
        assert not missing
    finally:
        redis_client.delete(f"{other}:ledger", f"{other}:runs", f"{other}:maxrun",
                            f"{other}:running_all", f"{other}:maxrun_all", other)
