"""Resumable partitions: block.lua checkpoints and claims blocks, fenced;
a later owner resumes after the checkpoint. Real Redis, both strategies."""

from __future__ import annotations

import pytest

from elk_celery import StaleFenceError
from elk_celery.errors import InvalidPartition
from elk_celery.models import MAX_ID, MIN_ID
from elk_celery.store.namespace import NamespaceStore

from tests.invariants import check_invariants


def _one(strategy, lo=1, hi=1000):
    strategy.create_partitions_if_not_exist([{"partition_id": 1, "min_id": lo, "max_id": hi}])
    c = strategy.claim(1, "w1")
    assert c.ok
    return c


def test_blocks_are_consecutive_and_the_checkpoint_follows(strategy):
    c = _one(strategy, 1, 1200)
    b = strategy.record_block(1, "w1", c.fence, size=500)
    assert (b.lo, b.hi, b.end, b.stop) == (1, 500, 1200, False)
    assert strategy.get_partition(1).checkpoint is None  # nothing done yet
    assert strategy.get_partition(1).block_end == 500
    b = strategy.record_block(1, "w1", c.fence, done_through=500, size=500, items=500)
    assert (b.lo, b.hi) == (501, 1000)
    b = strategy.record_block(1, "w1", c.fence, done_through=1000, size=500, items=1000)
    assert (b.lo, b.hi) == (1001, 1200)
    b = strategy.record_block(1, "w1", c.fence, done_through=1200, size=500, items=1200)
    assert (b.lo, b.hi) == (None, None)
    p = strategy.get_partition(1)
    assert (p.checkpoint, p.progress_items, p.done_fraction) == (1200, 1200, 1.0)
    check_invariants(strategy)


def test_a_stale_owner_cannot_move_the_checkpoint(strategy):
    c = _one(strategy)
    strategy.record_block(1, "w1", c.fence, done_through=100)
    strategy.release_partition(1, "w1", c.fence)
    with pytest.raises(StaleFenceError):
        strategy.record_block(1, "w1", c.fence, done_through=900, size=100)
    c2 = strategy.claim(1, "w2")
    with pytest.raises(StaleFenceError):  # w1's fence is not w2's
        strategy.record_block(1, "w1", c.fence, done_through=900)
    assert strategy.get_partition(1).checkpoint == 100
    assert c2.ok
    assert int(strategy.get_partition_stats().counters.get("stale_writes", 0)) == 2


def test_a_recovered_partition_resumes_after_its_checkpoint(strategy):
    store = NamespaceStore(strategy)
    c = _one(strategy)
    strategy.record_block(1, "w1", c.fence, size=250)
    strategy.record_block(1, "w1", c.fence, done_through=250, size=250)  # 251..500 runs
    # w1 dies: its lease is taken back by the leader (the owner's expired lease)
    strategy.release_partition(1, "w1", c.fence)
    c2 = strategy.claim(1, "w2")
    assert c2.ok and (c2.min_id, c2.max_id) == (251, 1000)  # the claim says where to resume
    b = strategy.record_block(1, "w2", c2.fence, size=250)
    assert (b.lo, b.hi) == (251, 500)  # only the running block is done again
    assert store.strategy.get_partition(1).resume_id == 251


def test_the_checkpoint_never_goes_back_nor_past_the_end(strategy):
    c = _one(strategy, 1, 100)
    strategy.record_block(1, "w1", c.fence, done_through=60)
    strategy.record_block(1, "w1", c.fence, done_through=30)
    assert strategy.get_partition(1).checkpoint == 60
    strategy.record_block(1, "w1", c.fence, done_through=10**6)
    assert strategy.get_partition(1).checkpoint == 100
    c2 = strategy.claim(1, "w1", force=True)  # fully checkpointed, not completed
    assert c2.min_id == 101 and c2.max_id == 100  # nothing left: an empty range


def test_blocks_near_the_int64_limits(strategy):
    c = _one(strategy, MIN_ID, MIN_ID + 10)
    b = strategy.record_block(1, "w1", c.fence, size=4)
    assert (b.lo, b.hi) == (MIN_ID, MIN_ID + 3)
    b = strategy.record_block(1, "w1", c.fence, done_through=MIN_ID + 3, size=4)
    assert (b.lo, b.hi) == (MIN_ID + 4, MIN_ID + 7)
    strategy.create_partitions_if_not_exist([{"partition_id": 2, "min_id": MAX_ID - 5, "max_id": MAX_ID}])
    c = strategy.claim(2, "w1")
    b = strategy.record_block(2, "w1", c.fence, size=4)
    assert (b.lo, b.hi) == (MAX_ID - 5, MAX_ID - 2)
    b = strategy.record_block(2, "w1", c.fence, done_through=MAX_ID - 2, size=4)
    assert (b.lo, b.hi) == (MAX_ID - 1, MAX_ID)
    b = strategy.record_block(2, "w1", c.fence, done_through=MAX_ID, size=4)
    assert b.lo is None


def test_bad_block_arguments_are_refused(strategy):
    c = _one(strategy)
    with pytest.raises(InvalidPartition, match="block size"):
        strategy.record_block(1, "w1", c.fence, size=-1)
    with pytest.raises(InvalidPartition, match="last ID done"):
        strategy.record_block(1, "w1", c.fence, done_through=2**63)


def test_a_completed_partition_run_again_starts_from_its_first_id(strategy):
    c = _one(strategy, 1, 100)
    strategy.record_block(1, "w1", c.fence, done_through=50)
    strategy.complete_partition(1, "w1", c.fence, 100)
    p = strategy.get_partition(1)
    p.status = "pending"
    strategy.update_partition(p)
    assert strategy.get_partition(1).checkpoint is None
    check_invariants(strategy)
