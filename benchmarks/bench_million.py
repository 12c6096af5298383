"""A million partitions end to end, on default settings.

    python benchmarks/bench_million.py [--partitions 1000000] [--workers 2] [--concurrency 2]

One private ``redis-server`` (broker and elk state), ``--workers`` real
``celery worker -P prefork -c <concurrency>`` subprocesses (each runs the
elk bootstep; one of them leads, from its leader process), and a job of
``--partitions`` partitions of 10 IDs whose processor does nothing. Every
elk setting is at its default: the leader plans and sends as demand asks,
and compacts the completed prefix in its full rounds. The benchmark
samples Redis's ``used_memory`` every half second.

Printed at the end: the rate over the whole run (from the first worker
ready to the last completion), the leader's round time (p50 / p99 / max;
recorded by a hook of this app into a Redis list), Redis memory (peak,
and at the end; less the empty server's), and the check: every partition
completed once by the stats, every ID's item counted, no stale write.

This module is also the workers' app (``celery -A bench_million``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from celery import Celery  # noqa: E402

import _procs  # noqa: E402 - benchmarks/_procs.py, beside this script
from elk_celery import Elk, Hooks, RangePlanner, get_elk, partitioned_task  # noqa: E402

URL = os.environ.get("ELK_BENCH_REDIS_URL") or "redis://127.0.0.1:6379/15"
NS = "bench-million"
SIZE = 10
N = int(os.environ.get("ELK_BENCH_PARTITIONS") or 1_000_000)
ROUNDS_KEY = f"{NS}:rounds"  # a leader round's duration (s), one entry per round


class RoundLog(Hooks):
    """Appends each leader round's duration to a Redis list (the leader runs
    in a worker's leader process: this is how the benchmark sees it)."""

    def __init__(self) -> None:
        self._client: redis.Redis | None = None

    def on_leader_tick(self, namespace: str, node: str, *, role: str, epoch: int,
                       duration: float) -> None:
        if namespace == NS and role in ("elected", "renewed"):
            if self._client is None:
                self._client = redis.Redis.from_url(URL)
            self._client.rpush(ROUNDS_KEY, f"{duration:.6f}")


app = Celery("bench_million", broker=URL)
app.conf.update(task_default_queue=NS, broker_connection_retry_on_startup=True,
                worker_hijack_root_logger=False)
Elk(app, hooks=[RoundLog()])


@partitioned_task(namespace=NS, name="bench.million", planner=RangePlanner(max_id=N * SIZE, size=SIZE))
def million_job(min_id: int, max_id: int, options: dict) -> int:
    return max_id - min_id + 1


# ------------------------------------------------------------------ the run

def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def run(args: argparse.Namespace) -> int:
    r = redis.Redis.from_url(URL)
    r.flushdb()
    base = int(r.info("memory")["used_memory"])
    store = get_elk(app).store(NS)
    workdir = Path(tempfile.mkdtemp(prefix="elk-million-"))
    env = {**os.environ, "ELK_BENCH_REDIS_URL": URL, "ELK_BENCH_PARTITIONS": str(args.partitions),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), str(ROOT), os.environ.get("PYTHONPATH")]))}
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        client = redis.Redis.from_url(URL)
        while not stop.wait(0.5):
            samples.append((time.monotonic(), int(client.info("memory")["used_memory"]) - base))

    t_ready = t_end = None
    try:
        for i in range(args.workers):
            log = workdir / f"w{i}.log"
            procs.append((_procs.start_celery(
                "bench_million", ["worker", "-P", "prefork", "-c", str(args.concurrency),
                                  "-n", f"m{i}-{os.getpid()}@%h", "-l", "WARNING",
                                  "--without-mingle", "--without-gossip"],
                cwd=workdir, env=env, log=log), log))
        threading.Thread(target=sample, daemon=True).start()
        deadline = time.monotonic() + args.timeout
        last_print = time.monotonic()
        while True:
            _procs.check_running(procs)
            done = store.strategy.get_partition_stats().completed_count
            if t_ready is None and store.live_node_ids():
                t_ready = time.monotonic()
            if done >= args.partitions:
                t_end = time.monotonic()
                break
            if time.monotonic() > deadline:
                print(f"    gave up after {args.timeout:.0f} s with {done:,} completed", flush=True)
                return 1
            if time.monotonic() - last_print >= args.progress:
                last_print = time.monotonic()
                mem = samples[-1][1] if samples else 0
                print(f"    {done:>9,} completed, Redis {mem / 2**20:6.1f} MiB", flush=True)
            time.sleep(0.2)
    finally:
        stop.set()
        _procs.stop([proc for proc, _ in procs], timeout=30)
    end_mem = int(r.info("memory")["used_memory"]) - base
    rounds = [float(x) for x in r.lrange(ROUNDS_KEY, 0, -1)]
    st = store.strategy.get_partition_stats()
    span = (t_end or 0) - (t_ready or 0)
    peak = max((m for _, m in samples), default=0)
    print(f"  {args.partitions:,} partitions in {span:.1f} s = {args.partitions / span:,.0f} partitions/s "
          f"over the whole run ({args.workers} x `celery worker -P prefork -c {args.concurrency}`)")
    print(f"  leader rounds: {len(rounds):,}, p50 {1e3 * pct(rounds, 0.5):.1f} ms, "
          f"p99 {1e3 * pct(rounds, 0.99):.1f} ms, max {1e3 * max(rounds, default=float('nan')):.1f} ms")
    print(f"  Redis used_memory (less the empty server's): peak {peak / 2**20:.1f} MiB, at the end "
          f"{end_mem / 2**20:.1f} MiB; partitions stored at the end {st.total_count - st.counters.get('compacted', 0):,}"
          f" (compacted {st.counters.get('compacted', 0):,})")
    ok = (st.completed_count == st.total_count == args.partitions
          and st.items_processed == args.partitions * SIZE and st.stale_writes == 0 and st.failed_count == 0)
    print(f"  check: total {st.total_count:,}, completed {st.completed_count:,}, items "
          f"{st.items_processed:,} (= {args.partitions * SIZE:,} IDs), stale writes {st.stale_writes}, "
          f"claims {st.counters.get('claims', 0):,}: {'PASS' if ok else 'FAIL'}")
    import shutil
    shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--partitions", type=int, default=N, help="partitions of the job (default 1,000,000)")
    p.add_argument("--workers", type=int, default=2, help="celery worker processes (default 2)")
    p.add_argument("--concurrency", type=int, default=2, help="prefork pool size each (default 2)")
    p.add_argument("--timeout", type=float, default=7200, help="give up after this many seconds")
    p.add_argument("--progress", type=float, default=30, help="print progress this often, s")
    args = p.parse_args(argv)
    if not os.environ.get("ELK_BENCH_REDIS_URL"):
        from elk_celery._redis_server import RedisServer
        with RedisServer() as server:
            env = {**os.environ, "ELK_BENCH_REDIS_URL": server.url,
                   "ELK_BENCH_PARTITIONS": str(args.partitions)}
            return subprocess.call([sys.executable, str(Path(__file__).resolve()),
                                    *(sys.argv[1:] if argv is None else argv)], env=env)
    print(f"bench_million: a job of {args.partitions:,} no-op partitions of {SIZE} IDs, default "
          f"settings, Redis {URL}", flush=True)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
