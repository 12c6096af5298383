"""Small builders shared by the store's tests: partitions to create, one
claimed, settings with short leases."""

from __future__ import annotations

from elk_celery.models import Partition

SHORT = {"heartbeat_interval": 0.1, "partition_lock_expiry": 0.3}


def parts(*ids: int, size: int = 10) -> list[dict]:
    return [{"partition_id": i, "min_id": i * size + 1, "max_id": (i + 1) * size} for i in ids]


def claimed(strategy, pid: int, node: str = "n1") -> Partition:
    p = strategy.acquire_partition(pid, node)
    assert p is not None, f"could not claim {pid}"
    return p
