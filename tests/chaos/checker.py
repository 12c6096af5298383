"""The fault-injection checker (Jepsen-style) of a job run by
tests/apps/jobapp.py: what the processors did (the run ledger ``<ns>:runs``),
what the nemesis did (tests/chaos/nemesis.py) and the final state in Redis,
checked against elk's guarantees. Shared by tests/chaos/test_checker.py and
benchmarks/bench_chaos.py.

The checks:

* every ID 1..N was processed by a run that did its work, and the stored
  partitions tile 1..N, every one completed;
* a partition processed twice was so only because an owner was faulted: of
  its runs that did their work, one is the accepted completion (its node
  and fence are the stored ones) and each other one ran on a worker hit by
  a fault during the run (or within ``grace`` after it, the completion's
  own time);
* no two runs of one partition were active at once for more than one
  heartbeat interval (a paused worker is not active while stopped; a run
  of a SIGKILLed worker ends at the kill);
* no completion was accepted from a stale fence: the stored fence is the
  highest any run of that partition had, and belongs to a run that did its
  work on the stored node;
* the stats equal a recount (tests/invariants.py), and count N items.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import redis


@dataclass
class Run:
    """One processor run: from its start to its end event (None: it has
    none, e.g. SIGKILLed). Times are wall-clock seconds."""

    run: str
    pid: int
    lo: int
    hi: int
    node: str
    fence: int
    start: float
    end: float | None = None
    done: bool = False
    error: str | None = None

    @property
    def worker(self) -> str:
        """The worker's name (the node id is ``<name>@<host>:<token>``)."""
        return self.node.split("@", 1)[0]


def read_runs(client: redis.Redis, namespace: str) -> list[Run]:
    runs: dict[str, Run] = {}
    ends: dict[str, dict] = {}
    for raw in client.lrange(f"{namespace}:runs", 0, -1):
        ev = json.loads(raw)
        if ev["ev"] == "start":
            runs[ev["run"]] = Run(ev["run"], int(ev["pid"]), int(ev["lo"]), int(ev["hi"]),
                                  ev["node"], int(ev["fence"]), float(ev["t"]))
        else:
            ends.setdefault(ev["run"], ev)  # a repeated end event (see jobapp) is the same end
    for rid, ev in ends.items():
        r = runs.get(rid)
        if r is not None:
            r.end, r.done, r.error = float(ev["t"]), bool(ev["done"]), ev["error"]
    return sorted(runs.values(), key=lambda r: r.start)


#: faults that take a worker away from its partitions (a broker purge does not)
OWNER_FAULTS = {"kill", "kill-leader", "pause", "cut", "stall", "redis-restart"}


@dataclass
class Fault:
    """One fault of the nemesis, from ``t0`` to ``t1`` (wall clock; equal for
    a kill). ``worker`` None: every worker (a Redis restart) or none (a purge)."""

    kind: str
    worker: str | None
    t0: float
    t1: float
    note: str = ""

    def hits(self, worker: str) -> bool:
        return self.kind in OWNER_FAULTS and (self.worker is None or self.worker == worker)

    def line(self, origin: float) -> str:
        who = self.worker or ("all" if self.kind in OWNER_FAULTS else "-")
        span = f"{self.t0 - origin:8.2f}s" + (
            f" .. {self.t1 - origin:8.2f}s" if self.t1 > self.t0 else " " * 12)
        return f"{span}  {self.kind:<13} {who:<6} {self.note}"


@dataclass
class Verdict:
    problems: list[str]
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self) -> str:
        lines = [f"  {k}: {v}" for k, v in self.figures.items()]
        head = "VERDICT: PASS" if self.ok else f"VERDICT: FAIL ({len(self.problems)} problem(s))"
        return "\n".join([head, *lines, *(f"  PROBLEM: {p}" for p in self.problems[:40])])


def _intervals_minus(lo: float, hi: float, holes: Iterable[tuple[float, float]]
                     ) -> list[tuple[float, float]]:
    out = [(lo, hi)]
    for a, b in holes:
        nxt = []
        for x, y in out:
            if b <= x or a >= y:
                nxt.append((x, y))
                continue
            if x < a:
                nxt.append((x, a))
            if b < y:
                nxt.append((b, y))
        out = nxt
    return out


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(y1, y2) - max(x1, x2)) for x1, y1 in a for x2, y2 in b)


