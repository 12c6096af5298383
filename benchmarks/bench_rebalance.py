"""Dynamic work rebalancing: job time against the ideal (total work / slots)
with and without splitting, on equal and on skewed partitions, in one run.

    python benchmarks/bench_rebalance.py [--workers 2] [--concurrency 2] [--scale 1.0] [--strict]

One private ``redis-server`` (broker and elk state) and ``--workers``
``celery worker -P prefork -c <concurrency>`` subprocesses serve every
variant; each variant is a job of its own (namespace ``bench-rb-<variant>``)
whose processor walks its range with ``partition.blocks()`` and sleeps each
block's cost (no CPU: the figures measure scheduling, not this machine).

* **(a) equal**: 5 partitions of 5 s on the slots (2 x 2 by default):
  ``default`` (every setting at its default: splitting on) and ``no-split``
  (``split_partitions=False``). The ideal is 25 s / 4 slots = 6.25 s.
* **(b) skewed**: 2,000 IDs in partitions of 100; IDs 1,001-1,200 (10 %) cost
  20x the others (4 ms an ID, 80 ms there): ``fixed`` (no splitting),
  ``default`` (splitting), ``split+target`` (splitting and
  ``target_partition_seconds=1`` with ``max_pending_partitions`` = slots, so
  that sizing reaches the partitions planned later).

Job time: from the creation of the job's first partition to its last
completion (Redis server time, from the partitions' records). Tail: elk's
tail metric (the ``on_tail`` hook, the gauge ``elk_leader_tail_seconds``),
next to the median run time of the job's partitions. Every variant checks
its ledger: each ID walked exactly once (a block of a run counts its IDs).
Default settings first, then the variants, then the ideal.

``--scale`` multiplies every cost (0.2 for a quick check). ``--strict``
exits 1 when a target is missed: (a) default <= 1.25x the ideal, (b)
default <= 1.3x.

This module is also the workers' app (``celery -A bench_rebalance``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from celery import Celery

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import _procs  # noqa: E402 - benchmarks/_procs.py, beside this script
from elk_celery import Elk, Hooks, RangePlanner, partitioned_task  # noqa: E402
from elk_celery.store.namespace import NamespaceStore  # noqa: E402
from elk_celery.strategies import HashPartitionStrategy  # noqa: E402

URL = os.environ.get("ELK_BENCH_REDIS_URL") or "redis://127.0.0.1:6379/15"
SCALE = float(os.environ.get("ELK_BENCH_SCALE") or 1.0)
BLOCK = 5  # IDs per block

#: variant -> (scenario, job settings)
VARIANTS = {
    "a:default": ("equal", {}),
    "a:no-split": ("equal", {"split_partitions": False}),
    "b:default": ("skewed", {}),
    "b:fixed": ("skewed", {"split_partitions": False}),
    "b:split+target": ("skewed", {"target_partition_seconds": 1.0, "max_pending_partitions": 4}),
}
#: scenario -> (IDs, planner size, seconds per ID (fast), slow IDs, slow factor)
SCENARIOS = {
    "equal": (500, 100, 0.05, range(0), 1),
    "skewed": (2000, 100, 0.004, range(1001, 1201), 20),
}
TARGETS = {"equal": 1.25, "skewed": 1.3}

app = Celery("bench_rebalance", broker=URL)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True,
                elk_circuit_breaker_enabled=False)
ledger = redis.Redis.from_url(URL)


class TailRecorder(Hooks):
    """Keeps elk's tail metric where the benchmark reads it."""

    def on_tail(self, namespace: str, *, seconds: float) -> None:
        ledger.set(f"{namespace}:tail", seconds)


Elk(app, hooks=[TailRecorder()])


def cost(scenario: str, lo: int, hi: int) -> float:
    _, _, per_id, slow, factor = SCENARIOS[scenario]
    n_slow = max(0, min(hi, slow.stop - 1) - max(lo, slow.start) + 1) if slow else 0
    return SCALE * per_id * ((hi - lo + 1 - n_slow) + n_slow * factor)


def ns_of(variant: str) -> str:
    return "bench-rb-" + variant.replace(":", "-").replace("+", "-")


def _max_id(ns: str):
    return lambda: int(ledger.get(f"{ns}:max_id") or 0)


def _make(variant: str) -> None:
    scenario, settings = VARIANTS[variant]
    ns = ns_of(variant)
    _, size, *_ = SCENARIOS[scenario]

    @partitioned_task(namespace=ns, name=f"bench.{ns}", bind=True,
                      planner=RangePlanner(max_id=_max_id(ns), size=size), **settings)
    def job(partition, min_id: int, max_id: int, options: dict) -> int:
        t0 = time.time()
        walked = 0
        for lo, hi in partition.blocks(BLOCK):
            time.sleep(cost(scenario, lo, hi))
            ledger.rpush(f"{ns}:blocks", f"{lo}-{hi}")
            walked += hi - lo + 1
        ledger.rpush(f"{ns}:runs", json.dumps([t0, time.time()]))
        return walked


for _v in VARIANTS:
    _make(_v)


# ------------------------------------------------------------------ the bench
def start_workers(n: int, concurrency: int, workdir: Path) -> list[subprocess.Popen]:
    env = {**os.environ, "ELK_BENCH_REDIS_URL": URL, "ELK_BENCH_SCALE": str(SCALE),
           "PYTHONPATH": f"{HERE}{os.pathsep}{ROOT}"}
    return [_procs.start_celery(
        "bench_rebalance", ["worker", "-n", f"w{i}@%h", "-c", str(concurrency), "-P", "prefork",
                            "--without-gossip", "--without-mingle", "-l", "WARNING"],
        cwd=HERE, env=env, log=workdir / f"worker{i}.log") for i in range(n)]


