"""Dynamic work rebalancing on real workers: the leader splits the unclaimed
tail of partitions walked with ``partition.blocks()`` onto idle slots, and
no ID is lost or processed twice (the ledger of blocks says which IDs each
run walked)."""

from __future__ import annotations

import signal
from collections import Counter

from tests.conftest import wait_for
from tests.integration.helpers import blocks, ledger, stats

from elk_celery import HashPartitionStrategy, Status


def _ids_walked(client, namespace) -> Counter[int]:
    """How many times each ID's block was started."""
    seen: Counter[int] = Counter()
    for lo, hi, _, ev in blocks(client, namespace):
        if ev == "start":
            seen.update(range(lo, hi + 1))
    return seen


def _all_done(client, namespace) -> bool:
    s = stats(client, namespace)
    return s.total_count > 0 and s.completed_count == s.total_count


def _partitions(client, namespace):
    return HashPartitionStrategy(client, namespace).get_all_partitions()


def _check_exact(client, namespace, max_id):
    """Every ID walked exactly once; partitions disjoint, covering 1..max_id;
    the ledger's completed ranges are the partitions' (shortened) ranges."""
    walked = _ids_walked(client, namespace)
    assert set(walked) == set(range(1, max_id + 1)), "some ID was never processed"
    twice = sorted(i for i, n in walked.items() if n > 1)
    assert not twice, f"IDs processed twice: {twice[:10]}..."
    parts = sorted(_partitions(client, namespace), key=lambda p: p.min_id)
    assert all(p.status == Status.COMPLETED for p in parts)
    assert parts[0].min_id == 1 and parts[-1].max_id == max_id
    assert all(a.max_id + 1 == b.min_id for a, b in zip(parts, parts[1:]))
    done = sorted((lo, hi) for lo, hi, _, _ in ledger(client, namespace))
    assert done == [(p.min_id, p.max_id) for p in parts]
    return parts


def test_stragglers_are_split_onto_idle_slots_and_nothing_is_lost_or_doubled(
        cluster, redis_client, namespace):
    # 5 partitions of 40 blocks x 0.1 s on 2 workers x 2 slots: the 5th runs
    # alone at the end unless it is split
    c = cluster(max_id=1000, size=200, window=2, sleep=0.1, block=5)
    c.worker("w1", concurrency=2)
    c.worker("w2", concurrency=2)
    wait_for(lambda: _all_done(redis_client, namespace), 120, lambda: "the job\n" + c.logs())
    parts = _check_exact(redis_client, namespace, 1000)
    splits = int(stats(redis_client, namespace).counters.get("splits", 0))
    tails = [p for p in parts if p.parent_id is not None]
    assert splits >= 1 and len(tails) == splits
    parents = {p.partition_id for p in parts}
    assert all(t.parent_id in parents for t in tails)


def test_a_processor_without_blocks_is_never_split(cluster, redis_client, namespace):
    c = cluster(max_id=500, size=100, window=2, sleep=2.0)  # no blocks(): one sleep per partition
    c.worker("w1", concurrency=2)
    c.worker("w2", concurrency=2)
    wait_for(lambda: _all_done(redis_client, namespace), 120, lambda: "the job\n" + c.logs())
    st = stats(redis_client, namespace)
    assert st.total_count == 5 and int(st.counters.get("splits", 0)) == 0
    runs = sorted((lo, hi) for lo, hi, _, _ in ledger(redis_client, namespace))
    assert runs == [(lo, lo + 99) for lo in range(1, 501, 100)]


def test_a_split_racing_with_the_owners_completion(cluster, redis_client, namespace):
    # many short partitions whose last blocks end while slots fall idle: the
    # leader reads owners that are about to complete, and its splits land
    # before or after their completions
    c = cluster(max_id=1200, size=100, window=3, sleep=0.05, block=4)
    c.worker("w1", concurrency=3)
    c.worker("w2", concurrency=3)
    wait_for(lambda: _all_done(redis_client, namespace), 120, lambda: "the job\n" + c.logs())
    _check_exact(redis_client, namespace, 1200)


def test_a_split_partition_whose_owner_dies(cluster, redis_client, namespace):
    c = cluster(max_id=600, size=300, window=2, sleep=0.1, block=5)
    w1 = c.worker("w1", concurrency=2)

    def split_on_w1():
        return [p for p in _partitions(redis_client, namespace)
                if p.splits and p.status == Status.RUNNING and p.node_id.startswith("w1@")]
    # w1's two slots run both partitions, no slot is idle; a second worker
    # brings idle slots, and the leader splits w1's partitions onto them
    wait_for(lambda: sum(p.status == Status.RUNNING and p.node_id.startswith("w1@")
                         for p in _partitions(redis_client, namespace)) == 2, 60,
             lambda: "w1 runs both partitions\n" + c.logs())
    w2 = c.worker("w2", concurrency=2)
    wait_for(split_on_w1, 90, lambda: "a split of a partition w1 runs\n" + c.logs())
    w1.signal(signal.SIGKILL, group=True)
    w1.wait(10)
    before = blocks(redis_client, namespace)
    running = {(lo, hi) for lo, hi, node, ev in before if ev == "start" and node.startswith("w1@")} - \
        {(lo, hi) for lo, hi, node, ev in before if ev == "end"}
    wait_for(lambda: _all_done(redis_client, namespace), 120, lambda: "the job\n" + c.logs())
    assert w2.proc.poll() is None
    walked = _ids_walked(redis_client, namespace)
    assert set(walked) == set(range(1, 601))
    # only the blocks w1 was running when it died ran twice
    twice = {i for i, n in walked.items() if n > 1}
    assert twice <= {i for lo, hi in running for i in range(lo, hi + 1)}
    parts = sorted(_partitions(redis_client, namespace), key=lambda p: p.min_id)
    assert all(a.max_id + 1 == b.min_id for a, b in zip(parts, parts[1:]))
    assert parts[0].min_id == 1 and parts[-1].max_id == 600


def test_a_split_racing_with_a_pause(cluster, redis_client, namespace):
    from elk_celery.store.namespace import NamespaceStore
    c = cluster(max_id=600, size=300, window=2, sleep=0.1, block=5)
    c.worker("w1", concurrency=2)
    c.worker("w2", concurrency=2)
    store = NamespaceStore(HashPartitionStrategy(redis_client, namespace))
    wait_for(lambda: int(stats(redis_client, namespace).counters.get("splits", 0)) >= 1, 90,
             lambda: "a split\n" + c.logs())
    store.set_control("pause")
    # paused: nothing is split any more, claims are refused
    at_pause = int(stats(redis_client, namespace).counters.get("splits", 0))
    wait_for(lambda: stats(redis_client, namespace).running_count == 0, 90,
             lambda: "the running partitions finish\n" + c.logs())
    assert int(stats(redis_client, namespace).counters.get("splits", 0)) == at_pause
    store.set_control("resume")
    wait_for(lambda: _all_done(redis_client, namespace), 120, lambda: "the job\n" + c.logs())
    _check_exact(redis_client, namespace, 600)
