"""Checks shared by the unit and property tests: the scripts' bookkeeping
(stats counters, status indexes, in-flight counts, leases) equals a recount
from the partitions themselves."""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from elk_celery import Status
from elk_celery.store.connection import text
from elk_celery.strategies.base import PartitionStrategy

HELD = {Status.CLAIMED, Status.RUNNING}


def member(p: Any) -> str:
    return f"{p.partition_id}:{p.min_id}:{p.max_id}"


def check_invariants(strategy: PartitionStrategy) -> None:
    r, k = strategy.redis, strategy.keys
    parts = strategy.get_all_partitions()
    stats = strategy.get_partition_stats()
    by_status = Counter(str(p.status) for p in parts)

    def zset(key: str) -> set[str]:
        return {text(m) for m in r.zrange(key, 0, -1)}

    # quarantined partitions (stored values that are not elk partitions) are
    # left out of the listing and the status counts, counted apart
    quarantined = zset(k.corrupt)
    assert stats.quarantined_count == len(quarantined), (stats, quarantined)
    assert stats.total_count == len(parts) + len(quarantined), (stats, len(parts))
    for s in Status:
        assert getattr(stats, f"{s.value}_count") == by_status.get(s.value, 0), (s, stats, by_status)

    ids = zset(k.ids)
    assert {m for m in ids if m.split(":", 1)[0] not in quarantined} == {member(p) for p in parts}
    assert not quarantined & {str(p.partition_id) for p in parts}
    assert zset(k.pending) == {member(p) for p in parts if p.status == Status.PENDING}
    assert zset(k.leases) == {str(p.partition_id) for p in parts if p.status in HELD}
    assert zset(k.failed) == {str(p.partition_id) for p in parts if p.status == Status.FAILED}

    inflight = {text(n): int(v) for n, v in r.hgetall(k.inflight).items()}
    assert inflight == dict(Counter(p.node_id for p in parts if p.status in HELD)), inflight

    for p in parts:
        if p.status in HELD:
            assert p.node_id, p
        elif p.status == Status.PENDING:
            assert p.node_id == "", p  # nobody holds a pending partition
        if strategy.kind.value == "simple":
            lock = r.get(k.lock(p.partition_id))
            if p.status in HELD:
                # the lock is the lease: gone once it expired, else node|fence
                assert lock is None or text(lock) == f"{p.node_id}|{p.fence}", (p, lock)
            else:
                assert lock is None, (p, lock)
            assert r.ttl(k.partition(p.partition_id)) == -1  # no TTL on state
        else:
            assert (p.lease_expires_at is not None) == (p.status in HELD), p


def eventually(fn: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``fn`` until it returns something truthy; fail after ``timeout``."""
    from tests.conftest import wait_for
    return wait_for(fn, timeout, f"{fn}", interval)
