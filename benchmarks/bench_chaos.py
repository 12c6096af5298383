"""Fault injection, long: a job under a seeded nemesis for ``--minutes``, then
the checker's verdict.

    python benchmarks/bench_chaos.py [--minutes 10] [--seed N] [--max-id 200000]
                                     [--size 500] [--sleep 6.0] [--gap 2,6]
    python3 dev.py bench                     # runs every benchmarks/*.py

What runs (tests/chaos/nemesis.py, shared with the chaos test
tests/chaos/test_checker.py): a private ``redis-server`` with AOF
(``appendfsync always``) holds the elk state and the broker; 3 workers of
tests/apps/jobapp.py (prefork, 2 processes, task window 2) reach it each
through a loopback TCP proxy of its own, a ``celery beat`` directly. The
job's max ID grows linearly to ``--max-id`` over the fault period, in
partitions of ``--size`` IDs that take ``--sleep`` seconds each. Every
``--gap`` seconds (uniform, seeded; the seed is printed) the nemesis injects
one fault and heals it before the next: SIGKILL of a worker's process group
(a replacement starts at once), SIGSTOP of a worker past its node expiry,
SIGKILL of the leader's worker, a cut or a stall of one worker's network
past its node expiry, SIGKILL and restart of Redis, a purge of the broker
queues. Then everything is healed, the job finishes, and the checker
(tests/chaos/checker.py) checks the ledger of every processor run (node,
fence, start and end) and the final state: every ID processed; an ID
processed twice only in a partition whose owner was faulted; no two runs
of one partition active at once for more than one heartbeat interval; no
completion accepted from a stale fence; stats equal to a recount.

Settings: tests/apps/jobapp.py's short timings (heartbeat 0.5 s, node expiry
2 s, leader lease 3 s, tick 0.5 s) so that a fault outlasts a node's expiry
within seconds; the partition lease is 20 s (much longer than the node
expiry, as with the defaults: only the node's expiry can fence a cut
worker in time); ``max_retries`` 1000 (an unlucky partition may lose many
owners), no compaction (the checker reads every partition). The run ledger
lives on a second private ``redis-server`` that no fault touches, or on
``$ELK_REDIS_URL`` when set.

Prints the fault log, the figures (faults survived, runs, duplicates, the
largest overlap, the stats' event counters), the time the job took against
the ideal without faults (IDs x sleep / (size x processes)), and the
verdict; exits 1 when the checker finds a problem.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from elk_celery._redis_server import RedisServer  # noqa: E402
from tests.chaos.nemesis import HEARTBEAT, NODE_EXPIRY, SETTINGS, ChaosJob  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="fault period (default 10)")
    ap.add_argument("--seed", type=int, default=None, help="the nemesis's seed (default random)")
    ap.add_argument("--max-id", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=500, help="IDs per partition")
    ap.add_argument("--sleep", type=float, default=6.0, help="seconds each partition takes")
    ap.add_argument("--gap", default="2,6", help="seconds between faults: min,max")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--window", type=int, default=2)
    a = ap.parse_args(argv)
    gap = tuple(float(x) for x in a.gap.split(","))
    if len(gap) != 2 or not 0 < gap[0] <= gap[1]:
        ap.error("--gap wants min,max seconds, 0 < min <= max")

    print(f"bench_chaos: {a.minutes:g} min of faults on {a.max_id:,} IDs "
          f"(heartbeat {HEARTBEAT}s, node expiry {NODE_EXPIRY}s, settings {SETTINGS})", flush=True)
    ledger_server = None
    ledger_url = os.environ.get("ELK_REDIS_URL")
    if not ledger_url:
        ledger_server = RedisServer().start()
        ledger_url = ledger_server.url
    with tempfile.TemporaryDirectory(prefix="elk-chaos-") as tmp:
        job = ChaosJob(Path(tmp), ledger_url, max_id=a.max_id, size=a.size, sleep=a.sleep,
                       workers=a.workers, concurrency=a.concurrency, window=a.window,
                       seed=a.seed, gap=gap,
                       log=lambda line: print(line, flush=True))
        try:
            job.start()
            t0 = time.monotonic()
            verdict = job.run(fault_period=a.minutes * 60, finish_timeout=max(300, a.minutes * 60))
            took = time.monotonic() - t0
        finally:
            job.stop()
            if ledger_server is not None:
                ledger_server.__exit__(None, None, None)
    slots = a.workers * min(a.concurrency, a.window)
    ideal = a.max_id / a.size * a.sleep / slots
    print(f"job: {took:.0f} s from the first run to the check; the ideal without faults, "
          f"all {slots} processes busy from the start: {ideal:.0f} s (the IDs arrive over "
          f"{a.minutes * 60:.0f} s)")
    print(f"seed {job.seed}")
    print(verdict.report(), flush=True)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
