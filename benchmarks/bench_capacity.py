"""Capacity on default settings: does a new user's cluster keep its pool busy?

    python benchmarks/bench_capacity.py [--ms 10,50,500] [--seconds 12]
    python3 dev.py bench                     # runs every benchmarks/*.py

A user's app with **every elk setting at its default** (this module; it sets
no ``elk_*`` key), one private ``redis-server`` as broker and state, one
``celery beat`` started first, then two ``celery worker -P prefork -c 2``
(4 pool processes). For each partition duration (``--ms``, a sleep in the
processor) the job's planner is raised by enough partitions to keep the
pool busy for about ``--seconds``; each processor run records its start and
end. Printed per duration:

* partitions/s over the span (first start to last end) and the pool's
  capacity (4 processes / duration): the ideal;
* efficiency = time the processors were busy / (pool processes x span);
* the same for plain Celery (``acks_late`` tasks sleeping as long, published
  all at once by one producer, on the same workers): the baseline;
* once, the time from the first worker's "ready" to the first partition
  starting (beat already running);
* a retry phase: 240 partitions of 50 ms, 6 of which fail once; how long
  after its backoff (``elk_retry_backoff``, 1 s) each runs again, with the
  rest of the job queued in front of it.

Targets (issue 10): efficiency >= 0.9 at 50 ms and 500 ms, >= 0.75 at 10 ms;
the first partition <= 1 s after the worker is ready; a retried partition
running <= 1 s after its backoff. ``--tuned`` adds a run
with the settings of bench_e2e.py (for comparison; the verdict is on the
default run). ``ELK_BENCH_REDIS_URL`` uses that Redis instead of a private one.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis
from celery import Celery

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import _procs  # noqa: E402 - benchmarks/_procs.py, beside this script
from elk_celery import Elk, RangePlanner, get_elk, partitioned_task  # noqa: E402

URL = os.environ.get("ELK_BENCH_REDIS_URL") or "redis://127.0.0.1:6379/15"
NS = os.environ.get("ELK_BENCH_NS") or "bench-capacity"
SIZE = 100                      # IDs per partition (the planner's size)
MAX_KEY = f"{NS}:max_id"        # the planner reads its max ID here
SLEEP_KEY = f"{NS}:sleep_ms"    # what a processor sleeps, set per phase
RUNS_KEY = f"{NS}:runs"         # "start end" of every processor run (Unix time)
PLAIN_RUNS_KEY = f"{NS}:plain_runs"
TARGETS = {10: 0.75, 50: 0.9, 500: 0.9}
FIRST_TARGET = 1.0
RETRY_TARGET = 1.0  # "within about a second of being due"
WORKERS, CONCURRENCY = 2, 2
#: bench_e2e.py's settings, for --tuned
TUNED = {"elk_leader_election_interval": 1, "elk_task_window": CONCURRENCY,
         "elk_max_pending_partitions": 500, "elk_dispatch_batch": 5000,
         "elk_worker_partition_multiple": 50}

app = Celery("bench_capacity", broker=URL)
app.conf.update(task_default_queue=NS, broker_connection_retry_on_startup=True,
                worker_hijack_root_logger=False)
if os.environ.get("ELK_BENCH_TUNED"):
    app.conf.update(TUNED)
Elk(app)

_sleep: tuple[float, float] = (0.0, -1.0)  # (seconds, read at)


def client() -> redis.Redis:
    return _procs.client(URL)


def sleep_s() -> float:
    """The phase's duration, re-read at most every 0.2 s (phases are seconds long)."""
    global _sleep
    now = time.monotonic()
    if now - _sleep[1] > 0.2:
        _sleep = (float(client().get(SLEEP_KEY) or 0) / 1000, now)
    return _sleep[0]


def _run(key: str) -> None:
    t0 = time.time()
    time.sleep(sleep_s())
    client().rpush(key, f"{t0:.6f} {time.time():.6f}")


FAIL_ONCE_KEY = f"{NS}:fail_once"   # min IDs whose first run fails (the retry phase)
FAILED_KEY = f"{NS}:failed_at"      # min ID -> when its first run failed
RERUN_KEY = f"{NS}:rerun_at"        # min ID -> when its second run started


