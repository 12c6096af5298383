"""Gap detection, filling and compaction against a real Redis, both strategies."""

from __future__ import annotations

import bisect
import os
import random

import pytest

from elk_celery import StaleLeaderError
import elk_celery.gaps as gaps_mod
from elk_celery.gaps import MAX_REMEMBERED, Gap, GapDetector, compact_all, compact_completed
from elk_celery.planners import RangePlanner
from elk_celery.store.namespace import NamespaceStore
from tests.invariants import check_invariants


#: Random histories per strategy (ELK_GAP_SEEDS=200 for a long soak).
SEEDS = int(os.environ.get("ELK_GAP_SEEDS", "6"))


class DiscretePlanner:
    """Data exists only at the given IDs (holes in the ID space)."""

    def __init__(self, ids, size=10):
        self.ids = sorted(set(ids))
        self.size = size
        self.calls = []

    def partition_size(self):
        return self.size

    def next_max_id(self, start_id, range_size):
        self.calls.append((start_id, range_size))
        hi = start_id + range_size - 1
        i = bisect.bisect_right(self.ids, hi)
        if i and self.ids[i - 1] >= start_id:
            return self.ids[i - 1]
        return start_id - 1


def build(strategy, ranges, *, cursor=None, start_id=1):
    """Partitions 0..n-1 over ``ranges`` plus the planning meta the leader keeps."""
    strategy.create_partitions_if_not_exist(
        [{"partition_id": i, "min_id": lo, "max_id": hi} for i, (lo, hi) in enumerate(ranges)])
    store = NamespaceStore(strategy)
    store.set_meta(cursor=cursor if cursor is not None else max(hi for _, hi in ranges) + 1,
                   start_id=start_id, next_pid=len(ranges))
    return store


def grid(n, size=100, start=1):
    return [(start + i * size, start + (i + 1) * size - 1) for i in range(n)]


def spans(report):
    return [(g.min_id, g.max_id) for g in report.gaps]


def complete(strategy, pid, items=1, node="n1"):
    c = strategy.claim(pid, node)
    assert c.ok, c
    strategy.complete_partition(pid, node, c.fence, items)


def fail_for_good(strategy, pid, node="n1"):
    c = strategy.claim(pid, node)
    assert c.ok, c
    strategy.fail_partition(pid, node, c.fence, "boom", retryable=False)


def both(det):
    """Incremental then full: they must agree; returns the full report."""
    inc = det.detect("incremental")
    full = det.detect("full")
    assert inc.gaps == full.gaps, (inc, full)
    assert [f.partition_id for f in inc.failed] == [f.partition_id for f in full.failed]
    return full


# ------------------------------------------------------------------ detection

def test_contiguous_job_has_no_gaps(strategy):
    store = build(strategy, grid(10))
    det = GapDetector(store)
    first = det.detect("incremental")
    assert first.mode == "full" and first.fallback_reason  # no checkpoint yet
    assert first.gaps == [] and first.ok
    assert (first.start_id, first.end_id, first.checkpoint) == (1, 1000, 1000)
    again = det.detect("incremental")
    assert again.mode == "incremental" and again.scanned == 0 and again.gaps == []


def test_deleted_partitions_are_gaps_and_fill_covers_them(strategy):
    store = build(strategy, grid(10))
    det = GapDetector(store, RangePlanner(max_id=10_000, size=100))
    det.detect("full")
    strategy.delete_partitions([0, 4, 5, 9])  # head, two adjacent, tail
    report = det.detect("incremental")
    # a deletion below the checkpoint makes the incremental check a full one
    assert report.mode == "full" and "deleted" in report.fallback_reason
    assert spans(report) == [(1, 100), (401, 600), (901, 1000)]
    assert all(g.has_data for g in report.gaps)
    assert report.missing_ids == 400

    created = det.fill(report)
    assert sorted((p.min_id, p.max_id) for p in created) == [
        (1, 100), (401, 500), (501, 600), (901, 1000)]
    # ids come from meta next_pid, after the ones the planner used
    assert sorted(p.partition_id for p in created) == [10, 11, 12, 13]
    assert int(store.meta()["next_pid"]) == 14
    assert all(p.status == "pending" for p in created)
    assert both(det).gaps == []
    assert strategy.get_partition_stats().total_count == 10
    check_invariants(strategy)


