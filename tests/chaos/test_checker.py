"""The fault-injection checker, short: a job of 200,000 IDs on 3 workers and a
beat while the nemesis of tests/chaos/nemesis.py kills, pauses, cuts and
stalls workers, kills the leader's worker, restarts Redis and purges the
broker queue; then tests/chaos/checker.py checks the runs and the final
state. ``ELK_CHAOS_SEED`` replays a run (the seed is printed)."""

from __future__ import annotations

import os

import pytest

from tests.chaos.nemesis import ChaosJob

pytestmark = pytest.mark.chaos


@pytest.mark.timeout(420)
def test_no_guarantee_breaks_under_faults(tmp_path, redis_url):
    seed = os.environ.get("ELK_CHAOS_SEED")
    # partitions (6 s) outlast the node expiry (2 s) and the recovery after it:
    # a cut owner that did not stop in time would overlap its successor
    job = ChaosJob(tmp_path, redis_url, max_id=200_000, size=4000, sleep=6.0,
                   seed=int(seed) if seed else None, gap=(1.0, 3.0))
    try:
        job.start()
        verdict = job.run(fault_period=75, finish_timeout=180)
    finally:
        job.stop()
    print(verdict.report())
    assert len(job.faults) >= 8, "the nemesis did too little to prove anything"
    assert verdict.ok, f"seed {job.seed}\n" + verdict.report() + "\n" + "\n".join(
        f.line(job.origin) for f in job.faults)
