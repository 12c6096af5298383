"""One corrupt partition does not stop the job (issue 11, finding 4): real
`celery worker` / `celery beat` subprocesses; a running and a pending
partition get values that are not elk partitions; the leader quarantines
them and plans, recovers and dispatches the rest to the end."""

from __future__ import annotations

import re

import pytest

from tests.conftest import wait_for
from tests.integration.helpers import coverage, ledger, stats

from elk_celery import HashPartitionStrategy, Keys

pytestmark = pytest.mark.slow


def test_the_rest_of_the_job_completes_around_corrupt_partitions(cluster, redis_client, namespace):
    # 30 partitions, but only ~10 planned ahead: the leader must keep planning
    c = cluster(max_id=3_000, size=100, window=1, sleep=0.3)
    c.beat()
    c.worker("q1", concurrency=1)
    c.worker("q2", concurrency=1)
    keys = Keys(namespace)
    wait_for(lambda: redis_client.zcard(keys.leases) >= 1, 30, lambda: "a running partition\n" + c.logs())
    running = int(redis_client.zrange(keys.leases, 0, 0)[0])
    # the newest planned partition, not sent yet (so no worker claims it meanwhile)
    pending = int(redis_client.lrange(keys.fresh, -1, -1)[0].split(b":")[0])
    strategy = HashPartitionStrategy(redis_client, namespace)
    bad = {pid: strategy.get_partition(pid) for pid in (running, pending)}
    for pid in bad:
        redis_client.hset(keys.bucket(pid), str(pid), "not an elk partition")

    def rest_done():
        s = stats(redis_client, namespace)
        return s.total_count == 30 and s.completed_count == 28 and s.quarantined_count == 2
    wait_for(rest_done, 120, lambda: f"28 of 30 partitions and 2 quarantined: {stats(redis_client, namespace)}\n"
             + c.logs())
    assert sorted(pid for pid, _ in strategy.quarantined()) == sorted(bad)
    # every ID outside the two corrupt partitions was processed
    missing, _ = coverage(ledger(redis_client, namespace), 3_000)
    lost = {i for p in bad.values() for i in range(p.min_id, p.max_id + 1)}
    assert missing <= lost, sorted(missing - lost)[:10]
    # stats equal a recount of the partitions that can be read
    parts = strategy.get_all_partitions()
    s = stats(redis_client, namespace)
    assert len(parts) == 28 and s.total_count == len(parts) + s.quarantined_count
    assert s.pending_count == s.running_count == s.claimed_count == s.failed_count == 0
    assert redis_client.zcard(keys.leases) == 0 and redis_client.zcard(keys.pending) == 0
    assert redis_client.llen(keys.fresh) == 0
    logs = "\n".join(p.log() for p in c.procs)
    for pid in bad:  # said once, by whoever found it
        assert len(re.findall(rf"quarantined partition\(?s?\)? \[?{pid}\b", logs)) == 1, logs[-3000:]
    assert "leader round for" not in logs, "a leader round failed"
