"""Fences and leader epochs stay unique across state loss (issue 11,
finding 6): after ``elk reset`` while a worker runs, or a failover that lost
the last writes, no fence or epoch handed out before is handed out again.
Real Redis, both strategies."""

from __future__ import annotations

import pytest

from elk_celery import StaleFenceError
from elk_celery.store.namespace import NamespaceStore

from tests.conftest import wait_for

from tests.invariants import check_invariants
from tests.raw_script import stored_values


def _server_ms(r) -> int:
    sec, usec = r.time()
    return int(sec) * 1000 + int(usec) // 1000


def test_reset_while_a_worker_holds_a_partition(strategy):
    store = NamespaceStore(strategy)
    epoch = store.leader_acquire("leader").epoch
    strategy.create_partitions_if_not_exist([{"partition_id": 1, "min_id": 1, "max_id": 100}])
    before = strategy.claim(1, "w1")  # w1 is processing 1..100 with this fence
    assert before.ok

    store.reset()  # the operator's `elk reset` while w1 runs
    # replanning and a new claim take more than the millisecond of the last fence
    wait_for(lambda: _server_ms(strategy.redis) > before.fence, 5, "Redis time to pass the fence")
    store.leader_release("leader")
    new_epoch = store.leader_acquire("leader").epoch
    assert new_epoch > epoch
    # replanned with other sizes: partition 1 is now 1..10, claimed by the same node
    strategy.create_partitions_if_not_exist([{"partition_id": 1, "min_id": 1, "max_id": 10}])
    after = strategy.claim(1, "w1")
    assert after.ok and after.fence > before.fence
    # the run from before the reset can't complete the new partition
    with pytest.raises(StaleFenceError):
        strategy.complete_partition(1, "w1", before.fence, 100)
    assert str(strategy.get_partition(1).status) == "running"
    check_invariants(strategy)


def test_fences_and_epochs_after_a_failover_that_lost_writes(strategy):
    store = NamespaceStore(strategy)
    strategy.create_partitions_if_not_exist([{"partition_id": 1, "min_id": 1, "max_id": 10}])
    snapshot = stored_values(strategy, [1])[0]
    epoch_snapshot = strategy.redis.hget(strategy.keys.meta, "epoch")
    handed_out, epochs = [], []
    for _ in range(3):  # the writes the new master never saw
        c = strategy.claim(1, "w1")
        handed_out.append(c.fence)
        strategy.release_partition(1, "w1", c.fence)
        epochs.append(store.leader_acquire("leader").epoch)
        store.leader_release("leader")
    assert handed_out == sorted(set(handed_out))
    # the failover takes longer than a millisecond per lost claim
    wait_for(lambda: _server_ms(strategy.redis) > max(handed_out + epochs), 5,
             "Redis time to pass the fences handed out")
    # the replica that takes over has the state from before those writes
    if strategy.kind.value == "hash":
        strategy.redis.hset(strategy.keys.partitions, "1", snapshot)
    else:
        strategy.redis.set(strategy.keys.partition(1), snapshot)
    strategy.redis.hdel(strategy.keys.meta, "epoch") if epoch_snapshot is None else \
        strategy.redis.hset(strategy.keys.meta, "epoch", epoch_snapshot)
    assert strategy.get_partition(1).fence == 0
    c = strategy.claim(1, "w2")
    assert c.fence > max(handed_out)
    assert store.leader_acquire("leader").epoch > max(epochs)


def test_fences_grow_by_claim_and_by_recovery(make_strategy):
    s = make_strategy(heartbeat_interval=0.1, partition_lock_expiry=0.3)
    s.create_partitions_if_not_exist([{"partition_id": 1, "min_id": 1, "max_id": 10}])
    seen = []
    for _ in range(3):  # faster than the clock: still strictly growing
        c = s.claim(1, "w1")
        seen.append(c.fence)
        s.release_partition(1, "w1", c.fence)
    c = s.claim(1, "w1")
    seen.append(c.fence)
    store = NamespaceStore(s)
    wait_for(lambda: store.recover() == ([1], [], []), 5, "the lease to lapse and be recovered")
    seen.append(s.get_partition(1).fence)
    assert seen == sorted(set(seen)), seen
    assert seen[0] >= _server_ms(s.redis) - 60_000  # Redis time in ms, not a count