def test_gap_beyond_the_last_partition_up_to_the_cursor(strategy):
    # planning moved the cursor to 1501 but partitions cover only 1..1000
    store = build(strategy, grid(10), cursor=1501)
    report = both(GapDetector(store))
    assert spans(report) == [(1001, 1500)]
    assert report.gaps[0].has_data is None  # no planner: not classified


def test_gap_before_the_first_partition(strategy):
    store = build(strategy, [(51, 100), (101, 200)], start_id=1)
    assert spans(both(GapDetector(store))) == [(1, 50)]


def test_without_cursor_the_span_ends_at_the_last_partition(strategy):
    strategy.create_partitions_if_not_exist([
        {"partition_id": 0, "min_id": 1, "max_id": 10},
        {"partition_id": 1, "min_id": 21, "max_id": 30}])
    report = GapDetector(NamespaceStore(strategy)).detect("full")
    assert report.end_id == 30 and spans(report) == [(11, 20)]


def test_discrete_data_fills_only_windows_with_data(strategy):
    store = build(strategy, [(1, 100), (101, 200), (201, 300)])
    strategy.delete_partitions([1])
    planner = DiscretePlanner({5, 150, 151, 199, 250}, size=10)
    det = GapDetector(store, planner)
    report = det.detect("full")
    assert report.gaps == [Gap(101, 200, True)]
    created = det.fill(report)
    ranges = sorted((p.min_id, p.max_id) for p in created)
    # windows of 10 from 101; the planner's answer bounds each partition
    assert ranges == [(141, 150), (151, 151), (192, 199)]
    for data_id in (150, 151, 199):
        assert sum(lo <= data_id <= hi for lo, hi in ranges) == 1
    assert all(101 <= lo and hi <= 200 for lo, hi in ranges)
    # what is left uncovered holds no data
    after = both(det)
    assert spans(after) == [(101, 140), (152, 191), (200, 200)]
    assert all(g.has_data is False for g in after.gaps)
    assert det.fill(after) == []
    check_invariants(strategy)


@pytest.mark.parametrize("data, has_data, filled", [
    ({101}, True, [(101, 101)]),          # exactly at the gap's first ID
    ({200}, True, [(191, 200)]),          # exactly at its last ID
    ({101, 200}, True, [(101, 101), (192, 200)]),  # windows restart after 101
    ({100, 201}, False, []),              # just outside, on both sides
    (set(), False, []),
])
def test_gap_boundaries(strategy, data, has_data, filled):
    store = build(strategy, grid(3))
    strategy.delete_partitions([1])  # gap 101..200
    planner = DiscretePlanner(data | {1, 300}, size=10)
    det = GapDetector(store, planner)
    report = det.detect("full")
    assert report.gaps == [Gap(101, 200, has_data)]
    assert (report.with_data if has_data else report.empty) == report.gaps
    assert sorted((p.min_id, p.max_id) for p in det.fill(report)) == filled


def test_has_data_uses_the_first_id_inclusive(strategy):
    det = GapDetector(NamespaceStore(strategy), DiscretePlanner({42}))
    assert det.has_data(42, 42) and det.has_data(42, 100) and det.has_data(1, 42)
    assert not det.has_data(43, 100) and not det.has_data(1, 41)


def test_failed_partitions_are_reported_until_retried(strategy):
    store = build(strategy, grid(5))
    fail_for_good(strategy, 2)
    det = GapDetector(store)
    report = both(det)
    assert report.gaps == [] and not report.ok
    assert report.failed_total == 1
    (f,) = report.failed
    assert (f.partition_id, f.min_id, f.max_id, f.error) == (2, 201, 300, "boom")
    strategy.retry_failed()
    assert both(det).failed == [] and det.detect().failed_total == 0