@partitioned_task(namespace=NS, name="bench.capacity",
                  planner=RangePlanner(max_id=lambda: int(client().get(MAX_KEY) or 0), size=SIZE))
def capacity_job(min_id: int, max_id: int, options: dict) -> int:
    r = client()
    if r.sismember(FAIL_ONCE_KEY, min_id):
        if r.hsetnx(FAILED_KEY, min_id, f"{time.time():.6f}"):
            raise RuntimeError("fails once, to be retried")
        r.hsetnx(RERUN_KEY, min_id, f"{time.time():.6f}")
    _run(RUNS_KEY)
    return max_id - min_id + 1


@app.task(name="bench.capacity_plain", ignore_result=True, acks_late=True)
def plain_sleep(i: int) -> None:
    _run(PLAIN_RUNS_KEY)


# ------------------------------------------------------------------ the run

class Procs:
    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env = workdir, env
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self, name: str, args: list[str]) -> Path:
        log = self.workdir / f"{name}.log"
        self.procs.append((_procs.start_celery("bench_capacity", args, cwd=self.workdir,
                                               env=self.env, log=log), log))
        return log

    def check(self) -> None:
        _procs.check_running(self.procs)

    def stop(self) -> None:
        _procs.stop([proc for proc, _ in self.procs])


def runs(r: redis.Redis, key: str) -> list[tuple[float, float]]:
    return sorted(tuple(map(float, x.split())) for x in r.lrange(key, 0, -1))  # type: ignore[misc]


def summary(rows: list[tuple[float, float]], procs: int, ms: int) -> dict[str, float]:
    if not rows:
        return {"n": 0, "rate": 0.0, "efficiency": 0.0, "span": 0.0}
    span = max(e for _, e in rows) - rows[0][0]
    busy = sum(e - s for s, e in rows)
    return {"n": len(rows), "span": span, "rate": len(rows) / span if span else 0.0,
            "efficiency": busy / (procs * span) if span else 0.0,
            "capacity": procs / (ms / 1000)}


