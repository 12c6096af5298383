"""The checker of tests/chaos/checker.py catches each kind of violation
(made-up histories; no cluster needed, so this runs in the default suite)."""

from __future__ import annotations

from types import SimpleNamespace

from tests.chaos.checker import Fault, Run, check

HB = 0.5


def part(pid, lo, hi, node, fence, status="completed"):
    return SimpleNamespace(partition_id=pid, min_id=lo, max_id=hi, node_id=node, fence=fence,
                           status=status)


def stats(items, n, completed=None):
    return SimpleNamespace(items_processed=items, completed_count=n if completed is None else completed,
                           total_count=n, stale_writes=0, recovered=0, preempted=0, counters={},
                           failed_count=0)


def run(pid, lo, hi, node, fence, start, end, done=True, error=None, rid=None):
    return Run(rid or f"{node}-{fence}-{start}", pid, lo, hi, node, fence, start, end, done, error)


A, B = "a@h:1", "b@h:2"


def _check(runs, faults=(), parts=None, items=20, n=2):
    parts = parts or [part(1, 1, 10, A, 1), part(2, 11, 20, B, 1)]
    return check(runs, list(faults), parts, stats(items, n), max_id=20, heartbeat=HB, now=100.0)


def clean_runs():
    return [run(1, 1, 10, A, 1, 0, 2), run(2, 11, 20, B, 1, 0, 2)]


def test_a_clean_history_passes():
    v = _check(clean_runs())
    assert v.ok, v.report()
    assert "VERDICT: PASS" in v.report()


def test_ids_never_processed_are_found():
    runs = clean_runs()
    runs[1].done = False
    v = _check(runs)
    assert any("IDs never processed: [(11, 20)]" in p for p in v.problems), v.problems


def test_a_duplicate_without_a_fault_is_found_and_one_with_a_fault_is_not():
    runs = clean_runs() + [run(1, 1, 10, B, 0, 3, 5)]
    v = _check(runs)
    assert any("processed twice" in p for p in v.problems), v.problems
    v = _check(runs, [Fault("cut", "b", 4.0, 8.0)])
    assert v.ok, v.report()
    # a purge takes nobody's partition away: no excuse
    assert not _check(runs, [Fault("purge", None, 4.0, 4.0)]).ok


def test_overlapping_runs_are_found_but_a_paused_one_is_not_active():
    runs = [run(1, 1, 10, A, 1, 0, 10, done=False, error="LeaseLost"),
            run(1, 1, 10, A, 2, 5, 12, rid="succ"), run(2, 11, 20, B, 1, 0, 2)]
    runs[1].node = B
    parts = [part(1, 1, 10, B, 2), part(2, 11, 20, B, 1)]
    v = _check(runs, parts=parts)
    assert any("overlap 5.00s" in p for p in v.problems), v.problems
    # the first run's worker was SIGSTOPped from 4.8 to 9.9: 0.1 s of overlap
    v = _check(runs, [Fault("pause", "a", 4.8, 9.9)], parts=parts)
    assert v.ok, v.report()


def test_a_killed_run_ends_at_the_kill():
    runs = [run(1, 1, 10, A, 1, 0, None, done=False), run(1, 1, 10, B, 2, 3, 5),
            run(2, 11, 20, B, 1, 0, 2)]
    parts = [part(1, 1, 10, B, 2), part(2, 11, 20, B, 1)]
    assert _check(runs, [Fault("kill", "a", 2.9, 2.9)], parts=parts).ok
    # no kill: the run is open until now, overlapping its successor
    v = _check(runs, parts=parts)
    assert any("overlap" in p for p in v.problems), v.problems


def test_a_stale_completion_is_found():
    # stored as completed by A at fence 1, but B had claimed it at fence 2
    runs = clean_runs() + [run(1, 1, 10, B, 2, 3, 5, done=False, error="LeaseLost")]
    v = _check(runs, [Fault("cut", "b", 4.0, 8.0)])
    assert any("a stale completion" in p for p in v.problems), v.problems
    # completed under a fence no run that did the work had
    v = _check(clean_runs(), parts=[part(1, 1, 10, A, 7), part(2, 11, 20, B, 1)])
    assert any("matches 0 run(s)" in p for p in v.problems), v.problems


def test_stats_that_differ_are_found():
    v = _check(clean_runs(), items=30)
    assert any("30 items processed, not 20" in p for p in v.problems), v.problems

    def recount():
        raise AssertionError("pending 1 != 0")
    v = check(clean_runs(), [], [part(1, 1, 10, A, 1), part(2, 11, 20, B, 1)], stats(20, 2),
              max_id=20, heartbeat=HB, now=100.0, recount=recount)
    assert any("differ from a recount: pending 1 != 0" in p for p in v.problems), v.problems


def test_partitions_that_do_not_tile_the_ids_are_found():
    parts = [part(1, 1, 10, A, 1), part(2, 12, 20, B, 1, status="running")]
    v = _check(clean_runs(), parts=parts)
    assert any("starts at 12, expected 11" in p for p in v.problems), v.problems
    assert any("ends running" in p for p in v.problems), v.problems
