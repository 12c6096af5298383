"""The whole flow on real `celery worker` / `celery beat` subprocesses."""

from __future__ import annotations

import pytest

from tests.conftest import wait_for
from tests.integration.helpers import coverage, done, ledger, stats

from elk_celery import HashPartitionStrategy, Keys

pytestmark = pytest.mark.slow


def test_three_workers_process_every_id_once(cluster, redis_client, namespace):
    c = cluster(max_id=100_000, size=500, window=2)
    c.beat()
    for name in ("w1", "w2", "w3"):
        c.worker(name, concurrency=2)
    wait_for(lambda: done(redis_client, namespace, 200), 120, lambda: "200 partitions completed\n" + c.logs())
    missing, twice = coverage(ledger(redis_client, namespace), 100_000)
    assert not missing
    assert twice == {}
    s = stats(redis_client, namespace)
    assert s.items_processed == 100_000
    nodes = {run[2] for run in ledger(redis_client, namespace)}
    assert len(nodes) == 3, f"work should spread over the 3 workers, got {nodes}"


def test_worker_with_embedded_beat(cluster, redis_client, namespace):
    c = cluster(max_id=5_000, size=250, window=2)
    c.worker("solo", concurrency=2, beat=True)
    wait_for(lambda: done(redis_client, namespace, 20), 60, lambda: "20 partitions\n" + c.logs())
    missing, twice = coverage(ledger(redis_client, namespace), 5_000)
    assert not missing and not twice


#: The flow settings as a new user has them (tests/apps/jobapp.py speeds them up).
DEFAULT_FLOW = dict(leader_election_interval=5.0, leader_lock_expiry=30.0, allocation_interval=120.0,
                    defer_delay=1.0)


def test_default_settings_keep_every_pool_process_busy(cluster, redis_client, namespace):
    # 2 workers x 2 processes, the default task window (the pool size) and a
    # 5 s leader interval: demand, not the clock, must keep all 4 busy
    c = cluster(max_id=4_000, size=100, window=None, sleep=0.3, **DEFAULT_FLOW)
    c.beat()
    c.worker("d1", concurrency=2)
    c.worker("d2", concurrency=2)
    wait_for(lambda: done(redis_client, namespace, 40), 90, lambda: "40 partitions\n" + c.logs())
    assert int(redis_client.get(f"{namespace}:maxrun_all")) == 4
    assert int(redis_client.get(f"{namespace}:maxrun")) == 2  # a node's window is its pool
    missing, twice = coverage(ledger(redis_client, namespace), 4_000)
    assert not missing and not twice
    s = stats(redis_client, namespace)
    assert s.counters.get("deferred_window", 0) == 0 and s.counters.get("dispatched") == 40


def test_task_window_caps_parallel_partitions(cluster, redis_client, namespace):
    # 4 pool processes but a window of 2: never more than 2 at once, and 2 do run together
    c = cluster(max_id=2_400, size=100, window=2, sleep=0.3)
    c.beat()
    c.worker("wide", concurrency=4)
    wait_for(lambda: done(redis_client, namespace, 24), 90, lambda: "24 partitions\n" + c.logs())
    assert int(redis_client.get(f"{namespace}:maxrun")) == 2
    assert stats(redis_client, namespace).counters.get("deferred_window", 0) > 0


def test_bad_processor_output_fails_only_that_partition(cluster, redis_client, namespace):
    c = cluster(max_id=1_000, size=100, window=2, fail=(201,), garbage=(501,), max_retries=1)
    c.beat()
    w = c.worker("w1", concurrency=2)
    strategy = HashPartitionStrategy(redis_client, namespace)

    def settled():
        s = strategy.get_partition_stats()
        return s.completed_count == 8 and s.failed_count == 2
    wait_for(settled, 60, lambda: "8 completed + 2 failed\n" + c.logs())
    failed = {p.min_id: p for p in strategy.get_filtered_partitions(status="failed")}
    assert set(failed) == {201, 501}
    assert "planned failure of 201..300" in failed[201].error
    assert failed[201].attempts == 2  # first run + max_retries=1
    assert "processor returned 'not a number'" in failed[501].error
    assert failed[501].attempts == 1  # garbage is not retried
    assert w.proc.poll() is None, "the worker must survive"
    # the operator re-queues failed partitions; they fail again, visibly
    assert sorted(p.partition_id for p in failed.values()) == sorted(strategy.retry_failed())


def test_lost_messages_are_sent_again(cluster, redis_client, namespace):
    c = cluster(max_id=1_000, size=100, window=2, allocation_interval=1.5, queue=f"{namespace}-p")
    c.beat()
    ticker = c.worker("ticker", concurrency=1)  # consumes ticks only, not partitions
    keys = Keys(namespace)
    # as many messages as the one node has slots (its task window): the rest waits in Redis
    wait_for(lambda: redis_client.llen(f"{namespace}-p") >= 2, 30, lambda: "first dispatch\n" + c.logs())
    redis_client.delete(f"{namespace}-p")  # the broker loses every partition message
    c.worker("doer", concurrency=2, queues=f"{namespace}-p")
    wait_for(lambda: done(redis_client, namespace, 10), 60, lambda: "10 partitions\n" + c.logs())
    assert int(redis_client.hget(keys.stats, "dispatched")) > 10
    missing, twice = coverage(ledger(redis_client, namespace), 1_000)
    assert not missing and not twice
    assert ticker.proc.poll() is None


def test_several_beats_one_leader(cluster, redis_client, namespace):
    c = cluster(max_id=3_000, size=100, window=2)
    c.beat("beat1")
    c.beat("beat2")
    c.worker("w1", concurrency=2)
    c.worker("w2", concurrency=2)
    wait_for(lambda: done(redis_client, namespace, 30), 60, lambda: "30 partitions\n" + c.logs())
    missing, twice = coverage(ledger(redis_client, namespace), 3_000)
    assert not missing and not twice
    assert int(redis_client.hget(Keys(namespace).stats, "elections")) == 1
