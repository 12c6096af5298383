"""Records the completion timeline of a real job for tests/unit/test_eta.py.

Runs tests/apps/jobapp.py on two real ``celery worker`` processes (2 pool
processes each, partitions of 0.4 s; with ``--join``, a third worker joins
after 20 s so the rate changes during the run) and writes the leader's own
progress samples (NamespaceStore.progress_samples: Redis time ms,
partitions finished), the partitions planned over time (what the old ETA
counted) and the job's size to eta_timeline[_join].json beside this file.

    ELK_REDIS_URL=redis://127.0.0.1:PORT/0 .venv/bin/python tests/data/record_eta_timeline.py [--join]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from elk_celery import HashPartitionStrategy  # noqa: E402
from elk_celery.store.namespace import NamespaceStore  # noqa: E402
from tests.conftest import Cluster, cleanup_namespace, unique_namespace  # noqa: E402

PARTITIONS = 300


def main(join: bool) -> None:
    url = os.environ["ELK_REDIS_URL"]
    client = redis.Redis.from_url(url)
    ns = unique_namespace("eta")
    with tempfile.TemporaryDirectory() as tmp:
        c = Cluster(url, ns, Path(tmp), max_id=PARTITIONS * 10, size=10, window=2, sleep=0.4)
        store = NamespaceStore(HashPartitionStrategy(client, ns))
        try:
            c.worker("w1", concurrency=2)
            c.worker("w2", concurrency=2)
            t0 = time.monotonic()
            joined = not join
            planned = []
            while True:
                s = store.strategy.get_partition_stats()
                planned.append((store.server_time_ms(), s.total_count))
                if s.total_count == PARTITIONS and s.completed_count == PARTITIONS:
                    break
                if not joined and time.monotonic() - t0 > 20:
                    c.worker("w3", concurrency=2)
                    joined = True
                if time.monotonic() - t0 > 300:
                    raise SystemExit("the job did not finish in 300 s:\n" + c.logs())
                time.sleep(0.2)
            time.sleep(1.5)  # a last full round records the end
            samples = store.progress_samples()
        finally:
            c.stop()
            cleanup_namespace(client, ns)
    out = Path(__file__).with_name("eta_timeline_join.json" if join else "eta_timeline.json")
    out.write_text(json.dumps({"partitions": PARTITIONS, "samples": samples,
                               "planned": planned[::5]}) + "\n")
    print(f"{len(samples)} samples over {(samples[-1][0] - samples[0][0]) / 1000:.1f} s -> {out}")


if __name__ == "__main__":
    main("--join" in sys.argv[1:])
