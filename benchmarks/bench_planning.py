"""Planning: how fast the leader turns a planner's answer into partitions.

    python benchmarks/bench_planning.py [--partitions 100000] [--repeat 3]

One private ``redis-server``. For each strategy, a job with
``RangePlanner(size=100)`` over ``--partitions`` x 100 IDs and a pending
backlog that wants all of them (``elk_worker_partition_multiple`` =
``--partitions``: the backlog floor is live slots (1) x this multiple); one
``tick_job`` call (election, planning in script calls of up to 5,000
partitions, dispatch of the first messages, gap check) is timed. Printed:
seconds and partitions created per second, the median of ``--repeat`` runs
in fresh namespaces, then the baseline from the same run: bare Redis
writing the same records (one HSET of the partition's JSON and two ZADDs to
the indexes each, pipelined 5,000 at a time, no checks). Target (issue 10):
100,000 partitions planned in <= 2 s.

``ELK_BENCH_REDIS_URL`` uses that Redis instead of a private one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from celery import Celery  # noqa: E402

from elk_celery import Elk, RangePlanner, partitioned_task  # noqa: E402
from elk_celery.leader.tick import tick_job  # noqa: E402

TARGET_S = 2.0


def cleanup(client: redis.Redis, namespace: str) -> None:
    base = f"elk:{{{namespace}}}:"
    ids = [m.decode().split(":", 1)[0] for m in client.zrange(base + "ids", 0, -1)]
    for start in range(0, len(ids), 1000):
        chunk = ids[start:start + 1000]
        client.delete(*[base + f"p:{i}" for i in chunk], *[base + f"lock:{i}" for i in chunk])
    for name in ("stats", "ids", "pending", "leases", "failed", "nodes", "nodes_info",
                 "inflight", "leader", "meta", "breaker", "breaker_fails", "wake", "queued",
                 "corrupt", "partitions"):
        client.delete(base + name)
    client.srem("elk:namespaces", namespace)


def plan_once(url: str, strategy: str, n: int) -> float:
    ns = f"bench-plan-{uuid.uuid4().hex[:8]}"
    app = Celery(f"plan-{ns}", broker=url, set_as_current=False)
    app.conf.update(task_default_queue=ns, elk_strategy=strategy,
                    elk_worker_partition_multiple=n)
    elk = Elk(app)

    @partitioned_task(namespace=ns, name=f"bench.plan.{ns}",
                      planner=RangePlanner(max_id=n * 100, size=100))
    def noop(min_id: int, max_id: int, options: dict) -> int:
        return 0

    job = elk.job(ns)
    try:
        t0 = time.perf_counter()
        out = tick_job(job, node="bench-leader")
        secs = time.perf_counter() - t0
        if out.get("created") != n:
            raise RuntimeError(f"planned {out.get('created')} partitions, not {n}: {out}")
        return secs
    finally:
        cleanup(elk.redis, ns)
        # the messages it sent went to this queue: drop them
        elk.redis.delete(ns)


def bare_once(client: redis.Redis, n: int) -> float:
    ns = f"bench-bare-{uuid.uuid4().hex[:8]}"
    base = f"elk:{{{ns}}}:"
    t0 = time.perf_counter()
    now = int(time.time() * 1000)
    for start in range(0, n, 5000):
        pipe = client.pipeline(transaction=False)
        for pid in range(start, min(n, start + 5000)):
            lo, hi = pid * 100 + 1, pid * 100 + 100
            pipe.hset(base + "partitions", str(pid), json.dumps(
                {"id": pid, "min": str(lo), "max": str(hi), "status": "pending", "fence": 0,
                 "version": 1, "attempts": 0, "items": 0, "created": now, "node": ""}))
            member = f"{pid}:{lo}:{hi}"
            pipe.zadd(base + "pending", {member: now})
            pipe.zadd(base + "ids", {member: lo})
        pipe.execute()
    secs = time.perf_counter() - t0
    client.delete(base + "partitions", base + "pending", base + "ids")
    return secs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--partitions", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--strategies", default="hash,simple")
    p.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = p.parse_args(argv)
    url = os.environ.get("ELK_BENCH_REDIS_URL")
    if not url:
        from elk_celery._redis_server import RedisServer
        with RedisServer() as server:
            env = {**os.environ, "ELK_BENCH_REDIS_URL": server.url}
            return subprocess.call([sys.executable, str(Path(__file__).resolve()),
                                    *(sys.argv[1:] if argv is None else argv)], env=env)
    n = args.partitions
    client = redis.Redis.from_url(url)
    print(f"bench_planning: {n:,} partitions of 100 IDs per run, median of {args.repeat}, "
          f"Redis {client.info()['redis_version']} at {url}", flush=True)
    ok = True
    for strategy in args.strategies.split(","):
        runs = [plan_once(url, strategy, n) for _ in range(args.repeat)]
        med = statistics.median(runs)
        good = med <= TARGET_S
        ok &= good or strategy != "hash"
        print(f"  {strategy:<6} leader (tick_job, default settings but the backlog): {med:6.2f} s = "
              f"{n / med:9,.0f} partitions/s  (runs: {', '.join(f'{r:.2f}' for r in runs)})"
              f"  target <= {TARGET_S} s: {'PASS' if good else 'BELOW TARGET'}", flush=True)
    bare = statistics.median(bare_once(client, n) for _ in range(args.repeat))
    print(f"  baseline: bare Redis, pipelined HSET + 2 ZADD per partition: {bare:6.2f} s = "
          f"{n / bare:9,.0f} partitions/s", flush=True)
    print(f"VERDICT: {'PASS' if ok else 'BELOW TARGET'} (the default strategy, hash)")
    return 1 if (args.strict and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())
