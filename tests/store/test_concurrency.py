"""Many processes racing for the same partitions: exactly one winner each.

Real processes (multiprocessing, spawn), one Redis client each, started
together on a barrier. Three rounds:

1. claim: every process tries every partition (in its own order);
2. preemption: the round-1 leases (0.3 s) expire, every process races to
   preempt every partition with a fresh node id;
3. the round-1 owners report completion: every write must be refused.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import random
import time

import pytest

from elk_celery import ElkSettings, StaleFenceError

from tests.invariants import check_invariants

N_PROCS = 6
N_PARTS = 200
TIMEOUT = 60  # bound on any wait: a hung child fails the test instead of hanging it


def _racer(idx, kind, url, ns, barrier, results):  # runs in a child process
    from elk_celery import HashPartitionStrategy, SimpleStrategy

    cls = {"hash": HashPartitionStrategy, "simple": SimpleStrategy}[kind]
    short = cls.from_url(url, namespace=ns, settings=ElkSettings(
        heartbeat_interval=0.1, partition_lock_expiry=0.3))
    long = cls.from_url(url, namespace=ns, settings=ElkSettings(partition_lock_expiry=60))
    ids = list(range(N_PARTS))
    random.Random(idx).shuffle(ids)
    me, heir = f"w{idx}", f"w{idx}-heir"

    barrier.wait(TIMEOUT)
    won1 = []
    for pid in ids:
        p = short.acquire_partition(pid, me)
        if p is not None:
            won1.append((pid, p.fence))
    results.put(("claim", idx, won1))

    barrier.wait(TIMEOUT)
    won2 = []
    remaining = set(ids)
    deadline = time.monotonic() + TIMEOUT / 2
    while remaining and time.monotonic() < deadline:
        for pid in ids:
            if pid not in remaining:
                continue
            p = long.acquire_partition(pid, heir, allow_preemption=True)
            if p is not None:
                won2.append((pid, p.fence))
                remaining.discard(pid)
            elif long.get_partition(pid).node_id.endswith("-heir"):
                remaining.discard(pid)  # another process preempted it
        if remaining:
            time.sleep(0.02)  # the 0.3 s leases are still running out
    results.put(("preempt", idx, won2))

    barrier.wait(TIMEOUT)
    stale = ok = 0
    for pid, fence in won1:
        try:
            long.complete_partition(pid, me, fence, 1)
            ok += 1
        except StaleFenceError:
            stale += 1
    results.put(("stale", idx, (stale, ok)))


@pytest.mark.timeout(120)
def test_processes_racing_for_partitions_get_exactly_one_winner_each(
        strategy, strategy_cls, redis_url, namespace):
    strategy.create_partitions_if_not_exist(
        [{"partition_id": i, "min_id": i * 100, "max_id": i * 100 + 99} for i in range(N_PARTS)])
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(N_PROCS)
    results = ctx.Queue()
    kind = strategy.kind.value
    procs = [ctx.Process(target=_racer, args=(i, kind, redis_url, namespace, barrier, results))
             for i in range(N_PROCS)]
    for p in procs:
        p.start()
    got: dict[str, dict[int, object]] = {"claim": {}, "preempt": {}, "stale": {}}
    try:
        for _ in range(3 * N_PROCS):
            phase, idx, value = results.get(timeout=TIMEOUT)
            got[phase][idx] = value
    except queue.Empty:
        pytest.fail(f"children did not report in time: got {[(k, sorted(v)) for k, v in got.items()]}")
    finally:
        for p in procs:
            p.join(TIMEOUT)
            if p.is_alive():
                p.kill()
                p.join()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]

    # round 1: every partition claimed exactly once
    claims = [(pid, fence) for won in got["claim"].values() for pid, fence in won]
    assert sorted(pid for pid, _ in claims) == list(range(N_PARTS))
    first = dict(claims)
    assert sum(1 for won in got["claim"].values() if won) >= 2, "no race happened"

    # round 2: every partition preempted exactly once, a higher fence, owner = the winner
    taken = {pid: (idx, fence) for idx, won in got["preempt"].items() for pid, fence in won}
    assert sum(len(won) for won in got["preempt"].values()) == N_PARTS
    assert sorted(taken) == list(range(N_PARTS))
    for p in strategy.get_all_partitions():
        idx, fence = taken[p.partition_id]
        assert (p.node_id, p.fence, str(p.status)) == (f"w{idx}-heir", fence, "claimed")
        assert fence > first[p.partition_id]

    # round 3: every late write of a round-1 owner was refused and counted
    assert sum(s for s, _ in got["stale"].values()) == N_PARTS
    assert sum(ok for _, ok in got["stale"].values()) == 0
    stats = strategy.get_partition_stats()
    assert (stats.claimed_count, stats.preempted, stats.stale_writes) == (N_PARTS, N_PARTS, N_PARTS)
    check_invariants(strategy)
