#!/usr/bin/env python3
"""Gap detection and compaction on a job with a million partitions.

Builds a namespace the way the hash strategy stores it (partition JSON in
the hash, the ``ids`` and ``pending`` indexes, stats, planning meta) with
pipelined writes, then times:

* a full detection (what a new leader runs): chunked scan of every entry;
* an incremental detection with nothing new (every leader tick);
* an incremental detection after the leader planned N more partitions;
* an incremental detection after one partition was deleted in the middle
  (falls back to a full scan), then the next incremental one;
* compaction of a completed prefix.

    python benchmarks/bench_gaps.py [--partitions 1000000] [--redis-url URL]

Uses ``--redis-url``, else ``$ELK_REDIS_URL``, else a private redis-server on
a free port (so the shared one is not loaded with ~0.5 GB), else
redis://127.0.0.1:6379/0. The namespace is deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from elk_celery import HashPartitionStrategy  # noqa: E402
from elk_celery.gaps import GapDetector, compact_completed  # noqa: E402
from elk_celery.planners import RangePlanner  # noqa: E402
from elk_celery.store.connection import redis_from_url  # noqa: E402
from elk_celery.store.namespace import NamespaceStore  # noqa: E402

BATCH = 10_000
# what create.lua / complete.lua store (same fields, same JSON)
PENDING = ('{{"id":{pid},"min":"{lo}","max":"{hi}","opts":"","fence":0,"version":1,'
           '"attempts":0,"items":0,"created":{now},"node":"","status":"pending",'
           '"updated":{now}}}')
DONE = ('{{"id":{pid},"min":"{lo}","max":"{hi}","opts":"","fence":1,"version":3,'
        '"attempts":1,"items":{items},"created":{now},"node":"bench","status":"completed",'
        '"updated":{now}}}')


def populate(store: NamespaceStore, n: int, size: int, completed: int) -> float:
    """n partitions of `size` IDs from 1; the first `completed` are completed."""
    r, k = store.redis, store.keys
    now = int(time.time() * 1000)
    t0 = time.perf_counter()
    for start in range(0, n, BATCH):
        pipe = r.pipeline(transaction=False)
        ids, pending, bodies = {}, {}, {}
        for pid in range(start, min(n, start + BATCH)):
            lo, hi = 1 + pid * size, (pid + 1) * size
            member = f"{pid}:{lo}:{hi}"
            ids[member] = lo
            if pid < completed:
                bodies[str(pid)] = DONE.format(pid=pid, lo=lo, hi=hi, now=now, items=size)
            else:
                pending[member] = now
                bodies[str(pid)] = PENDING.format(pid=pid, lo=lo, hi=hi, now=now)
        pipe.zadd(k.ids, ids)
        if pending:
            pipe.zadd(k.pending, pending)
        pipe.hset(k.partitions, mapping=bodies)
        pipe.execute()
    r.hset(k.stats, mapping={"total": n, "created": n, "pending": n - completed,
                             "completed": completed, "items": completed * size})
    store.set_meta(start_id=1, cursor=n * size + 1, next_pid=n)
    return time.perf_counter() - t0


def timed(fn, repeat: int = 1):
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return result, statistics.median(times), max(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--partitions", type=int,
                    default=int(os.environ.get("ELK_BENCH_GAPS_PARTITIONS") or 1_000_000))
    ap.add_argument("--size", type=int, default=100, help="IDs per partition")
    ap.add_argument("--new", type=int, default=100, help="partitions planned between two checks")
    ap.add_argument("--compact", type=int, default=100_000,
                    help="completed partitions at the low end, compacted at the end")
    ap.add_argument("--repeat", type=int, default=20, help="runs of each incremental check")
    ap.add_argument("--redis-url")
    # `dev.py bench ARGS` hands the same ARGS to every benchmark: skip others' options
    args, unknown = ap.parse_known_args()
    if unknown:
        print(f"(ignoring options meant for other benchmarks: {' '.join(unknown)})")

    server = None
    url = args.redis_url or os.environ.get("ELK_REDIS_URL")
    if not url:
        try:
            from elk_celery._redis_server import RedisServer
            server = RedisServer().start()
            url = server.url
        except Exception as exc:  # noqa: BLE001 - no redis-server binary
            print(f"(no private redis-server: {exc}; using the default Redis)")
            url = "redis://127.0.0.1:6379/0"
    client = redis_from_url(url)
    ns = f"bench-gaps-{uuid.uuid4().hex[:8]}"
    store = NamespaceStore(HashPartitionStrategy(client, ns))
    n, size = args.partitions, args.size
    rows: list[tuple[str, str, str]] = []
    try:
        print(f"Redis {url.split('@')[-1]}, namespace {ns}")
        secs = populate(store, n, size, min(args.compact, n))
        print(f"created {n:,} partitions (pipelined, {BATCH:,} per round trip) in {secs:.1f} s; "
              f"Redis used_memory {client.info('memory')['used_memory_human']}")
        det = GapDetector(store, RangePlanner(max_id=10 ** 15, size=size))

        rep, ms, _ = timed(lambda: det.detect("full"))
        assert rep.gaps == [] and rep.scanned == n, rep
        rows.append(("full detection (new leader)", f"{ms:,.1f} ms", f"read {rep.scanned:,} entries"))

        from elk_celery import gaps as gaps_mod
        step = gaps_mod.SCAN_STEP
        _, ms, worst = timed(lambda: store.scan_gaps(1, n * size, step, True),
                             args.repeat)
        rows.append((f"  one gaps.lua step ({step:,} entries)", f"{ms:.2f} ms (max {worst:.2f})",
                     "longest Redis is blocked by a full check"))

        rep, ms, worst = timed(lambda: det.detect("incremental"), args.repeat)
        assert rep.mode == "incremental" and rep.scanned == 0
        rows.append(("incremental, nothing new", f"{ms:.2f} ms (max {worst:.2f})",
                     f"read {rep.scanned} entries"))

        cursor = n * size + 1
        batch = [{"partition_id": n + i, "min_id": cursor + i * size,
                  "max_id": cursor + (i + 1) * size - 1} for i in range(args.new)]
        store.strategy.create_partitions_if_not_exist(batch)
        store.set_meta(cursor=cursor + args.new * size, next_pid=n + args.new)
        rep, ms, _ = timed(lambda: det.detect("incremental"))
        assert rep.mode == "incremental" and rep.scanned == args.new and rep.gaps == []
        rows.append((f"incremental, {args.new} new partitions", f"{ms:.2f} ms",
                     f"read {rep.scanned} entries"))

        victim = n // 2
        store.strategy.delete_partitions([victim])
        rep, ms, _ = timed(lambda: det.detect("incremental"))
        assert rep.mode == "full" and len(rep.gaps) == 1
        rows.append(("incremental after a deletion (-> full)", f"{ms:,.1f} ms",
                     f"found {rep.gaps[0].min_id}..{rep.gaps[0].max_id}"))
        rep, ms, worst = timed(lambda: det.detect("incremental"), args.repeat)
        assert rep.mode == "incremental" and len(rep.gaps) == 1
        rows.append(("incremental, 1 remembered gap", f"{ms:.2f} ms (max {worst:.2f})",
                     f"read {rep.scanned} entries"))

        done = min(args.compact, n)
        if done:
            before = store.strategy.get_partition_stats()
            t0 = time.perf_counter()
            total, calls, worst_call = 0, 0, 0.0
            while True:
                c0 = time.perf_counter()
                res = compact_completed(store, limit=500)
                worst_call = max(worst_call, (time.perf_counter() - c0) * 1000)
                calls += 1
                total += res.compacted
                if res.compacted < 500:
                    break
            secs = time.perf_counter() - t0
            after = store.strategy.get_partition_stats()
            assert total == done and res.watermark == done * size + 1
            assert (after.total_count, after.completed_count) == (before.total_count,
                                                                   before.completed_count)
            rows.append((f"compaction of {done:,} completed", f"{secs * 1000:,.0f} ms",
                         f"{done / secs:,.0f} partitions/s, {calls} calls of <=500, "
                         f"slowest call {worst_call:.1f} ms"))
            rep, ms, _ = timed(lambda: det.detect("full"))
            rows.append(("full detection after compaction", f"{ms:,.1f} ms",
                         f"read {rep.scanned:,} entries"))
            print(f"Redis used_memory after compaction {client.info('memory')['used_memory_human']}")

        w = max(len(r[0]) for r in rows)
        w2 = max(len(r[1]) for r in rows)
        print(f"\n{'gap detection, ' + format(n, ',') + ' partitions':<{w}}  {'time':<{w2}}  work")
        for name, t, note in rows:
            print(f"{name:<{w}}  {t:<{w2}}  {note}")
        return 0
    finally:
        store.reset()
        client.close()
        if server is not None:
            server.__exit__(None, None, None)


if __name__ == "__main__":
    sys.exit(main())