def check(runs: list[Run], faults: list[Fault], partitions: list[Any], stats: Any, max_id: int,
          heartbeat: float, now: float, recount: Callable[[], None] | None = None,
          grace: float = 5.0, origin: float = 0.0) -> Verdict:
    """Check one chaos run. ``partitions``/``stats``: the final state
    (strategy.get_all_partitions(), get_partition_stats()); ``recount``
    raises AssertionError when the stats differ from a recount; times in
    the problems are printed from ``origin`` (the fault log's)."""
    problems: list[str] = []

    def span(r: Run) -> str:
        end = "killed" if r.end is None else f"{r.end - origin:.2f}s"
        return f"{r.start - origin:.2f}s..{end}"
    by_pid: dict[int, list[Run]] = defaultdict(list)
    for r in runs:
        by_pid[r.pid].append(r)
    parts = {p.partition_id: p for p in partitions}

    # -- every ID processed, the partitions tile 1..N, all completed
    done_ranges = sorted((r.lo, r.hi) for r in runs if r.done)
    covered, holes = 0, []
    for lo, hi in done_ranges:
        if lo > covered + 1:
            holes.append((covered + 1, lo - 1))
        covered = max(covered, hi)
    if covered < max_id:
        holes.append((covered + 1, max_id))
    holes = [(a, min(b, max_id)) for a, b in holes if a <= max_id]
    if holes:
        problems.append(f"IDs never processed: {holes[:10]}"
                        f"{' ...' if len(holes) > 10 else ''}")
    expect = 1
    for p in sorted(partitions, key=lambda p: p.min_id):
        if p.min_id != expect:
            problems.append(f"stored partitions do not tile 1..{max_id}: partition "
                            f"{p.partition_id} starts at {p.min_id}, expected {expect}")
        expect = p.max_id + 1
        if str(p.status) != "completed":
            problems.append(f"partition {p.partition_id} [{p.min_id}..{p.max_id}] ends "
                            f"{p.status} (node {p.node_id}, fence {p.fence})")
    if expect != max_id + 1:
        problems.append(f"stored partitions end at {expect - 1}, not {max_id}")

    # -- per partition: duplicates, stale completions, overlaps
    kills: dict[str, float] = {}
    pauses: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for f in faults:
        if f.kind in ("kill", "kill-leader") and f.worker:
            kills.setdefault(f.worker, f.t0)
        elif f.kind == "pause" and f.worker:
            pauses[f.worker].append((f.t0, f.t1))

    def faulted(r: Run) -> bool:
        end = r.end if r.end is not None else kills.get(r.worker, now)
        return any(f.hits(r.worker) and f.t0 <= end + grace and f.t1 >= r.start for f in faults)

    def active(r: Run) -> list[tuple[float, float]]:
        end = r.end if r.end is not None else kills.get(r.worker, now)
        return _intervals_minus(r.start, max(r.start, end), pauses.get(r.worker, ()))

    dup_partitions, dup_runs, max_overlap, open_runs = 0, 0, 0.0, 0
    for pid, rs in sorted(by_pid.items()):
        p = parts.get(pid)
        if p is None:
            problems.append(f"runs of partition {pid}, which is not stored")
            continue
        for r in rs:
            if (r.lo, r.hi) != (p.min_id, p.max_id):
                problems.append(f"run {r.run} of partition {pid} processed [{r.lo}..{r.hi}], "
                                f"the partition is [{p.min_id}..{p.max_id}]")
            if r.end is None and r.worker not in kills:
                open_runs += 1
        done = [r for r in rs if r.done]
        accepted = [r for r in done if (r.node, r.fence) == (p.node_id, p.fence)]
        top = max(r.fence for r in rs)
        if str(p.status) == "completed":
            if len(accepted) != 1:
                problems.append(f"partition {pid} completed by {p.node_id} fence {p.fence}, "
                                f"which matches {len(accepted)} run(s) that did the work")
            if top > p.fence:
                problems.append(f"partition {pid}: completion accepted at fence {p.fence} "
                                f"although a run had fence {top} (a stale completion)")
        others = [r for r in done if r not in accepted[:1]]
        if others:
            dup_partitions += 1
            dup_runs += len(others)
        for r in others:
            if not faulted(r):
                problems.append(f"partition {pid} processed twice, and the run {r.run} on "
                                f"{r.worker} (fence {r.fence}, {span(r)}) was hit by no fault")
        for i, a in enumerate(rs):
            for b in rs[i + 1:]:
                ov = _overlap(active(a), active(b))
                max_overlap = max(max_overlap, ov)
                if ov > heartbeat:
                    problems.append(
                        f"partition {pid}: runs on {a.worker} (fence {a.fence}, {span(a)}) and "
                        f"{b.worker} (fence {b.fence}, {span(b)}) overlap {ov:.2f}s > "
                        f"{heartbeat}s")

    # -- stats equal a recount
    if recount is not None:
        try:
            recount()
        except AssertionError as exc:
            problems.append(f"stats differ from a recount: {str(exc)[:300]}")
    if stats.items_processed != max_id:
        problems.append(f"stats count {stats.items_processed} items processed, not {max_id}")
    if not (stats.completed_count == stats.total_count == len(partitions)):
        problems.append(f"stats: {stats.completed_count} completed of {stats.total_count}, "
                        f"{len(partitions)} stored")

    fenced = [r for r in runs if r.error == "LeaseLost"]
    kinds = Counter(f.kind for f in faults)
    return Verdict(problems, {
        "IDs": f"{max_id:,} in {len(partitions)} partitions",
        "faults": ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none",
        "runs": f"{len(runs)} ({sum(r.done for r in runs)} did their work, "
                f"{len(fenced)} stopped by LeaseLost of which "
                f"{sum(not faulted(r) for r in fenced)} on a worker hit by no fault, "
                f"{sum(r.end is None for r in runs)} killed, {open_runs} still open)",
        "processed twice": f"{dup_partitions} partitions ({dup_runs} extra runs), each by a "
                           "faulted owner" if not any("processed twice" in p for p in problems)
                           else f"{dup_partitions} partitions ({dup_runs} extra runs)",
        "max overlap of two runs of a partition": f"{max_overlap:.3f}s (bound {heartbeat}s)",
        "stats": f"stale_writes {stats.stale_writes}, recovered {stats.recovered}, "
                 f"preempted {stats.preempted}, leases_lost "
                 f"{stats.counters.get('leases_lost', 0)}, failed {stats.failed_count}",
    })
