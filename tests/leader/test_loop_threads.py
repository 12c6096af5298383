"""The leader loop's helper threads: the outbox (leader/outbox.py), to which a
round hands its picks before it ends, and the upkeep (leader/upkeep.py), which
checks gaps and compacts beside the rounds. Real Redis for the state and the
broker, a real Celery app; the broker behind the loopback proxy where
publishing must fail."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from urllib.parse import urlparse

import pytest
from celery import Celery

from elk_celery import Elk, Hooks, RangePlanner, partitioned_task
from elk_celery.leader.loop import LeaderLoop
from elk_celery.leader.outbox import Outbox
from elk_celery.leader.upkeep import Upkeep
from elk_celery.leader.tick import meter_of, tick_job
from tests.conftest import holds_for, wait_for


def make_job(redis_url: str, namespace: str, broker: str | None = None, max_id: int = 1_000,
             hooks: list | None = None, **conf):
    app = Celery(f"app-{namespace}", broker=broker or redis_url, set_as_current=False)
    app.conf.update(task_default_queue=namespace, broker_connection_retry_on_startup=True,
                    elk_redis_url=redis_url, elk_leader_queue=f"{namespace}.leader",
                    task_publish_retry=False, broker_connection_timeout=1,
                    elk_heartbeat_interval=0.5, elk_leader_election_interval=0.5, **conf)
    elk = Elk(app, hooks=hooks)

    @partitioned_task(namespace=namespace, planner=RangePlanner(max_id=max_id, size=10),
                      name=f"outboxed-{namespace}")
    def outboxed(min_id, max_id, options):
        return 0

    return elk, elk.job(namespace)


def queued_partition_ids(client, queue: str) -> list[int]:
    """The partition ids of this queue's task messages for its own job (kombu's
    Redis transport: a list of JSON envelopes whose body is base64 JSON). The
    name tells them apart: like ``shared_task``, ``@partitioned_task`` registers
    on every app, so other tests' jobs send to this app's default queue too."""
    ids = []
    for raw in client.lrange(queue, 0, -1):
        envelope = json.loads(raw)
        if envelope["headers"]["task"] == f"outboxed-{queue}":
            ids.append(json.loads(base64.b64decode(envelope["body"]))[1]["partition_id"])
    return ids


@pytest.fixture
def queue_cleanup(redis_client, namespace):
    yield
    redis_client.delete(namespace)


def test_a_round_with_an_outbox_hands_its_picks_over_and_they_are_published(
        redis_url, redis_client, namespace, queue_cleanup):
    elk, job = make_job(redis_url, namespace)
    outbox = Outbox(job)
    try:
        out = tick_job(job, node="L", outbox=outbox)
        assert out["role"] == "elected" and out["dispatched"] > 0
        assert outbox.flush(10), "the outbox did not publish within 10 s"
        ids = queued_partition_ids(redis_client, namespace)
        # one message per partition the round picked: no more, none twice
        assert len(ids) == len(set(ids)) == out["dispatched"]
        assert set(ids) <= {p.partition_id for p in job.store.strategy.get_all_partitions()}
    finally:
        outbox.close()


def test_close_publishes_what_is_still_queued(redis_url, redis_client, namespace, queue_cleanup):
    elk, job = make_job(redis_url, namespace)
    outbox = Outbox(job)
    outbox.put([(k, 10 * k + 1, 10 * k + 10) for k in range(1, 301)], {}, time.perf_counter())
    outbox.close(timeout=30)
    assert sorted(queued_partition_ids(redis_client, namespace)) == list(range(1, 301))
    assert outbox.pending == 0


def test_a_broker_that_refuses_fails_the_batch_visibly_and_the_outbox_goes_on(
        redis_url, redis_client, namespace, queue_cleanup, caplog, proxy):
    db = int((urlparse(redis_url).path or "/0").lstrip("/") or 0)
    # the broker through the proxy; the state direct
    elk, job = make_job(redis_url, namespace, broker=proxy.url(db))
    outbox = Outbox(job)
    try:
        outbox.put([(1, 1, 10)], {}, time.perf_counter())
        assert outbox.flush(10)
        assert queued_partition_ids(redis_client, namespace) == [1]
        proxy.cut()
        with caplog.at_level(logging.WARNING, logger="elk_celery.leader"):
            outbox.put([(2, 11, 20), (3, 21, 30)], {}, time.perf_counter())
            assert outbox.flush(60), "a refused publish must end, not hang the outbox"
        assert any("publishing 2 task message(s) failed" in r.getMessage()
                   for r in caplog.records), [r.getMessage() for r in caplog.records]
        assert outbox.pending == 0
        proxy.heal()
        outbox.put([(4, 31, 40)], {}, time.perf_counter())
        assert outbox.flush(30)
        assert 4 in queued_partition_ids(redis_client, namespace)
    finally:
        outbox.close()


def test_the_leader_loop_publishes_through_its_outbox(redis_url, redis_client, namespace,
                                                      queue_cleanup):
    elk, job = make_job(redis_url, namespace)
    loop = LeaderLoop(elk, "L", namespaces=[namespace])
    loop.start()
    try:
        wait_for(lambda: queued_partition_ids(redis_client, namespace), 10,
                 "a task message from the loop")
    finally:
        loop.stop()
    ids = queued_partition_ids(redis_client, namespace)
    assert len(ids) == len(set(ids))
    stats = job.store.strategy.get_partition_stats()
    assert stats.total_count > 0


class GapThreads(Hooks):
    """Which thread ran each gap check, and what it found."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.checks: list[tuple[str, int, int]] = []

    def on_gaps(self, namespace: str, *, found: int, filled: int, mode: str) -> None:
        if namespace == self.namespace:  # the app also leads other tests' jobs
            self.checks.append((threading.current_thread().name, found, filled))


