"""split.lua: the leader splits the unclaimed tail off a running partition.
Each race with the owner is one order or the other (Redis runs scripts one
at a time): both orders are played here, and after each the IDs the owner
walks plus the tail's cover the range exactly once. Real Redis, both
strategies."""

from __future__ import annotations

import pytest

from elk_celery import StaleLeaderError, Status
from elk_celery.gaps import GapDetector
from elk_celery.compaction import compact_completed
from elk_celery.store.namespace import NamespaceStore

from tests.invariants import check_invariants, eventually


@pytest.fixture
def store(strategy):
    s = NamespaceStore(strategy)
    s.leader_acquire("leader")
    return s


def _epoch(store):
    return store.leader()[1]


def _running(strategy, lo=1, hi=1000, pid=1):
    strategy.create_partitions_if_not_exist([{"partition_id": pid, "min_id": lo, "max_id": hi}])
    c = strategy.claim(pid, "w1")
    assert c.ok
    return c


def _walk(strategy, pid, fence, done, size, node="w1"):
    """The owner's blocks() from ``done`` on: the blocks it walks."""
    out = []
    while True:
        b = strategy.record_block(pid, node, fence, done_through=done, size=size)
        if b.lo is None:
            return out
        out.append((b.lo, b.hi))
        done = b.hi


def _covered(blocks):
    return [i for lo, hi in blocks for i in range(lo, hi + 1)]


def test_a_split_moves_the_end_and_makes_a_pending_tail(strategy, store):
    c = _running(strategy)
    strategy.record_block(1, "w1", c.fence, size=100)                    # 1..100 runs
    strategy.record_block(1, "w1", c.fence, done_through=100, size=100)  # 101..200 runs
    s = store.split_partition(_epoch(store), 1, c.fence, at=500, margin=0)
    assert s.ok and (s.parent_max_id, s.tail_min_id, s.tail_max_id) == (500, 501, 1000)
    parent, tail = strategy.get_partition(1), strategy.get_partition(s.tail_id)
    assert (parent.max_id, parent.status, parent.splits) == (500, Status.RUNNING, 1)
    assert (tail.min_id, tail.max_id, tail.status, tail.parent_id) == (501, 1000, Status.PENDING, 1)
    stats = strategy.get_partition_stats()
    assert stats.total_count == 2 and int(stats.counters["splits"]) == 1
    assert int(stats.counters["created"]) == 2
    # the owner's walk ends at the new end; the tail's owner walks the rest
    walked = [(101, 200)] + _walk(strategy, 1, c.fence, 200, 100)
    c2 = strategy.claim(s.tail_id, "w2")
    assert (c2.min_id, c2.max_id) == (501, 1000)
    walked += _walk(strategy, s.tail_id, c2.fence, None, 100, "w2")
    assert sorted(_covered([(1, 100)] + walked)) == list(range(1, 1001))
    check_invariants(strategy)


def test_the_split_never_goes_below_the_owners_claimed_block(strategy, store):
    c = _running(strategy)
    strategy.record_block(1, "w1", c.fence, size=100)
    # the leader read the owner at 1..100 and asked to keep up to 150; the
    # owner claimed 101..300 meanwhile (its block claim ran first)
    strategy.record_block(1, "w1", c.fence, done_through=100, size=200)
    s = store.split_partition(_epoch(store), 1, c.fence, at=150, margin=50)
    assert s.ok and s.parent_max_id == 350  # its block end + the margin
    assert _walk(strategy, 1, c.fence, 300, 200) == [(301, 350)]
    check_invariants(strategy)


def test_a_processor_without_blocks_is_never_split(strategy, store):
    c = _running(strategy)
    assert store.split_partition(_epoch(store), 1, c.fence, at=10).code == "no_blocks"
    strategy.record_block(1, "w1", c.fence, done_through=100)  # checkpoint(), no block
    assert store.split_partition(_epoch(store), 1, c.fence, at=500).code == "no_blocks"
    assert strategy.get_partition(1).max_id == 1000
    assert strategy.get_partition_stats().total_count == 1


def test_a_block_of_an_earlier_owner_does_not_count(strategy, store):
    c = _running(strategy)
    strategy.record_block(1, "w1", c.fence, size=100)
    strategy.release_partition(1, "w1", c.fence)
    c2 = strategy.claim(1, "w2")
    assert strategy.get_partition(1).block_end is None  # claim.lua clears it
    assert store.split_partition(_epoch(store), 1, c2.fence, at=500).code == "no_blocks"


def test_a_small_tail_is_not_split_off(strategy, store):
    c = _running(strategy, 1, 100)
    strategy.record_block(1, "w1", c.fence, size=90)
    assert store.split_partition(_epoch(store), 1, c.fence, at=90, min_tail=11).code == "small"
    assert store.split_partition(_epoch(store), 1, c.fence, at=95, margin=10).code == "small"
    assert strategy.get_partition(1).max_id == 100
    s = store.split_partition(_epoch(store), 1, c.fence, at=90, min_tail=10)
    assert s.ok and (s.tail_min_id, s.tail_max_id) == (91, 100)


def test_completion_before_the_split_wins(strategy, store):
    c = _running(strategy, 1, 300)
    _walk(strategy, 1, c.fence, None, 100)
    strategy.complete_partition(1, "w1", c.fence, 300)
    assert store.split_partition(_epoch(store), 1, c.fence, at=100).code == "not_running"
    assert strategy.get_partition_stats().total_count == 1


