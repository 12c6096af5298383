"""State written before the compact encoding (issue 14) still works: one hash
of every partition with long-name JSON records, and never-sent partitions in
`pending` at FRESH + their creation time. It is read as it is, dispatched,
claimed and completed; a partition moves to its bucket, compact, when it
changes. Real Redis, the hash strategy (whose layout changed)."""

from __future__ import annotations

import json

from elk_celery import HashPartitionStrategy
from elk_celery.compaction import compact_completed
from elk_celery.store.connection import text
from elk_celery.store.namespace import NamespaceStore

from tests.invariants import check_invariants

FRESH = 10**13
CREATED = 1796000000000


def _old_record(pid: int, lo: int, hi: int, **fields) -> str:
    rec = {"id": str(pid), "min": str(lo), "max": str(hi), "opts": "", "fence": 0, "version": 1,
           "attempts": 0, "items": "0", "node": "", "status": "pending", "created": CREATED,
           "updated": CREATED}
    rec.update(fields)
    return json.dumps(rec, separators=(",", ":"))


def _write_old_state(s: HashPartitionStrategy) -> None:
    """Four partitions of 10 IDs the way the old scripts stored them: 0 and 1
    never sent, 2 sent (due again later), 3 completed."""
    r, k = s.redis, s.keys
    r.hset(k.partitions, mapping={
        "0": _old_record(0, 1, 10), "1": _old_record(1, 11, 20), "2": _old_record(2, 21, 30),
        "3": _old_record(3, 31, 40, status="completed", node="w0", fence=CREATED, version=3,
                         attempts=1, items="10")})
    r.zadd(k.ids, {"0:1:10": 1, "1:11:20": 11, "2:21:30": 21, "3:31:40": 31})
    r.zadd(k.pending, {"0:1:10": FRESH + CREATED, "1:11:20": FRESH + CREATED + 1,
                       "2:21:30": CREATED + 10**9})
    r.hset(k.stats, mapping={"total": 4, "pending": 3, "completed": 1, "items": 10})
    r.hset(k.meta, mapping={"cursor": 41, "start_id": 1, "next_pid": 4})


def test_old_state_is_read_dispatched_claimed_completed_and_migrated(redis_client, namespace):
    s = HashPartitionStrategy(redis_client, namespace)
    store = NamespaceStore(s)
    _write_old_state(s)
    # read as it is
    parts = {p.partition_id: p for p in s.get_all_partitions()}
    assert [(p.status, p.min_id, p.max_id) for p in parts.values()] == [
        ("pending", 1, 10), ("pending", 11, 20), ("pending", 21, 30), ("completed", 31, 40)]
    assert parts[3].items_processed == 10 and parts[3].node_id == "w0"
    assert [p.partition_id for p in s.get_filtered_partitions("pending")] == [0, 1, 2]
    check_invariants(s)
    # the never-sent ones are dispatched (in planning order); the one sent is not due yet
    assert [pid for pid, _, _ in store.dispatch(limit=10).due] == [0, 1]
    # claimed and completed: the record moves to its bucket, compact
    c = s.claim(0, "w1")
    assert c.ok and (c.min_id, c.max_id) == (1, 10)
    assert redis_client.hget(s.keys.partitions, "0") is None
    raw = text(redis_client.hget(s.keys.bucket(0), "0"))
    assert json.loads(raw)["s"] == "r" and "status" not in raw
    s.complete_partition(0, "w1", c.fence, 10)
    assert s.get_partition(0).status == "completed"
    check_invariants(s)
    # compaction folds the old completed record and the migrated one alike
    s.complete_partition(1, "w1", s.claim(1, "w1").fence, 10)
    assert compact_completed(store, 10).compacted == 2  # 0 and 1; 2 is pending
    assert s.get_partition(3).status == "completed"
    assert s.get_partition_stats().completed_count == 3
    assert [p.partition_id for p in s.get_all_partitions()] == [2, 3]
    # reset removes the old hash too
    store.reset()
    assert not redis_client.exists(s.keys.partitions, s.keys.bucket(0), s.keys.ids)