def test_the_leader_loop_checks_gaps_beside_its_rounds(redis_url, redis_client, namespace,
                                                       queue_cleanup):
    """A loop-led job: a partition deleted under the leader comes back, found
    and filled by the upkeep thread, not by a round."""
    seen = GapThreads(namespace)
    elk, job = make_job(redis_url, namespace, max_id=40, hooks=[seen])
    loop = LeaderLoop(elk, "L", namespaces=[namespace])
    loop.start()
    try:
        strategy = job.store.strategy
        wait_for(lambda: strategy.get_partition_stats().total_count == 4, 10, "4 partitions")
        victim = max(p.partition_id for p in strategy.get_all_partitions())
        strategy.delete_partition(victim)
        wait_for(lambda: any(filled for _, _, filled in seen.checks), 10,
                 "the deleted partition's range planned again by a gap check")
    finally:
        loop.stop()
    assert strategy.get_partition_stats().total_count == 4
    assert {name for name, _, _ in seen.checks} == {f"elk-upkeep-{namespace}"}


def test_an_upkeep_pass_under_a_stale_epoch_writes_nothing_and_the_thread_goes_on(
        redis_url, redis_client, namespace, queue_cleanup):
    """A pass asked for by a round whose leader was deposed meanwhile: its
    fenced compaction is refused, nothing is folded, and the next pass (the
    new epoch) compacts. The refused pass is said through ``on_stale_leader``."""
    from elk_celery.leader.tick import plan, upkeep_pass

    class Stale(Hooks):
        def __init__(self) -> None:
            self.seen: list[tuple[str, str, int]] = []

        def on_stale_leader(self, namespace, node, epoch):
            self.seen.append((namespace, node, epoch))

    stale = Stale()
    elk, job = make_job(redis_url, namespace, max_id=100, elk_keep_completed=0, hooks=[stale])
    store, strategy = job.store, job.store.strategy
    old = store.leader_acquire("L").epoch
    plan(job, old, 10, None)
    for p in strategy.get_all_partitions():
        claimed = strategy.acquire_partition(p.partition_id, "w")
        strategy.complete_partition(p.partition_id, "w", claimed.fence, 10)
    store.leader_release("L")  # stepped down: M is elected with a newer epoch
    new = store.leader_acquire("M").epoch
    assert new > old
    upkeep = Upkeep(job, upkeep_pass, "L")
    try:
        upkeep.request(old, False)
        assert upkeep.idle(10)
        assert strategy.get_partition_stats().counters.get("compacted", 0) == 0
        assert stale.seen == [(namespace, "L", old)]
        upkeep.request(new, False)
        assert upkeep.idle(10)
        assert strategy.get_partition_stats().counters.get("compacted", 0) == 10
        assert len(stale.seen) == 1
    finally:
        upkeep.close()


