"""A stored value that is not an elk partition is quarantined, not fatal
(issue 11, finding 4): recovery, compaction, claims and retries carry on
with the rest; the partition leaves the status indexes, is counted in the
stats (`corrupt`, and the event `quarantined`), and stays listed until an
operator deletes it. Real Redis, both strategies."""

from __future__ import annotations

import pytest

from elk_celery import CorruptPartition, HashPartitionStrategy
from elk_celery.compaction import compact_completed
from elk_celery.store.connection import text
from elk_celery.store.namespace import NamespaceStore

from tests.invariants import check_invariants


def _parts(*ids):
    return [{"partition_id": i, "min_id": 10 * i, "max_id": 10 * i + 9} for i in ids]


def _corrupt(s, pid: int, raw: str = "garbage{") -> None:
    if isinstance(s, HashPartitionStrategy):
        s.redis.hset(s.keys.partitions, str(pid), raw)
    else:
        s.redis.set(s.keys.partition(pid), raw)


def _quarantined(s) -> list[int]:
    return [int(text(m)) for m in s.redis.zrange(s.keys.corrupt, 0, -1)]


def test_recovery_quarantines_a_corrupt_held_partition_and_recovers_the_rest(strategy):
    strategy.create_partitions_if_not_exist(_parts(1, 2, 3))
    store = NamespaceStore(strategy)
    for pid in (1, 2, 3):
        assert strategy.claim(pid, "dead").ok
    store.heartbeat("dead")
    strategy.redis.zadd(strategy.keys.nodes, {"dead": 0})  # its node died
    _corrupt(strategy, 2)
    back, failed, quarantined = store.recover()
    assert (sorted(back), failed, quarantined) == ([1, 3], [], [2])
    assert _quarantined(strategy) == [2]
    st = strategy.get_partition_stats()
    assert (st.pending_count, st.running_count, st.quarantined_count) == (2, 0, 1)
    assert st.counters["quarantined"] == 1
    assert strategy.redis.zscore(strategy.keys.leases, "2") is None
    check_invariants(strategy)
    # the next round does not meet it again (nor count it twice)
    assert store.recover() == ([], [], [])
    assert strategy.get_partition_stats().counters["quarantined"] == 1


def test_a_quarantined_partition_is_left_out_of_listings_but_named_when_read(strategy):
    strategy.create_partitions_if_not_exist(_parts(1, 2))
    _corrupt(strategy, 2)
    with pytest.raises(CorruptPartition, match="partition 2"):
        strategy.get_all_partitions()  # not quarantined yet: loud
    assert strategy.quarantine(2, 20, 29) is True
    assert strategy.quarantine(2, 20, 29) is False  # once
    assert [p.partition_id for p in strategy.get_all_partitions()] == [1]
    assert [p.partition_id for p in strategy.get_partitions([1, 2])] == [1]
    assert [pid for pid, _ in strategy.quarantined()] == [2]
    with pytest.raises(CorruptPartition, match="partition 2 .*quarantined"):
        strategy.get_partition(2)
    # it was pending: out of the pending index, so dispatch stops sending it
    assert [m[0] for m in NamespaceStore(strategy).dispatch().due] == [1]
    st = strategy.get_partition_stats()
    assert (st.total_count, st.pending_count, st.quarantined_count) == (2, 1, 1)
    check_invariants(strategy)


def test_quarantine_of_a_healthy_partition_does_nothing(strategy):
    strategy.create_partitions_if_not_exist(_parts(1))
    assert strategy.quarantine(1, 10, 19) is False
    assert strategy.quarantine(7, 70, 79) is False  # missing
    assert _quarantined(strategy) == []


def test_compaction_stops_at_a_corrupt_partition_instead_of_failing(strategy):
    strategy.create_partitions_if_not_exist(_parts(1, 2, 3))
    for pid in (1, 2, 3):
        c = strategy.claim(pid, "n1")
        strategy.complete_partition(pid, "n1", c.fence, 1)
    _corrupt(strategy, 2)
    strategy.redis.hset(strategy.keys.meta, "start_id", 10)  # the job starts at 10
    store = NamespaceStore(strategy)
    res = compact_completed(store, 10)
    assert res.compacted == 1 and res.watermark == 20  # 1 folded; 2 unknown: the run stops
    assert _quarantined(strategy) == [2]
    assert strategy.get_partition_stats().quarantined_count == 1
    assert compact_completed(store, 10).compacted == 0  # and stays stopped, no error
    st = strategy.get_partition_stats()  # compaction keeps the counts of what it folds
    assert (st.total_count, st.completed_count, st.counters["compacted"]) == (3, 2, 1)


def test_retry_failed_skips_a_corrupt_failed_partition(strategy):
    strategy.create_partitions_if_not_exist(_parts(1, 2))
    for pid in (1, 2):
        c = strategy.claim(pid, "n1")
        strategy.fail_partition(pid, "n1", c.fence, "x", retryable=False)
    _corrupt(strategy, 1, '{"status": "failed"}')
    assert strategy.retry_failed() == [2]
    assert _quarantined(strategy) == [1]
    st = strategy.get_partition_stats()
    assert (st.failed_count, st.pending_count, st.quarantined_count) == (0, 1, 1)
    check_invariants(strategy)


def test_deleting_a_quarantined_partition_frees_its_range(strategy):
    strategy.create_partitions_if_not_exist(_parts(1, 2, 3))
    store = NamespaceStore(strategy)
    assert strategy.claim(2, "dead").ok
    _corrupt(strategy, 2)  # nothing in the value says its range
    assert store.recover()[2] == [2]
    assert strategy.delete_partitions([2]) == 1
    assert _quarantined(strategy) == []
    assert [text(m) for m in strategy.redis.zrange(strategy.keys.ids, 0, -1)] == ["1:10:19", "3:30:39"]
    st = strategy.get_partition_stats()
    assert (st.total_count, st.pending_count, st.quarantined_count) == (2, 2, 0)
    check_invariants(strategy)
    # its range can be planned again
    strategy.create_partitions_if_not_exist([{"partition_id": 9, "min_id": 20, "max_id": 29}])
    check_invariants(strategy)
