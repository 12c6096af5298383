"""What a real prefork worker reports about itself and says while it drains."""

from __future__ import annotations

import json
import signal

import pytest

from tests.conftest import wait_for

from elk_celery import HashPartitionStrategy, Keys

pytestmark = pytest.mark.slow


def test_node_info_names_the_pool_and_the_drain_is_logged(cluster, redis_client, namespace):
    c = cluster(max_id=400, size=100, window=2, sleep=1.0)
    w = c.worker("w1", concurrency=2, beat=True)
    keys = Keys(namespace)

    def running() -> bool:
        s = HashPartitionStrategy(redis_client, namespace).get_partition_stats()
        return s.running_count >= 1
    wait_for(running, 60, lambda: "a running partition\n" + c.logs())
    (raw,) = redis_client.hvals(keys.nodes_info)
    info = json.loads(raw)
    assert info["pool"] == "prefork" and info["concurrency"] == 2, info

    w.signal(signal.SIGTERM)  # warm shutdown while partitions run
    assert w.wait(60) == 0, c.logs()
    log = w.log()
    assert "elk: draining: node w1@" in log, log[-3000:]
    assert "has no partition running any more" in log
    assert f"elk: {namespace}: released the leader lease" in log
    assert f"elk: {namespace}: node w1@" in log and " left" in log
    assert redis_client.hlen(keys.nodes_info) == 0


def test_an_unknown_elk_key_stops_the_worker_with_one_clear_line(cluster):
    c = cluster(task_widow=2)  # app.conf.elk_task_widow: a typo of elk_task_window
    w = c.worker("typo", concurrency=1)
    assert w.wait(60) == 1, c.logs()
    log = w.log()
    assert log.count("unknown setting(s) elk_task_widow") == 1, log
    assert "elk: invalid settings, worker not started" in log
    assert "Traceback" not in log


def test_an_invalid_per_job_value_stops_the_worker_with_one_clear_line(cluster):
    c = cluster(window=0)  # @partitioned_task(task_window=0): must be >= 1 or None
    w = c.worker("badjob", concurrency=1)
    assert w.wait(60) == 1, c.logs()
    log = w.log()
    assert "elk: invalid settings, worker not started" in log, log[-3000:]
    assert "task_window" in log
    assert "Traceback" not in log, log[-3000:]