def wait_until(pred: Any, timeout: float, what: str, procs: Procs, poll: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        procs.check()
        if time.monotonic() > deadline:
            print(f"    (gave up after {timeout:.0f}s waiting for {what})", flush=True)
            return False
        time.sleep(poll)
    return True


def is_ready(log: Path) -> bool:
    try:
        return re.search(r"\bready\.", log.read_text(errors="replace")) is not None
    except OSError:
        return False


def run(args: argparse.Namespace, label: str, prefetch: int | None = None) -> dict[str, Any]:
    r = redis.Redis.from_url(URL)
    r.flushdb()
    store = get_elk(app).store(NS)
    workdir = Path(tempfile.mkdtemp(prefix="elk-capacity-"))
    env = {**os.environ, "ELK_BENCH_REDIS_URL": URL, "ELK_BENCH_NS": NS,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    if label == "tuned":
        env["ELK_BENCH_TUNED"] = "1"
    procs = Procs(workdir, env)
    durations = [int(x) for x in args.ms.split(",")]
    out: dict[str, Any] = {"label": label, "phases": {}}
    try:
        # beat first, running a while, as in a deployment where workers come and go
        procs.start("beat", ["beat", "-s", str(workdir / "beat-schedule"), "-l", "INFO"])
        time.sleep(args.beat_head_start)
        first_ms = durations[0]
        r.set(SLEEP_KEY, first_ms)
        n_first = max(8, int(args.seconds * WORKERS * CONCURRENCY * 1000 / first_ms))
        r.set(MAX_KEY, n_first * SIZE)
        pf = [] if prefetch is None else ["--prefetch-multiplier", str(prefetch)]
        logs = [procs.start(f"w{i}", ["worker", "-P", "prefork", "-c", str(CONCURRENCY),
                                      "-n", f"w{i}-{os.getpid()}@%h", "-l", "INFO",
                                      "--without-mingle", "--without-gossip", *pf])
                for i in range(1, WORKERS + 1)]
        ready: dict[Path, float] = {}

        def all_ready() -> bool:  # when each worker's log first says "ready."
            for log in logs:
                if log not in ready and is_ready(log):
                    ready[log] = time.time()
            return len(ready) == len(logs)
        wait_until(all_ready, 60, "the workers to be ready", procs, poll=0.005)
        done_ids = 0
        for k, ms in enumerate(durations):
            r.set(SLEEP_KEY, ms)
            n = n_first if k == 0 else max(8, int(args.seconds * WORKERS * CONCURRENCY * 1000 / ms))
            if k:
                r.incrby(MAX_KEY, n * SIZE)
            target = done_ids + n
            samples: list[int] = []
            if args.sample_queue:
                def sample() -> None:
                    q = get_elk(app).store(NS).keys.queued
                    while store.strategy.get_partition_stats().completed_count < target:
                        samples.append(r.zcard(q))
                        time.sleep(0.002)
                threading.Thread(target=sample, daemon=True).start()
            wait_until(lambda: store.strategy.get_partition_stats().completed_count >= target,
                       args.seconds * 4 + 60, f"{n} partitions of {ms} ms", procs)
            rows = runs(r, RUNS_KEY)
            r.delete(RUNS_KEY)
            done_ids = store.strategy.get_partition_stats().completed_count
            phase = summary(rows, WORKERS * CONCURRENCY, ms)
            if samples:
                empty = sum(1 for x in samples if x == 0) / len(samples)
                print(f"    queued messages: median {sorted(samples)[len(samples) // 2]}, "
                      f"max {max(samples)}, none queued in {100 * empty:.0f} % of samples", flush=True)
            if k == 0 and rows:
                out["first_partition_s"] = rows[0][0] - min(ready.values())
            # the baseline: plain Celery tasks of the same duration, same workers
            r.delete(PLAIN_RUNS_KEY)
            with app.producer_or_acquire() as producer:
                for i in range(n):
                    plain_sleep.apply_async((i,), producer=producer)
            wait_until(lambda: r.llen(PLAIN_RUNS_KEY) >= n, args.seconds * 4 + 60,
                       f"{n} plain tasks of {ms} ms", procs)
            phase["plain"] = summary(runs(r, PLAIN_RUNS_KEY), WORKERS * CONCURRENCY, ms)
            out["phases"][ms] = phase
            print(f"  {label:<8} {ms:>4} ms: elk {phase['n']:>5} partitions, {phase['rate']:7.1f}/s, "
                  f"efficiency {phase['efficiency']:.2f} | plain Celery {phase['plain']['rate']:7.1f}/s, "
                  f"efficiency {phase['plain']['efficiency']:.2f} | ideal {phase['capacity']:.0f}/s",
                  flush=True)
        if args.retry:
            out["retry"] = retry_phase(r, store, procs, done_ids, args)
        c = store.strategy.get_partition_stats().counters
        out["counters"] = {k: c.get(k, 0) for k in ("claims", "dispatched", "deferred_window",
                                                      "deferred_breaker", "stale_writes")}
    finally:
        procs.stop()
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def retry_phase(r: redis.Redis, store: Any, procs: Procs, done_ids: int,
                args: argparse.Namespace) -> dict[str, float]:
    """50 ms partitions keeping the pool busy, a few of which fail once: how
    long after its backoff (the default, 1 s) is each retried partition
    running again, with a backlog in front of it?"""
    n, fail = 240, 6
    r.set(SLEEP_KEY, 50)
    first = int(r.get(MAX_KEY) or 0) + 1
    mins = [first + SIZE * (n // fail) * k + SIZE * 5 for k in range(fail)]
    r.sadd(FAIL_ONCE_KEY, *mins)
    r.incrby(MAX_KEY, n * SIZE)
    wait_until(lambda: store.strategy.get_partition_stats().completed_count >= done_ids + n,
               120, f"{n} partitions of the retry phase", procs)
    failed = {int(k): float(v) for k, v in r.hgetall(FAILED_KEY).items()}
    rerun = {int(k): float(v) for k, v in r.hgetall(RERUN_KEY).items()}
    backoff = get_elk(app).settings.retry_backoff
    late = sorted(rerun[m] - failed[m] - backoff for m in mins if m in rerun and m in failed)
    res = {"retried": len(late), "p50": late[len(late) // 2] if late else float("nan"),
           "max": late[-1] if late else float("nan"), "backoff": backoff}
    print(f"  retry:   {len(late)} partitions failed once among {n} of 50 ms: running again "
          f"{res['p50']:.2f} s (median), {res['max']:.2f} s (max) after their {backoff:.0f} s "
          "backoff was up", flush=True)
    return res


def verdict(res: dict[str, Any]) -> bool:
    ok = True
    for ms, ph in res["phases"].items():
        want = TARGETS.get(ms)
        if want is not None:
            good = ph["efficiency"] >= want
            ok &= good
            print(f"    {ms} ms: efficiency {ph['efficiency']:.2f} (target >= {want}): "
                  f"{'PASS' if good else 'BELOW TARGET'}")
    retry = res.get("retry")
    if retry:
        good = retry["max"] <= RETRY_TARGET
        ok &= good
        print(f"    a retried partition runs {retry['max']:.2f}s (max) after its backoff "
              f"(target <= {RETRY_TARGET}s): {'PASS' if good else 'BELOW TARGET'}")
    first = res.get("first_partition_s")
    if first is not None:
        good = first <= FIRST_TARGET
        ok &= good
        print(f"    first partition {first:.2f}s after the workers were ready "
              f"(target <= {FIRST_TARGET}s): {'PASS' if good else 'BELOW TARGET'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ms", default="10,50,500", help="partition durations, ms (default 10,50,500)")
    p.add_argument("--seconds", type=float, default=12,
                   help="about how long each phase keeps the pool busy (default 12)")
    p.add_argument("--beat-head-start", type=float, default=3.0,
                   help="seconds beat runs before the workers start (default 3)")
    p.add_argument("--tuned", action="store_true", help="also run with bench_e2e.py's settings")
    p.add_argument("--no-retry", dest="retry", action="store_false",
                   help="skip the retry phase (partitions that fail once, then run again)")
    p.add_argument("--prefetch-multiplier", type=int, metavar="N",
                   help="after the default run, one more with the workers started with "
                        "--prefetch-multiplier N (elk and plain Celery alike; elk's default is 1)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--sample-queue", action="store_true",
                   help="sample the count of sent, unclaimed messages every 2 ms (diagnostic)")
    args = p.parse_args(argv)
    if not os.environ.get("ELK_BENCH_REDIS_URL"):
        from elk_celery._redis_server import RedisServer
        with RedisServer() as server:
            env = {**os.environ, "ELK_BENCH_REDIS_URL": server.url}
            return subprocess.call([sys.executable, str(Path(__file__).resolve()),
                                    *(sys.argv[1:] if argv is None else argv)], env=env)
    print(f"bench_capacity: {WORKERS} x `celery worker -P prefork -c {CONCURRENCY}` + `celery beat`, "
          f"partitions of {SIZE} IDs, Redis {URL}", flush=True)
    print("default settings (no elk_* key set):", flush=True)
    res = run(args, "default")
    print("VERDICT (default settings):", flush=True)
    ok = verdict(res)
    print(f"    counters: {res.get('counters')}")
    if args.tuned:
        print("tuned (bench_e2e.py's settings):", flush=True)
        tuned = run(args, "tuned")
        print(f"    counters: {tuned.get('counters')}; first partition "
              f"{tuned.get('first_partition_s', float('nan')):.2f}s")
    if args.prefetch_multiplier is not None:
        n = args.prefetch_multiplier
        print(f"tuned (`celery worker --prefetch-multiplier {n}`, elk settings at their defaults):",
              flush=True)
        run(args, f"pf {n}", prefetch=n)
    print(f"VERDICT: {'PASS' if ok else 'BELOW TARGET'} on default settings")
    return 1 if (args.strict and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())
