"""Redis memory per partition, by status (hash strategy, the default).

    python benchmarks/bench_memory.py [--partitions 100000] [--size 1000]

On a private ``redis-server``: the leader's planning script creates
``--partitions`` pending partitions of ``--size`` IDs; then every one is
claimed (as a worker claims: status running, a node id and a claim token
like the worker's), completed, and finally folded into the watermark by
compaction. After each step it prints the bytes per partition two ways:
``MEMORY USAGE`` summed over the namespace's keys (exact for what elk
stores), and the server's ``used_memory`` growth over the empty namespace
(includes the allocator's and the key space's overhead).

Then the memory a 500M-row job needs at 1,000 IDs per partition, from the
measured figures: with every partition planned at once (the worst case:
e.g. partitions created through the API), and as the leader plans it (a
demand-paced backlog, ``--backlog`` pending, plus ``elk_keep_completed``
completed partitions kept readable; the rest is in the watermark).

Target (issue 14): <= 300 bytes per pending partition.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from elk_celery._redis_server import RedisServer  # noqa: E402
from elk_celery.compaction import compact_completed  # noqa: E402
from elk_celery.settings import ElkSettings  # noqa: E402
from elk_celery.store.namespace import NamespaceStore  # noqa: E402
from elk_celery.strategies.hash import HashPartitionStrategy  # noqa: E402

TARGET_PENDING = 300
NODE = "celery@worker-host-01:3fa2b6c1"  # a node id as a worker makes it
ROWS, ROWS_PER_PARTITION = 500_000_000, 1_000


def key_bytes(store: NamespaceStore, n: int) -> dict[str, int]:
    """MEMORY USAGE of every key of the namespace (SAMPLES 0: every element),
    the buckets of partitions 0..n-1 summed as 'buckets'."""
    out = {key.rsplit(":", 1)[-1]: store.redis.memory_usage(key, samples=0) or 0
           for key in store.keys.all_fixed()}
    buckets = sorted({store.keys.bucket(pid) for pid in range(n)})
    pipe = store.redis.pipeline(transaction=False)
    for key in buckets:
        pipe.memory_usage(key, samples=0)
    out["buckets"] = sum(b or 0 for b in pipe.execute())
    return out


def namespace_bytes(store: NamespaceStore, n: int) -> int:
    return sum(key_bytes(store, n).values())


def used(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])


def measure(url: str, n: int, size: int) -> dict[str, tuple[float, float]]:
    r = redis.Redis.from_url(url)
    r.flushall()
    settings = ElkSettings(keep_completed=0)
    store = NamespaceStore(HashPartitionStrategy(r, "bench-memory", settings))
    strategy = store.strategy
    base_keys = namespace_bytes(store, n)
    base_by_key = key_bytes(store, n)
    base_used = used(r)
    out: dict[str, tuple[float, float]] = {}

    def step(name: str) -> None:
        out[name] = ((namespace_bytes(store, n) - base_keys) / n, (used(r) - base_used) / n)
        print(f"  {name:<26} {out[name][0]:7.1f} bytes/partition (MEMORY USAGE)  "
              f"{out[name][1]:7.1f} (used_memory growth)", flush=True)
        by_key = {k: (v - base_by_key.get(k, 0)) / n for k, v in key_bytes(store, n).items()}
        print("      " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(by_key.items(), key=lambda kv: -kv[1])
                                  if abs(v) >= 0.5), flush=True)

    store.init_plan(1)
    chunk = 5_000
    for first in range(0, n, chunk):
        k = min(chunk, n - first)
        store.plan_range("", 1 + first * size, (first + k) * size, size)
    step("pending")
    ids = list(range(n))
    tokens = 0
    for start in range(0, n, strategy.BATCH):
        # one token per claim, as run_partition makes them (task id / 12 hex digits)
        for pid in ids[start:start + strategy.BATCH]:
            tokens += 1
            strategy.claim(pid, NODE, token=f"9f1c0d2e-4b7a-4c55-8d1e-{tokens:012x}/{tokens:012x}")
    step("running")
    parts = strategy.get_partitions(ids)
    strategy.complete_many(NODE, [(p.partition_id, p.fence, size) for p in parts])
    step("completed")
    while compact_completed(store, 500, "").compacted:
        pass
    step("compacted (watermark)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--partitions", type=int, default=100_000, help="partitions (default 100,000)")
    p.add_argument("--size", type=int, default=1_000, help="IDs per partition (default 1,000)")
    p.add_argument("--backlog", type=int, default=5_000,
                   help="pending partitions the leader keeps planned, for the estimate (default "
                        "5,000: a few seconds of work for a large cluster)")
    p.add_argument("--redis-url", default=os.environ.get("ELK_BENCH_REDIS_URL"),
                   help="a Redis to FLUSH and use (default: a private redis-server)")
    args = p.parse_args(argv)
    print(f"bench_memory: {args.partitions:,} partitions of {args.size:,} IDs, hash strategy", flush=True)
    if args.redis_url:
        res = measure(args.redis_url, args.partitions, args.size)
    else:
        with RedisServer() as server:
            res = measure(server.url, args.partitions, args.size)
    pending, running, completed = (res[k][1] for k in ("pending", "running", "completed"))
    n = ROWS // ROWS_PER_PARTITION
    keep = ElkSettings().keep_completed
    all_at_once = n * pending
    paced = args.backlog * pending + keep * completed
    print(f"a {ROWS:,}-row job at {ROWS_PER_PARTITION:,} IDs per partition = {n:,} partitions "
          "(used_memory figures):")
    print(f"    every partition planned at once: {all_at_once / 2**20:,.0f} MiB "
          f"({n:,} x {pending:.0f} bytes)")
    print(f"    as the leader plans it: {paced / 2**20:,.1f} MiB ({args.backlog:,} pending x "
          f"{pending:.0f} + elk_keep_completed {keep:,} completed x {completed:.0f}; the rest is "
          f"the watermark); a running partition costs {running:.0f}")
    ok = res["pending"][0] <= TARGET_PENDING and pending <= TARGET_PENDING
    print(f"VERDICT: {'PASS' if ok else 'BELOW TARGET'}: {res['pending'][0]:.0f} / {pending:.0f} "
          f"bytes per pending partition (target <= {TARGET_PENDING})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