def test_incremental_reads_only_new_partitions(strategy):
    store = build(strategy, grid(200, size=10))
    det = GapDetector(store)
    assert det.detect("full").scanned == 200
    # the leader plans five more, one of them lost
    strategy.create_partitions_if_not_exist(
        [{"partition_id": 200 + i, "min_id": 2001 + 10 * i, "max_id": 2010 + 10 * i}
         for i in (0, 1, 3, 4)])
    store.set_meta(cursor=2051)
    inc = det.detect("incremental")
    assert inc.mode == "incremental" and inc.scanned == 4
    assert spans(inc) == [(2021, 2030)]
    # the remembered gap is re-checked by its own range only
    again = det.detect("incremental")
    assert again.scanned == 0 and spans(again) == [(2021, 2030)]
    assert det.detect("full").scanned == 204


def test_remembered_gap_filled_by_someone_else_disappears(strategy):
    store = build(strategy, grid(5))
    strategy.delete_partitions([2])
    det = GapDetector(store)
    det.detect("full")
    strategy.create_partitions_if_not_exist([
        {"partition_id": 50, "min_id": 201, "max_id": 250}])
    inc = det.detect("incremental")
    assert inc.mode == "incremental" and spans(inc) == [(251, 300)]
    assert both(det).gaps == [Gap(251, 300)]


def test_many_gaps_more_than_remembered(strategy):
    n = MAX_REMEMBERED + 50
    store = build(strategy, grid(2 * n, size=2))
    strategy.delete_partitions(range(1, 2 * n, 2))
    det = GapDetector(store)
    full = det.detect("full")
    assert len(full.gaps) == n
    assert full.checkpoint == full.gaps[MAX_REMEMBERED].min_id - 1
    inc = det.detect("incremental")
    assert inc.mode == "incremental" and inc.gaps == full.gaps


def test_planner_error_leaves_gaps_unclassified(strategy):
    class Broken:
        def partition_size(self):
            return 10

        def next_max_id(self, start_id, range_size):
            raise RuntimeError("database down")

    store = build(strategy, grid(3))
    strategy.delete_partitions([1])
    report = GapDetector(store, Broken()).detect("full")
    assert report.gaps == [Gap(101, 200, None)]
    assert "database down" in report.planner_error


def test_scan_in_redis_and_in_python_agree(strategy, monkeypatch):
    rnd = random.Random(7)
    ranges, lo = [], 1
    for _ in range(300):
        lo += rnd.choice([0, 0, 0, 1, 5])  # some holes
        size = rnd.randint(1, 9)
        ranges.append((lo, lo + size - 1))
        lo += size
    store = build(strategy, ranges, cursor=lo + 20)
    det = GapDetector(store)
    in_redis = det.detect("full")
    monkeypatch.setattr(gaps_mod, "SCAN_STEP", 7)  # many small steps
    stepped = det.detect("full")
    monkeypatch.setattr(gaps_mod, "EXACT_IN_LUA", 0)  # force the Python walk
    monkeypatch.setattr(gaps_mod, "SCAN_CHUNK", 11)
    in_python = det.detect("full")
    assert in_redis.gaps == stepped.gaps == in_python.gaps
    assert spans(in_redis) == expected_gaps(1, lo + 19, ranges)
    assert in_redis.scanned == stepped.scanned == in_python.scanned == 300


def test_ids_beyond_2_53_are_exact(strategy):
    """Detection is exact beyond 2^53 (the walk runs in Python there).
    (Filling is not tested here: create.lua's overlap check compares Lua
    doubles, so adjacent ranges that far up are refused as overlapping.)"""
    base = 2 ** 60
    ranges = [(base + 1 + i * 1000, base + (i + 1) * 1000) for i in range(6)]
    store = build(strategy, ranges, start_id=base + 1)
    strategy.delete_partitions([1, 2, 5])
    report = both(GapDetector(store))
    assert spans(report) == [(base + 1001, base + 3000), (base + 5001, base + 6000)]


def test_bad_mode(strategy):
    with pytest.raises(ValueError):
        GapDetector(NamespaceStore(strategy)).detect("quick")


def test_nothing_planned_writes_nothing(strategy):
    store = NamespaceStore(strategy)
    report = GapDetector(store).detect("incremental")
    assert report.gaps == [] and report.end_id < report.start_id
    assert store.meta() == {}


# ------------------------------------------------------------------- filling

