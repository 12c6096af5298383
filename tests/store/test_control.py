"""Pause, resume, cancel at the script level (control.lua, claim.lua,
block.lua): real Redis, both strategies."""

from __future__ import annotations

import pytest

from elk_celery.errors import InvalidPartition, JobCancelled
from elk_celery.store.namespace import NamespaceStore

from tests.invariants import check_invariants


def _two(strategy):
    strategy.create_partitions_if_not_exist([
        {"partition_id": 1, "min_id": 1, "max_id": 100},
        {"partition_id": 2, "min_id": 101, "max_id": 200}])
    return NamespaceStore(strategy)


def test_a_paused_job_refuses_claims_and_keeps_the_partition_due(strategy):
    store = _two(strategy)
    running = strategy.claim(1, "w1")
    assert store.set_control("pause").state == "paused"
    assert store.wait_for_wake(0.5)  # the leader is woken at once
    c = strategy.claim(2, "w1")
    assert c.code == "paused" and not c.ok
    assert str(strategy.get_partition(2).status) == "pending"
    # the refused partition is due at once, ahead of fresh ones, for when the job resumes
    due = store.redis.zrange(store.keys.pending, 0, 0, withscores=True)
    assert due[0][1] <= store.server_time_ms()
    # the running partition finishes
    strategy.complete_partition(1, "w1", running.fence, 100)
    assert int(strategy.get_partition_stats().counters["refused_paused"]) == 1
    assert store.set_control("resume").state == "running"
    assert strategy.claim(2, "w1").ok
    check_invariants(strategy)


def test_stop_running_tells_the_next_block_to_stop(strategy):
    store = _two(strategy)
    c = strategy.claim(1, "w1")
    b = strategy.record_block(1, "w1", c.fence, size=10)
    assert not b.stop
    store.set_control("pause")  # running partitions finish
    b = strategy.record_block(1, "w1", c.fence, done_through=10, size=10)
    assert not b.stop and (b.lo, b.hi) == (11, 20)
    assert store.set_control("pause", stop_running=True).stop_running
    b = strategy.record_block(1, "w1", c.fence, done_through=20, size=10)
    assert b.stop and b.lo is None
    assert strategy.get_partition(1).checkpoint == 20  # the done block is recorded


def test_cancel_is_for_good_until_reset(strategy):
    store = _two(strategy)
    assert store.set_control("cancel").state == "cancelled"
    with pytest.raises(JobCancelled, match="reset"):
        store.set_control("resume")
    with pytest.raises(JobCancelled):
        store.set_control("pause")
    assert strategy.claim(1, "w1").code == "cancelled"
    assert store.control().state == "cancelled"
    store.reset()
    assert store.control().state == "running"


def test_an_unknown_action_is_refused(strategy):
    store = _two(strategy)
    with pytest.raises(InvalidPartition, match="control action"):
        store.set_control("stop")


def test_the_rate_limit_throttles_claims_cluster_wide(make_strategy):
    """Two nodes share one bucket: at 2 claims/s, the third claim in a burst
    is refused 'throttled' whoever makes it; the partition stays pending."""
    a, b = make_strategy(max_partitions_per_second=2), make_strategy(max_partitions_per_second=2)
    a.create_partitions_if_not_exist([{"partition_id": i, "min_id": i * 10, "max_id": i * 10 + 9}
                                      for i in range(1, 6)])
    codes = [a.claim(1, "w1").code, b.claim(2, "w2").code, a.claim(3, "w1").code,
             b.claim(4, "w2").code]
    assert codes[:2] == ["ok", "ok"]
    assert "throttled" in codes[2:]
    assert str(a.get_partition(4).status) == "pending" or codes[3] == "ok"
    assert int(a.get_partition_stats().counters["throttled"]) >= 1
    unlimited = make_strategy()  # rate 0: no limit
    assert unlimited.claim(5, "w3").ok
    check_invariants(a)