def test_a_hung_broker_stops_the_picking_and_then_the_leading(
        redis_url, redis_client, namespace, queue_cleanup, proxy):
    """Publishing hangs (the broker's connection stalls, no reply ever comes):
    the loop stops picking once the outbox holds what the flow wants sent,
    and stops renewing its lease after ``leader_lock_expiry``, so another
    node can lead; after the broker heals, the outbox goes on."""
    db = int((urlparse(redis_url).path or "/0").lstrip("/") or 0)
    elk, job = make_job(redis_url, namespace, broker=proxy.url(db), max_id=100_000,
                        elk_leader_lock_expiry=2)
    store = job.store
    loop = LeaderLoop(elk, "L", namespaces=[namespace])
    proxy.stall()
    loop.start()
    try:
        wait_for(lambda: store.strategy.get_partition_stats().counters.get("dispatched", 0) > 0,
                 10, "a first dispatch")
        first = store.strategy.get_partition_stats().counters["dispatched"]
        # the lease lapses: another node is elected
        wait_for(lambda: store.leader_acquire("M").role == "elected", 15,
                 "the hung leader's lease to lapse")
        # nothing more was picked while the outbox held the first picks
        assert store.strategy.get_partition_stats().counters["dispatched"] == first
        store.leader_release("M")
    finally:
        proxy.heal()
        loop.stop()


def test_picks_waiting_in_a_hung_outbox_are_not_picked_again_past_the_queued_horizon(
        redis_url, redis_client, namespace, queue_cleanup, proxy):
    """While the first picks wait in the outbox beyond the flow's queued horizon
    (2 s: it then stops counting them as sent), the leader picks nothing more:
    without this, every round would mark more partitions sent behind a broker
    that takes none."""
    db = int((urlparse(redis_url).path or "/0").lstrip("/") or 0)
    elk, job = make_job(redis_url, namespace, broker=proxy.url(db), max_id=100_000,
                        elk_leader_lock_expiry=30)
    stats = job.store.strategy.get_partition_stats
    loop = LeaderLoop(elk, "L", namespaces=[namespace])
    proxy.stall()
    loop.start()
    try:
        wait_for(lambda: stats().counters.get("dispatched", 0) > 0, 10, "a first dispatch")
        first = stats().counters["dispatched"]
        holds_for(lambda: stats().counters["dispatched"] == first, 4,
                  lambda: f"more partitions picked: {stats().counters['dispatched']} > {first}")
    finally:
        proxy.heal()
        loop.stop()


def test_a_job_stalled_for_minutes_is_led_again_when_work_resumes(
        redis_url, redis_client, namespace, queue_cleanup):
    """Regression (CI 2026-12-02, a Sentinel failover): with partitions pending
    and nothing finishing, the smoothed rate decays towards zero; the queued
    horizon (queued / rate) grew past what the flow script accepts and every
    later round failed, so the job never ran again."""
    elk, job = make_job(redis_url, namespace)
    first = tick_job(job, node="L")
    assert first["role"] == "elected" and first["dispatched"] > 0
    meter = meter_of(job)
    # 200 partitions/s for a while, then three minutes of rounds that saw
    # work pending and nothing finishing (every worker gone)
    meter.observe(0, 0)
    for k in range(1, 21):
        meter.observe(k * 100, k * 20)
    for k in range(1, 361):
        meter.observe(2_000 + k * 500, 400, busy=True)
    assert 0 < meter.rate < 1e-30
    out = tick_job(job, node="L")
    assert out["role"] == "renewed", out
    assert out["targets"] is not None and out["targets"].queued >= 1