def test_completion_after_the_split_covers_the_shorter_range(strategy, store):
    c = _running(strategy, 1, 300)
    strategy.record_block(1, "w1", c.fence, size=100)
    assert store.split_partition(_epoch(store), 1, c.fence, at=100).ok
    assert _walk(strategy, 1, c.fence, 100, 100) == []  # its walk is over
    strategy.complete_partition(1, "w1", c.fence, 100)
    p = strategy.get_partition(1)
    assert (p.status, p.max_id, p.items_processed) == (Status.COMPLETED, 100, 100)
    check_invariants(strategy)


def test_death_and_recovery_either_way(strategy, make_strategy, store):
    # (a) recovered (or released) first: pending, so not split; the next
    # owner resumes after the checkpoint
    c = _running(strategy, 1, 1000)
    strategy.record_block(1, "w1", c.fence, size=100)
    strategy.record_block(1, "w1", c.fence, done_through=100, size=100)
    strategy.release_partition(1, "w1", c.fence)
    assert store.split_partition(_epoch(store), 1, c.fence, at=500).code == "not_running"
    # (b) split first, then the owner dies: its lease lapses and the leader
    # recovers the shorter partition
    short = make_strategy(partition_lock_expiry=0.05, heartbeat_interval=0.01)
    c2 = short.claim(1, "w2")
    assert c2.min_id == 101
    short.record_block(1, "w2", c2.fence, size=100)  # 101..200 runs when w2 dies
    s = store.split_partition(_epoch(store), 1, c2.fence, at=400)
    assert s.ok
    recovered = eventually(lambda: store.recover(_epoch(store))[0])
    assert recovered == [1]
    c3 = strategy.claim(1, "w3")
    assert (c3.min_id, c3.max_id) == (101, 400)  # the shorter range, after the checkpoint
    assert store.split_partition(_epoch(store), 1, c2.fence, at=300).code == "fence"
    check_invariants(strategy)


def test_a_paused_job_is_not_split(strategy, store):
    c = _running(strategy)
    strategy.record_block(1, "w1", c.fence, size=100)
    store.set_meta(control="paused")
    assert store.split_partition(_epoch(store), 1, c.fence, at=500).code == "paused"
    store.set_meta(control="")
    assert store.split_partition(_epoch(store), 1, c.fence, at=500).ok


def test_a_deposed_leader_cannot_split(strategy, store):
    c = _running(strategy)
    strategy.record_block(1, "w1", c.fence, size=100)
    with pytest.raises(StaleLeaderError):
        store.split_partition(_epoch(store) + 1, 1, c.fence, at=500)
    assert strategy.get_partition(1).max_id == 1000


def test_the_tail_id_comes_from_the_allocator(strategy, store):
    c = _running(strategy)
    strategy.record_block(1, "w1", c.fence, size=100)
    store.redis.hset(store.keys.meta, "next_pid", 7)
    s = store.split_partition(_epoch(store), 1, c.fence, at=500)
    assert s.tail_id == 7 and int(store.redis.hget(store.keys.meta, "next_pid")) == 8
    s2 = store.split_partition(_epoch(store), 1, c.fence, at=300)
    assert s2.ok and s2.tail_id == 8 and (s2.tail_min_id, s2.tail_max_id) == (301, 500)
    check_invariants(strategy)


def test_gap_detection_and_compaction_agree_with_a_split(strategy, store):
    strategy.create_partitions_if_not_exist(
        [{"partition_id": i, "min_id": 100 * i + 1, "max_id": 100 * i + 100} for i in range(3)])
    store.set_meta(start_id=1, cursor=301)
    detector = GapDetector(store)
    first = detector.detect("full")
    assert first.ok
    c = strategy.claim(1, "w1")
    strategy.record_block(1, "w1", c.fence, size=10)
    assert store.split_partition(_epoch(store), 1, c.fence, at=150).ok
    again = detector.detect("incremental")
    assert again.mode == "incremental" and again.ok  # the signature stands, no gap
    assert detector.detect("full").ok
    # complete everything: the prefix compacts over parent and tail alike
    for pid in (0, 1):
        cc = c if pid == 1 else strategy.claim(pid, "w1")
        strategy.complete_partition(pid, "w1", cc.fence, 1)
    tail = [p for p in strategy.get_all_partitions() if p.parent_id == 1][0]
    ct = strategy.claim(tail.partition_id, "w2")
    strategy.complete_partition(tail.partition_id, "w2", ct.fence, 1)
    check_invariants(strategy)
    res = compact_completed(store, 10, _epoch(store))
    assert res.compacted == 3 and res.watermark == 201
    assert detector.detect("full").ok


def test_split_near_the_int64_limit(strategy, store):
    hi = 2**63 - 1
    c = _running(strategy, hi - 1000, hi)
    strategy.record_block(1, "w1", c.fence, size=10)
    s = store.split_partition(_epoch(store), 1, c.fence, at=hi - 500)
    assert s.ok and (s.tail_min_id, s.tail_max_id) == (hi - 499, hi)
    assert store.split_partition(_epoch(store), 1, c.fence, at=hi - 501, margin=2**52).code == "small"
    check_invariants(strategy)