def test_fill_is_fenced_by_the_leader_epoch(strategy):
    store = build(strategy, grid(4))
    strategy.delete_partitions([1])
    det = GapDetector(store, RangePlanner(max_id=400, size=100))
    report = det.detect("full")
    epoch = store.leader_acquire("leader-1").epoch
    with pytest.raises(StaleLeaderError):
        det.fill(report, epoch=epoch + 1)
    assert det.detect("full").gaps == report.gaps  # nothing written
    created = det.fill(report, epoch=epoch)
    assert [(p.min_id, p.max_id) for p in created] == [(101, 200)]
    assert det.detect("full").gaps == []


def test_fill_skips_a_gap_covered_meanwhile(strategy):
    store = build(strategy, grid(4))
    strategy.delete_partitions([1, 3])
    det = GapDetector(store, RangePlanner(max_id=400, size=50))
    report = det.detect("full")
    # someone else covers part of the first gap after the check
    strategy.create_partitions_if_not_exist([{"partition_id": 90, "min_id": 151, "max_id": 160}])
    created = det.fill(report)
    assert det.conflicts == [report.gaps[0]]
    assert sorted((p.min_id, p.max_id) for p in created) == [(301, 350), (351, 400)]
    assert spans(both(det)) == [(101, 150), (161, 200)]
    check_invariants(strategy)


def test_fill_needs_a_planner(strategy):
    store = build(strategy, grid(3))
    strategy.delete_partitions([1])
    det = GapDetector(store)
    with pytest.raises(Exception, match="planner"):
        det.fill(det.detect("full"))


# ----------------------------------------------------------------- compaction

def test_compaction_keeps_stats_and_moves_the_watermark(strategy):
    store = build(strategy, grid(10))
    for pid in range(6):
        complete(strategy, pid, items=100)
    complete(strategy, 7, items=100)  # completed, but after a running one
    strategy.claim(6, "n1")
    before = strategy.get_partition_stats()

    res = compact_completed(store)
    assert (res.compacted, res.watermark) == (6, 601)
    stats = strategy.get_partition_stats()
    assert (stats.total_count, stats.completed_count, stats.items_processed, stats.running_count) \
        == (before.total_count, before.completed_count, before.items_processed, 1)
    assert stats.counters["compacted"] == 6
    assert stats.completion_rate == before.completion_rate
    assert store.meta()["watermark"] == "601"
    assert [p.partition_id for p in strategy.get_all_partitions()] == [6, 7, 8, 9]
    assert strategy.get_partition(0) is None
    if strategy.kind.value == "simple":
        assert not strategy.redis.exists(strategy.keys.partition(0))
    # nothing more until partition 6 completes
    assert compact_completed(store).compacted == 0
    det = GapDetector(store)
    report = both(det)
    assert report.gaps == [] and report.watermark == 601
    c = strategy.get_partition(6)
    strategy.complete_partition(6, "n1", c.fence, 100)
    assert compact_completed(store) .compacted == 2
    assert store.meta()["watermark"] == "801"
    assert both(det).gaps == []


def test_compaction_is_bounded_per_call(strategy):
    store = build(strategy, grid(25, size=4))
    for pid in range(25):
        complete(strategy, pid)
    assert compact_completed(store, limit=10).compacted == 10
    assert compact_all(store, limit=5, budget_s=0).compacted == 5  # one call, then out of time
    assert compact_completed(store, limit=5).watermark == 81
    res = compact_all(store, limit=10)
    assert (res.compacted, res.watermark) == (5, 101)
    assert strategy.redis.zcard(strategy.keys.ids) == 0
    stats = strategy.get_partition_stats()
    assert (stats.total_count, stats.completed_count, stats.counters["compacted"]) == (25, 25, 25)
    assert GapDetector(store).detect("full").gaps == []