def stop_workers(procs: list[subprocess.Popen]) -> None:
    _procs.stop(procs)


def run_variant(variant: str, timeout: float) -> dict:
    scenario = VARIANTS[variant][0]
    ns = ns_of(variant)
    n_ids = SCENARIOS[scenario][0]
    strategy = HashPartitionStrategy(ledger, ns)
    ledger.set(f"{ns}:max_id", n_ids)
    NamespaceStore(strategy).wake("bench")  # the leader plans at once
    deadline = time.monotonic() + timeout
    while True:
        st = strategy.get_partition_stats()
        if st.total_count and st.completed_count == st.total_count:
            # every ID planned (splits add partitions, not IDs)
            if sum(p.size for p in strategy.get_all_partitions()) == n_ids:
                break
        if time.monotonic() > deadline:
            raise SystemExit(f"{variant}: not done within {timeout} s ({st})")
        time.sleep(0.02)
    parts = strategy.get_all_partitions()
    start = min(p.created_at for p in parts if p.created_at).timestamp()
    end = max(p.updated_at for p in parts if p.updated_at).timestamp()
    walked: dict[int, int] = {}
    for raw in ledger.lrange(f"{ns}:blocks", 0, -1):
        lo, hi = map(int, raw.decode().split("-"))
        for i in range(lo, hi + 1):
            walked[i] = walked.get(i, 0) + 1
    twice = sum(1 for n in walked.values() if n > 1)
    missing = n_ids - len(walked)
    runs = [b - a for a, b in (json.loads(r) for r in ledger.lrange(f"{ns}:runs", 0, -1))]
    tail_deadline = time.monotonic() + 10
    while ledger.get(f"{ns}:tail") is None and time.monotonic() < tail_deadline:
        time.sleep(0.05)  # the leader's next round ends the tail
    tail = ledger.get(f"{ns}:tail")
    total_work = sum(cost(scenario, i, i) for i in range(1, n_ids + 1))
    return {"variant": variant, "scenario": scenario, "job_s": end - start,
            "work_s": total_work, "partitions": len(parts),
            "splits": int(strategy.get_partition_stats().counters.get("splits", 0)),
            "tail_s": float(tail) if tail is not None else None,
            "median_run_s": statistics.median(runs) if runs else 0.0,
            "twice": twice, "missing": missing}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--scale", type=float, default=1.0, help="multiply every cost (default 1)")
    p.add_argument("--timeout", type=float, default=120, help="per variant (default 120 s)")
    p.add_argument("--only", action="append", choices=list(VARIANTS))
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    if not os.environ.get("ELK_BENCH_REDIS_URL"):
        from elk_celery._redis_server import RedisServer
        with RedisServer() as server:
            env = {**os.environ, "ELK_BENCH_REDIS_URL": server.url, "ELK_BENCH_SCALE": str(args.scale)}
            argv = sys.argv[1:] if argv is None else argv
            return subprocess.call([sys.executable, str(Path(__file__).resolve()), *argv], env=env)
    return run(args)


def run(args: argparse.Namespace) -> int:
    slots = args.workers * args.concurrency
    workdir = Path(tempfile.mkdtemp(prefix="elk-bench-rb-"))
    procs = start_workers(args.workers, args.concurrency, workdir)
    results = []
    try:
        deadline = time.monotonic() + 60
        probe = HashPartitionStrategy(ledger, ns_of("a:default")).keys.nodes
        while ledger.zcard(probe) < args.workers:  # every worker registered
            if time.monotonic() > deadline:
                raise SystemExit("workers did not start:\n" + "".join(
                    (workdir / f"worker{i}.log").read_text()[-2000:] for i in range(args.workers)))
            time.sleep(0.1)
        for variant in args.only or list(VARIANTS):
            results.append(run_variant(variant, args.timeout))
            r = results[-1]
            print(f"  ran {variant}: {r['job_s']:.2f} s", flush=True)
    finally:
        stop_workers(procs)
    print(f"\nbench_rebalance: {args.workers} workers x {args.concurrency} slots, "
          f"blocks of {BLOCK} IDs, costs x{SCALE}")
    print(f"{'variant':<16} {'job s':>7} {'ideal s':>8} {'ratio':>6} {'tail s':>7} "
          f"{'median run s':>13} {'parts':>6} {'splits':>7} {'twice':>6} {'missing':>8}")
    ok = True
    for r in results:
        ideal = r["work_s"] / slots
        r["ideal_s"], r["ratio"] = ideal, r["job_s"] / ideal
        tail = "-" if r["tail_s"] is None else f"{r['tail_s']:.2f}"
        print(f"{r['variant']:<16} {r['job_s']:>7.2f} {ideal:>8.2f} {r['ratio']:>6.2f} {tail:>7} "
              f"{r['median_run_s']:>13.2f} {r['partitions']:>6} {r['splits']:>7} "
              f"{r['twice']:>6} {r['missing']:>8}")
        if r["twice"] or r["missing"]:
            ok = False
            print(f"  {r['variant']}: IDs processed twice or never: FAILED")
        if r["variant"].endswith(":default"):
            target = TARGETS[r["scenario"]]
            met = r["ratio"] <= target
            ok = ok and met
            print(f"  {r['variant']}: target <= {target}x the ideal: {'met' if met else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
