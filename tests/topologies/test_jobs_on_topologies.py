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
