"""A worker cut from Redis by the network (tests/netproxy.py between it and
Redis, for its state and its broker): its processor must stop before
anybody else can own its partition (issue 11, finding 1)."""

from __future__ import annotations


import pytest

from tests.chaos.checker import read_runs
from tests.conftest import wait_for
from tests.integration.helpers import done

pytestmark = pytest.mark.chaos

HEARTBEAT = 0.5  # tests/apps/jobapp.py


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_a_cut_worker_stops_before_its_successor_starts(cluster, redis_client, namespace, proxy,
                                                        fault):
    # the lease (60 s) outlives the node (2 s): only the node's expiry, known
    # at the last renewal that went through, can stop the cut worker in time
    c = cluster(max_id=100, size=100, window=1, sleep=12.0, node_expiry=2,
                partition_lock_expiry=60)
    c.beat()
    c.worker("cut", concurrency=1, redis_url=proxy.url())

    def run_of(prefix):
        return next((r for r in read_runs(redis_client, namespace) if r.worker == prefix), None)
    first = wait_for(lambda: run_of("cut"), 30, lambda: "the cut worker's run\n" + c.logs())
    c.worker("other", concurrency=1)
    wait_for(lambda: "ready" in c.procs[-1].log(), 30, lambda: "the other worker\n" + c.logs())
    proxy.cut() if fault == "cut" else proxy.stall()
    try:
        second = wait_for(lambda: run_of("other"), 30, lambda: "the successor's run\n" + c.logs())
        assert second.fence > first.fence
        wait_for(lambda: done(redis_client, namespace, 1), 40,
                 lambda: "the successor's completion\n" + c.logs())
        first = wait_for(lambda: (r := run_of("cut")) and r.end and r, 20,
                         lambda: "the cut worker's run to end\n" + c.logs())
    finally:
        proxy.heal()
    overlap = first.end - second.start
    print(f"{fault}: the cut run stopped {-overlap:.2f}s before its successor started")
    assert overlap <= HEARTBEAT, (
        f"the cut worker ran on {overlap:.2f}s after its successor started "
        f"(cut run {first}, successor {second})")
    assert not first.done and first.error == "LeaseLost", first
