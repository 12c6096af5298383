"""Job control on real `celery worker` subprocesses, through the real CLI and
the Python API: pause, resume, cancel, runtime settings, the rate limit."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import holds_for, wait_for
from tests.integration.helpers import coverage, done, ledger, stats

from elk_celery import HashPartitionStrategy
from elk_celery.store.namespace import NamespaceStore

pytestmark = pytest.mark.slow


def _store(client, namespace) -> NamespaceStore:
    return NamespaceStore(HashPartitionStrategy(client, namespace))


def _ok(r) -> str:
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_pause_then_resume_loses_nothing_and_runs_nothing_twice(cluster, redis_client, namespace):
    c = cluster(max_id=3_000, size=100, window=2, sleep=0.3)
    c.worker("w1", concurrency=2)
    c.worker("w2", concurrency=2)
    wait_for(lambda: stats(redis_client, namespace).completed_count >= 4, 60,
             lambda: "4 partitions done\n" + c.logs())
    out = _ok(c.cli("pause", namespace))
    assert f"{namespace}: paused; running partitions finish" in out
    claims = stats(redis_client, namespace).counters.get("claims", 0)
    # the partitions already running finish; nothing else is claimed
    wait_for(lambda: stats(redis_client, namespace).in_flight == 0, 20,
             lambda: "the running partitions to finish\n" + c.logs())
    s = stats(redis_client, namespace)
    assert s.counters.get("claims", 0) == claims
    total = s.total_count
    holds_for(lambda: (stats(redis_client, namespace).counters.get("claims", 0) == claims
                       and stats(redis_client, namespace).total_count == total), 2.0,
              "nothing claimed or planned while paused")
    st = json.loads(_ok(c.cli("status", "-n", namespace, "--json", "--sample", 0)))
    job = st["namespaces"][0]
    assert job["control"] == {"state": "paused", "stop_running": False}
    assert job["eta"]["state"] == "paused"
    assert "state: paused" in _ok(c.cli("status", "-n", namespace, "--sample", 0))

    assert f"{namespace}: running" in _ok(c.cli("resume", namespace))
    wait_for(lambda: done(redis_client, namespace, 30), 90, lambda: "30 partitions\n" + c.logs())
    missing, twice = coverage(ledger(redis_client, namespace), 3_000)
    assert not missing and twice == {}
    assert stats(redis_client, namespace).items_processed == 3_000


def _blocks(client, namespace):
    return [raw.decode().split("|") for raw in client.lrange(f"{namespace}:blocks", 0, -1)]


def test_pause_with_stop_running_hands_partitions_back_at_their_next_block(
        cluster, redis_client, namespace):
    # two partitions of 10 blocks of 0.3 s, one per worker
    c = cluster(max_id=2_000, size=1_000, window=1, sleep=0.3, block=100)
    c.worker("w1", concurrency=1)
    c.worker("w2", concurrency=1)
    wait_for(lambda: sum(b[3] == "end" for b in _blocks(redis_client, namespace)) >= 4, 60,
             lambda: "four blocks done\n" + c.logs())
    # the Python API: get_elk(app).job(ns).pause(stop_running=True)
    r = c.python("from elk_celery import get_elk\n"
                 "print(get_elk(app).job(NS).pause(stop_running=True).state)")
    assert r.returncode == 0 and r.stdout.strip() == "paused", r.stderr
    s = wait_for(lambda: (st := stats(redis_client, namespace)).in_flight == 0
                 and st.pending_count == 2 and st, 20,
                 lambda: "both partitions handed back\n" + c.logs())
    assert s.completed_count == 0
    store = _store(redis_client, namespace)
    parts = store.strategy.get_all_partitions()
    assert all(p.checkpoint is not None and p.checkpoint >= p.min_id for p in parts), parts
    assert all(p.node_id == "" for p in parts)

    r = c.python("from elk_celery import get_elk\nprint(get_elk(app).job(NS).resume().state)")
    assert r.returncode == 0 and r.stdout.strip() == "running", r.stderr
    wait_for(lambda: done(redis_client, namespace, 2), 60, lambda: "both partitions\n" + c.logs())
    starts: dict[str, int] = {}
    for rng, _node, _fence, ev in _blocks(redis_client, namespace):
        if ev == "start":
            starts[rng] = starts.get(rng, 0) + 1
    # every block ran once: the stop came between blocks, the resumed run began after the checkpoint
    assert sorted(starts, key=lambda r: int(r.split("-")[0])) == [
        f"{lo}-{lo + 99}" for lo in range(1, 2_001, 100)]
    assert set(starts.values()) == {1}


def test_cancel_is_for_good_and_the_state_stays_until_reset(cluster, redis_client, namespace):
    c = cluster(max_id=2_000, size=100, window=1, sleep=0.2)
    c.worker("w1", concurrency=1)
    wait_for(lambda: stats(redis_client, namespace).completed_count >= 1, 60,
             lambda: "a partition done\n" + c.logs())
    assert f"{namespace}: cancelled" in _ok(c.cli("cancel", namespace))
    wait_for(lambda: stats(redis_client, namespace).in_flight == 0, 20, "the running one to finish")
    r = c.cli("resume", namespace)
    assert r.returncode != 0 and "cancelled for good" in r.stderr and "reset" in r.stderr
    s = stats(redis_client, namespace)
    assert s.total_count > s.completed_count  # its state is there to inspect
    assert "state: cancelled" in _ok(c.cli("status", "-n", namespace, "--sample", 0))
    _ok(c.cli("reset", "-n", namespace, "--yes"))
    assert _store(redis_client, namespace).control().state == "running"


def test_runtime_settings_apply_within_a_heartbeat_without_restart(cluster, redis_client,
                                                                 namespace):
    c = cluster(max_id=8_000, size=100, window=1, sleep=0.3)
    w = c.worker("w1", concurrency=3)
    wait_for(lambda: stats(redis_client, namespace).completed_count >= 3, 60,
             lambda: "3 partitions done\n" + c.logs())
    assert int(redis_client.get(f"{namespace}:maxrun") or 0) == 1  # window 1 of 3 processes
    # a bad value is refused with the reason, nothing stored
    r = c.cli("set", namespace, "task_window=0")
    assert r.returncode != 0 and "task_window" in r.stderr and "must be an integer >= 1" in r.stderr
    assert _store(redis_client, namespace).runtime_settings() == {}
    out = _ok(c.cli("set", namespace, "task_window=3", "max_retries=5", "partition_size=50"))
    assert f"{namespace}: task_window = 3  (runtime)" in out
    assert f"{namespace}: max_retries = 5  (runtime)" in out
    wait_for(lambda: int(redis_client.get(f"{namespace}:maxrun") or 0) == 3, 20,
             lambda: "three partitions at once on the same worker\n" + c.logs())
    assert w.proc.poll() is None  # no restart
    st = json.loads(_ok(c.cli("status", "-n", namespace, "--json", "--sample", 0)))
    settings = st["namespaces"][0]["settings"]
    assert settings["task_window"] == {"value": 3, "source": "runtime"}
    assert settings["max_retries"] == {"value": 5, "source": "runtime"}
    assert settings["retry_backoff"] == {"value": 0.2, "source": "app"}
    node = next(n for n in st["namespaces"][0]["nodes"] if n["alive"])
    assert node["info"]["task_window"] == 3
    # the Python equivalent; None drops an override
    r = c.python("from elk_celery import get_elk\n"
                 "print(sorted(get_elk(app).job(NS).set(max_retries=None, retry_backoff_max=60)))")
    assert r.returncode == 0 and r.stdout.strip() == (
        "['partition_size', 'retry_backoff_max', 'task_window']"), r.stderr
    r = c.python("from elk_celery import get_elk\nget_elk(app).job(NS).set(retry_backoff=-1)")
    assert r.returncode != 0 and "retry_backoff" in r.stderr and ">= 0" in r.stderr
    wait_for(lambda: (s := stats(redis_client, namespace)).pending_count == 0
             and s.in_flight == 0 and s.total_count > 0, 120, lambda: "the job\n" + c.logs())
    runs = ledger(redis_client, namespace)
    # partitions planned after `elk set` have the new size
    assert {hi - lo + 1 for lo, hi, _, _ in runs} == {100, 50}
    missing, twice = coverage(runs, 8_000)
    assert not missing and twice == {}


def test_the_rate_limit_throttles_claims_cluster_wide(cluster, redis_client, namespace):
    c = cluster(max_id=3_000, size=100, window=2)
    _ok(c.cli("set", namespace, "max_partitions_per_second=4"))
    c.worker("w1", concurrency=2)
    c.worker("w2", concurrency=2)
    wait_for(lambda: done(redis_client, namespace, 30), 90, lambda: "30 partitions\n" + c.logs())
    starts = sorted(json.loads(e)["t"] for e in redis_client.lrange(f"{namespace}:runs", 0, -1)
                    if json.loads(e)["ev"] == "start")
    # a token bucket of one second's worth: at most 4 + 4/s x the time they took
    # (plus one for the clocks of the events, taken after the claims)
    assert len(starts) == 30
    assert len(starts) <= 4 + 4 * (starts[-1] - starts[0]) + 1
    assert stats(redis_client, namespace).counters.get("throttled", 0) > 0
    missing, twice = coverage(ledger(redis_client, namespace), 3_000)
    assert not missing and twice == {}
    print(f"rate limit 4/s: 30 partitions claimed over {starts[-1] - starts[0]:.1f} s "
          f"({29 / (starts[-1] - starts[0]):.1f}/s)")