def test_compaction_stops_at_a_gap_unless_it_holds_no_data(strategy):
    store = build(strategy, grid(6))
    for pid in range(6):
        complete(strategy, pid)
    strategy.delete_partitions([2])  # hole 201..300
    assert compact_completed(store).watermark == 201
    # with data in the hole, it stays a gap and blocks the watermark
    det = GapDetector(store, DiscretePlanner({250}))
    assert det.detect("full").gaps == [Gap(201, 300, True)]
    assert compact_completed(store).compacted == 0
    # a planner that finds no data there lets compaction jump the hole
    det = GapDetector(store, DiscretePlanner({1, 600}))
    assert det.detect("full").gaps == [Gap(201, 300, False)]
    res = compact_completed(store)
    assert (res.compacted, res.watermark) == (3, 601)
    assert both(det).gaps == []
    assert store.meta()["gaps"] == "[]"


def test_compaction_keeps_big_ids_exact(strategy):
    base = 2 ** 60
    ranges = [(base + 1 + i * 1000, base + (i + 1) * 1000) for i in range(3)]
    store = build(strategy, ranges, start_id=base + 1)
    for pid in range(3):
        complete(strategy, pid)
    res = compact_completed(store)
    assert res.compacted == 3 and res.watermark == base + 3001
    assert store.meta()["watermark"] == str(base + 3001)


def test_compaction_is_fenced_by_the_leader_epoch(strategy):
    store = build(strategy, grid(2))
    complete(strategy, 0)
    epoch = store.leader_acquire("leader-1").epoch
    with pytest.raises(StaleLeaderError):
        compact_completed(store, epoch=epoch + 1)
    assert compact_completed(store, epoch=epoch).compacted == 1


# --------------------------------------------- incremental == full (random)

def expected_gaps(lo, hi, ranges):
    out, expected = [], lo
    for a, b in sorted(ranges):
        if b < expected:
            continue
        if a > expected:
            out.append((expected, min(a - 1, hi)))
        expected = max(expected, b + 1)
        if expected > hi:
            break
    if expected <= hi:
        out.append((expected, hi))
    return [(a, b) for a, b in out if a <= b]


@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_histories_incremental_equals_full(strategy, seed):
    """Plan, lose, delete, fill, complete and compact at random; after every
    step incremental and full detection agree with a recount."""
    rnd = random.Random(seed)
    store = NamespaceStore(strategy)
    store.set_meta(start_id=1, cursor=1, next_pid=0)
    data = set(rnd.sample(range(1, 4000), 600))
    det = GapDetector(store, DiscretePlanner(data, size=rnd.choice([3, 7, 20])))
    checker = GapDetector(store, det.planner)  # a second detector: same truth
    cursor = 1
    for step in range(40):
        op = rnd.random()
        if op < 0.45 and cursor < 3800:  # the leader plans a batch; some creates get lost
            batch = []
            for _ in range(rnd.randint(1, 6)):
                size = rnd.randint(1, 30)
                if rnd.random() > 0.2:
                    pid = int(store.redis.hincrby(store.keys.meta, "next_pid", 1)) - 1
                    batch.append({"partition_id": pid, "min_id": cursor, "max_id": cursor + size - 1})
                cursor += size
            strategy.create_partitions_if_not_exist(batch)
            store.set_meta(cursor=cursor)
        elif op < 0.6:  # an operator deletes partitions
            members = strategy.redis.zrange(strategy.keys.ids, 0, -1)
            if members:
                victims = rnd.sample(members, min(len(members), rnd.randint(1, 3)))
                strategy.delete_partitions(int(m.split(b":")[0]) for m in victims)
        elif op < 0.75:  # fill
            det.fill(det.detect(rnd.choice(["incremental", "full"])))
        else:  # some work completes; the prefix is compacted
            pending = [p for p in strategy.get_filtered_partitions(status="pending")]
            for p in sorted(pending, key=lambda p: p.min_id)[:rnd.randint(0, 8)]:
                complete(strategy, p.partition_id)
            compact_completed(store, limit=rnd.randint(1, 20))

        inc = det.detect("incremental")
        full = checker.detect("full")
        assert inc.gaps == full.gaps, (step, inc, full)
        meta = store.meta()
        low = int(meta.get("watermark") or 1)
        ranges = [(p.min_id, p.max_id) for p in strategy.get_all_partitions()]
        assert spans(full) == expected_gaps(low, cursor - 1, ranges), step
        for g in full.gaps:  # the planner's answer, boundaries included
            assert g.has_data == any(g.min_id <= i <= g.max_id for i in data)
