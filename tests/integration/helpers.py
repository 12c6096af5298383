"""Reading what a job did: stats, the ledger of runs, coverage of the IDs."""

from __future__ import annotations

import redis

from elk_celery import HashPartitionStrategy, PartitionStats


def stats(client: redis.Redis, namespace: str) -> PartitionStats:
    return HashPartitionStrategy(client, namespace).get_partition_stats()


def ledger(client: redis.Redis, namespace: str) -> list[tuple[int, int, str, int]]:
    out = []
    for raw in client.lrange(f"{namespace}:ledger", 0, -1):
        rng, node, fence = raw.decode().split("|")
        lo, hi = rng.split("-")
        out.append((int(lo), int(hi), node, int(fence)))
    return out


def done(client: redis.Redis, namespace: str, total: int) -> bool:
    s = stats(client, namespace)
    return s.total_count == total and s.completed_count == total


def coverage(runs: list[tuple[int, int, str, int]], max_id: int) -> tuple[set[int], dict[tuple[int, int], int]]:
    """(IDs of 1..max_id never processed, {range: times processed} for ranges run twice+)."""
    seen: dict[tuple[int, int], int] = {}
    for lo, hi, _, _ in runs:
        seen[(lo, hi)] = seen.get((lo, hi), 0) + 1
    covered = set()
    for lo, hi in seen:
        covered.update(range(lo, hi + 1))
    missing = set(range(1, max_id + 1)) - covered
    return missing, {r: n for r, n in seen.items() if n > 1}


def blocks(client: redis.Redis, namespace: str) -> list[tuple[int, int, str, str]]:
    """(lo, hi, node, 'start'|'end') of each block event tests/apps/jobapp.py
    recorded (its ELK_TEST_BLOCK mode), in order."""
    out = []
    for raw in client.lrange(f"{namespace}:blocks", 0, -1):
        rng, node, _fence, ev = raw.decode().split("|")
        lo, hi = rng.split("-")
        out.append((int(lo), int(hi), node, ev))
    return out
