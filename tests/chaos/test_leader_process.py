"""The leader process of a prefork worker (elk_celery/leader/process.py):
it dies with its worker's main process, and when it dies alone the main
process leads from a thread instead."""

from __future__ import annotations

import os
import signal

import pytest

from tests.conftest import wait_for
from tests.integration.helpers import coverage, done, ledger

from elk_celery import HashPartitionStrategy
from elk_celery.store.namespace import NamespaceStore

pytestmark = pytest.mark.chaos


def _store(client, namespace) -> NamespaceStore:
    return NamespaceStore(HashPartitionStrategy(client, namespace))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def _leader_pid(store: NamespaceStore, node: str) -> int | None:
    info = next((n.info for n in store.nodes() if n.node_id == node), {})
    return info.get("leader_pid")


def test_leader_process_dies_with_its_main_process(cluster, redis_client, namespace):
    c = cluster(max_id=4_000, size=100, window=2, sleep=0.1)
    c.beat()
    first = c.worker("first", concurrency=2)
    store = _store(redis_client, namespace)
    holder, epoch = wait_for(store.leader, 30, lambda: "a leader\n" + c.logs())
    leader_pid = wait_for(lambda: _leader_pid(store, holder), 10, "the leader process's pid")
    assert leader_pid != first.pid and _alive(leader_pid)
    c.worker("second", concurrency=2)
    # only the main process: no signal reaches the leader process from us
    os.kill(first.pid, signal.SIGKILL)
    wait_for(lambda: not _alive(leader_pid), 10, "the leader process to exit with its parent")

    def new_leader():
        cur = store.leader()
        return cur if cur and cur[0] != holder else None
    _, new_epoch = wait_for(new_leader, 20, lambda: "a new leader\n" + c.logs())
    assert new_epoch > epoch
    wait_for(lambda: done(redis_client, namespace, 40), 90, lambda: "40 partitions\n" + c.logs())
    missing, _ = coverage(ledger(redis_client, namespace), 4_000)
    assert not missing


def test_main_process_leads_when_the_leader_process_dies(cluster, redis_client, namespace):
    c = cluster(max_id=3_000, size=100, window=2, sleep=0.05)
    c.beat()
    w = c.worker("solo", concurrency=2)
    store = _store(redis_client, namespace)
    holder, epoch = wait_for(store.leader, 30, lambda: "a leader\n" + c.logs())
    leader_pid = wait_for(lambda: _leader_pid(store, holder), 10, "the leader process's pid")
    os.kill(leader_pid, signal.SIGKILL)
    wait_for(lambda: "leading from a thread" in w.log(), 10,
             lambda: "the main process to take over\n" + w.log())
    wait_for(lambda: _leader_pid(store, holder) is None, 10, "node info without the dead pid")
    wait_for(lambda: done(redis_client, namespace, 30), 90, lambda: "30 partitions\n" + c.logs())
    # the same node led throughout: no election was needed
    assert store.leader() == (holder, epoch)
    missing, _ = coverage(ledger(redis_client, namespace), 3_000)
    assert not missing
    w.signal(signal.SIGTERM)
    assert w.wait(30) == 0


def test_leader_process_of_a_hung_main_process_steps_down(cluster, redis_client, namespace):
    c = cluster(max_id=3_000, size=100, window=2, sleep=0.05)
    c.beat()
    w = c.worker("hung", concurrency=2)
    store = _store(redis_client, namespace)
    holder, epoch = wait_for(store.leader, 30, lambda: "a leader\n" + c.logs())
    leader_pid = wait_for(lambda: _leader_pid(store, holder), 10, "the leader process's pid")
    os.kill(w.pid, signal.SIGSTOP)  # the main process only: its heartbeats stop
    try:
        # no other node could take over: only the leader process's own check
        # stops it renewing, so the lease lapses (node expiry 2 s + lease 3 s)
        wait_for(lambda: store.leader() is None, 15,
                 lambda: "the hung node's lease to lapse\n" + c.logs())
        assert _alive(leader_pid), "the leader process ran on: it stepped down, it did not die"
        assert "heartbeat is stale" in w.log()
    finally:
        os.kill(w.pid, signal.SIGCONT)
    # back alive: a tick elects it again and the job completes
    wait_for(lambda: done(redis_client, namespace, 30), 90, lambda: "30 partitions\n" + c.logs())
    assert store.leader()[1] > epoch
    missing, _ = coverage(ledger(redis_client, namespace), 3_000)
    assert not missing
