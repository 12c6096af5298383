"""Elk(app) and @partitioned_task in-process: registration, the leader tick
driven directly, planners, and a real in-process worker (start_worker)."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

from tests.conftest import cleanup_namespace, wait_for

from elk_celery import (ConfigError, Elk, Hooks, PlannerError, RangePlanner, SQLPlanner, get_elk,
                        partitioned_task)
from elk_celery.leader.tick import tick_job
from elk_celery.planners import checked_next_max

FAST = dict(elk_heartbeat_interval=0.5, elk_leader_election_interval=0.5, elk_leader_lock_expiry=3,
            elk_partition_lock_expiry=3, elk_defer_delay=0.1)


def make_app(redis_url: str, namespace: str, **conf) -> Celery:
    app = Celery(f"app-{namespace}", broker=redis_url, set_as_current=False)
    app.conf.update(task_default_queue=namespace, broker_connection_retry_on_startup=True,
                    elk_leader_queue=f"{namespace}.leader",
                    **{**FAST, **conf})
    return app


class Recorder(Hooks):
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def on_partition_done(self, namespace, node, task, **kw):
        with self.lock:
            self.calls.append(("done", {"namespace": namespace, **kw}))

    def on_leader_tick(self, namespace, node, **kw):
        with self.lock:
            self.calls.append(("tick", kw))


def test_partitioned_task_before_and_after_elk(redis_url, redis_client, namespace):
    app = make_app(redis_url, namespace)

    @partitioned_task(namespace=f"{namespace}-a", planner=RangePlanner(max_id=10, size=5))
    def before(min_id, max_id, options):
        return 0

    elk = Elk(app)

    @partitioned_task(namespace=f"{namespace}-b", planner=RangePlanner(max_id=10, size=5),
                      task_window=3)
    def after(min_id, max_id, options):
        return 0

    assert get_elk(app) is elk
    assert {f"{namespace}-a", f"{namespace}-b"} <= set(elk.jobs)
    assert before.name == elk.job(f"{namespace}-a").task_name == f"{__name__}.before"
    assert after.name == f"{__name__}.after"
    assert elk.job(f"{namespace}-a").task_name in app.tasks
    assert elk.job(f"{namespace}-b").settings.task_window == 3
    assert elk.job(f"{namespace}-a").settings.task_window is None  # the pool size
    assert "elk-leader-tick" in app.conf.beat_schedule
    assert app.conf.worker_prefetch_multiplier == 1
    with pytest.raises(ConfigError, match="already called"):
        Elk(app)
    for suffix in ("-a", "-b"):
        cleanup_namespace(redis_client, namespace + suffix)


def test_bad_settings_fail_at_start_naming_the_key(redis_url, namespace):
    app = make_app(redis_url, namespace, elk_task_window=0)
    elk = Elk(app)
    with pytest.raises(ConfigError, match="elk_task_window=0"):
        elk.validate() or elk.settings
    with pytest.raises(ConfigError, match="unknown elk setting"):
        partitioned_task(planner=RangePlanner(max_id=1), task_widow=2)(lambda a, b, c: 0)
    with pytest.raises(ConfigError, match="partition_size"):
        partitioned_task(planner=object())(lambda a, b, c: 0)
    with pytest.raises(ConfigError, match="leader_process cannot be set per job"):
        partitioned_task(planner=RangePlanner(max_id=1), leader_process=True)(lambda a, b, c: 0)


def test_in_process_worker_runs_the_job(redis_url, redis_client, namespace):
    app = make_app(redis_url, namespace, elk_leader_lock_expiry=timedelta(seconds=3))
    rec = Recorder()
    elk = Elk(app, hooks=[rec])
    seen: list[tuple[int, int]] = []

    @partitioned_task(namespace=namespace, planner=RangePlanner(max_id=1_000, size=100), task_window=2)
    def collect(min_id, max_id, options):
        seen.append((min_id, max_id))
        return max_id - min_id + 1

    job = elk.job(namespace)
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False,
                      loglevel="WARNING", shutdown_timeout=10):
        def finished():
            tick_job(job)
            return job.store.strategy.get_partition_stats().completed_count == 10
        wait_for(finished, 60, "10 partitions in the in-process worker")

        # the hook runs once the completion's reply is read, which may come
        # just after Redis counted it (worker/completion.py)
        def hooked() -> int:
            return sum(1 for name, kw in rec.calls if name == "done" and kw["namespace"] == namespace)
        wait_for(lambda: hooked() >= 10, 10, "the done hook of every partition")
    assert sorted(seen) == [(lo, lo + 99) for lo in range(1, 1001, 100)]
    assert hooked() == 10
    assert any(kw["role"] == "elected" for name, kw in rec.calls if name == "tick")
    assert job.store.strategy.get_partition_stats().items_processed == 1_000


def test_tailing_plans_new_ids_as_they_appear(redis_url, namespace):
    app = make_app(redis_url, namespace)
    elk = Elk(app)
    top = {"max": 250}

    @partitioned_task(namespace=namespace, planner=RangePlanner(max_id=lambda: top["max"], size=100))
    def tail(min_id, max_id, options):
        return 0

    job = elk.job(namespace)
    out = tick_job(job, node="leader-1")
    assert out["role"] == "elected" and out["created"] == 3 and out["planned_max_id"] == 250
    assert tick_job(job, node="leader-1")["created"] == 0  # nothing new yet
    top["max"] = 420
    out = tick_job(job, node="leader-1")
    ranges = sorted((p.min_id, p.max_id) for p in job.store.strategy.get_all_partitions())
    assert ranges == [(1, 100), (101, 200), (201, 250), (251, 350), (351, 420)]
    # another node is a follower while the lease is held
    assert tick_job(job, node="leader-2")["role"] == "follower"


def test_a_failing_planner_is_reported_and_the_job_goes_on(redis_url, namespace):
    app = make_app(redis_url, namespace)
    elk = Elk(app)

    class Flaky:
        broken = True

        def partition_size(self):
            return 10

        def next_max_id(self, start_id, range_size):
            if self.broken:
                raise RuntimeError("database is down")
            return min(start_id + range_size - 1, 30)

    planner = Flaky()

    @partitioned_task(namespace=namespace, planner=planner)
    def job_fn(min_id, max_id, options):
        return 0

    job = elk.job(namespace)
    out = tick_job(job, node="n")
    assert "database is down" in out["planner_error"]
    assert "database is down" in job.store.meta()["planner_error"]
    planner.broken = False
    out = tick_job(job, node="n")
    assert out["planner_error"] is None and out["created"] == 3
    assert "planner_error" not in job.store.meta()


def test_planner_contract_is_checked():
    class Greedy:
        def partition_size(self):
            return 10

        def next_max_id(self, start_id, range_size):
            return start_id + range_size + 5

    with pytest.raises(PlannerError, match="beyond start_id"):
        checked_next_max(Greedy(), 1, 50)
    with pytest.raises(PlannerError, match="expected an int"):
        checked_next_max(type("P", (), {"next_max_id": lambda s, a, b: "7"})(), 1, 50)
    p = RangePlanner(max_id=40_000, size=400)
    assert checked_next_max(p, 1, 400 * 10) == 4_000
    assert checked_next_max(p, 39_601, 4_000) == 40_000
    assert checked_next_max(p, 40_001, 4_000) == 40_000  # < start: no data


def test_sql_planner_follows_the_table(tmp_path):
    db = tmp_path / "t.db"
    con = sqlite3.connect(db)
    con.execute("create table records (id integer primary key)")
    con.executemany("insert into records values (?)", [(i,) for i in [*range(1, 51), *range(200, 231)]])
    con.commit()
    planner = SQLPlanner(f"sqlite:///{db}", "records", size=10)
    assert planner.next_max_id(1, 100) == 100  # rows beyond the window: plan it whole
    assert planner.next_max_id(101, 100) == 200  # data exactly at the window's end counts
    assert planner.next_max_id(201, 100) == 230  # the last rows
    assert planner.next_max_id(231, 100) == 230  # nothing new: below start
    con.execute("insert into records values (231)")
    con.commit()
    assert planner.next_max_id(231, 100) == 231  # tailing picks up new rows


def test_tick_refills_gaps_and_compacts_completed_prefix(redis_url, namespace):
    app = make_app(redis_url, namespace, elk_keep_completed=2, elk_worker_partition_multiple=100)
    elk = Elk(app)

    @partitioned_task(namespace=namespace, planner=RangePlanner(max_id=1_000, size=100))
    def gappy(min_id, max_id, options):
        return 0

    job = elk.job(namespace)
    strategy = job.store.strategy
    assert tick_job(job, node="L")["created"] == 10
    lost = next(p for p in strategy.get_all_partitions() if p.min_id == 301)
    strategy.delete_partition(lost.partition_id)  # an operator's mistake
    out = tick_job(job, node="L")
    assert out["gaps"] == {"found": 1, "filled": 1}
    ranges = sorted((p.min_id, p.max_id) for p in strategy.get_all_partitions())
    assert (301, 400) in ranges and len(ranges) == 10
    # complete the first 5 (by ID): the completed prefix folds into the watermark
    # (keep_completed=2 only bounds how many partitions stay listed in all)
    for p in sorted(strategy.get_all_partitions(), key=lambda p: p.min_id)[:5]:
        c = strategy.claim(p.partition_id, "n1")
        strategy.complete_partition(p.partition_id, "n1", c.fence, 1)
    out = tick_job(job, node="L")
    assert out["compacted"] == 5
    stats = strategy.get_partition_stats()
    assert stats.completed_count == 5 and stats.total_count == 10
    assert int(job.store.meta()["watermark"]) == 501
    assert tick_job(job, node="L")["gaps"]["found"] == 0  # compaction is not a gap


def test_no_partition_below_the_watermark(redis_url, namespace):
    from elk_celery import PartitionConflict
    app = make_app(redis_url, namespace, elk_keep_completed=0)
    elk = Elk(app)

    @partitioned_task(namespace=namespace, planner=RangePlanner(max_id=300, size=100))
    def low(min_id, max_id, options):
        return 0

    job = elk.job(namespace)
    tick_job(job, node="L")
    strategy = job.store.strategy
    first = min(strategy.get_all_partitions(), key=lambda p: p.min_id)
    c = strategy.claim(first.partition_id, "n1")
    strategy.complete_partition(first.partition_id, "n1", c.fence, 1)
    assert tick_job(job, node="L")["compacted"] == 1
    with pytest.raises(PartitionConflict, match="below the watermark 101"):
        strategy.create_partitions_if_not_exist([{"partition_id": 99, "min_id": 50, "max_id": 60}])


def test_rabbitmq_broker_with_redis_state(redis_url, namespace):
    """The broker need not be Redis: state in Redis, messages over AMQP."""
    import socket
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError:
        pytest.skip("RabbitMQ is not reachable at 127.0.0.1:5672")
    app = Celery(f"amqp-{namespace}", broker="amqp://guest:guest@127.0.0.1:5672//",
                 set_as_current=False)
    app.conf.update(task_default_queue=namespace, elk_leader_queue=f"{namespace}.leader",
                    broker_connection_retry_on_startup=True, **FAST)
    with pytest.raises(ConfigError, match="elk_redis_url is not set"):
        Elk(app).settings
    app2 = Celery(f"amqp2-{namespace}", broker="amqp://guest:guest@127.0.0.1:5672//",
                  set_as_current=False)
    # broker_heartbeat=0: no AMQP heartbeat timer, whose next tick (up to
    # 10 s away) the stopping worker's event loop would otherwise wait for
    app2.conf.update(task_default_queue=namespace, elk_leader_queue=f"{namespace}.leader",
                     broker_connection_retry_on_startup=True, elk_redis_url=redis_url,
                     broker_heartbeat=0, **FAST)
    elk = Elk(app2)
    done: list[int] = []

    @partitioned_task(namespace=namespace, planner=RangePlanner(max_id=500, size=100))
    def over_amqp(min_id, max_id, options):
        done.append(min_id)
        return max_id - min_id + 1

    job = elk.job(namespace)
    with start_worker(app2, pool="threads", concurrency=2, perform_ping_check=False,
                      loglevel="WARNING", shutdown_timeout=10):
        def finished():
            tick_job(job)
            return job.store.strategy.get_partition_stats().completed_count == 5
        wait_for(finished, 60, "5 partitions over RabbitMQ")
    assert sorted(done) == [1, 101, 201, 301, 401]


def test_planning_stops_at_the_pending_backlog_cap(redis_url, namespace):
    app = make_app(redis_url, namespace, elk_worker_partition_multiple=2)
    elk = Elk(app)

    @partitioned_task(namespace=namespace, planner=RangePlanner(max_id=10_000, size=100),
                      task_window=3)
    def capped(min_id, max_id, options):
        return 0

    job = elk.job(namespace)
    # no live node yet: one slot; the least backlog = 1 slot x multiple 2
    assert tick_job(job, node="L")["created"] == 2
    job.store.heartbeat("n1", {"slots": 3})  # a node with a task window of 3
    assert tick_job(job, node="L")["created"] == 4  # 3 slots x 2
    assert tick_job(job, node="L")["created"] == 0  # backlog full
    c = job.store.strategy.claim(0, "n1")
    job.store.strategy.complete_partition(0, "n1", c.fence, 1)
    assert tick_job(job, node="L")["created"] == 1  # back to the backlog: one more


def test_max_pending_partitions_caps_the_backlog(redis_url, namespace):
    app = make_app(redis_url, namespace, elk_worker_partition_multiple=50,
                   elk_max_pending_partitions=7)
    elk = Elk(app)

    @partitioned_task(namespace=namespace, planner=RangePlanner(max_id=10_000, size=100))
    def capped_by_setting(min_id, max_id, options):
        return 0

    job = elk.job(namespace)
    out = tick_job(job, node="L")
    assert out["created"] == 7 and out["dispatched"] <= 7
    assert tick_job(job, node="L")["created"] == 0


def test_one_round_plans_a_large_backlog_in_a_few_script_calls(redis_url, namespace):
    app = make_app(redis_url, namespace, elk_worker_partition_multiple=20_000)
    elk = Elk(app)

    @partitioned_task(namespace=namespace, planner=RangePlanner(max_id=2_000_000, size=100))
    def big(min_id, max_id, options):
        return 0

    job = elk.job(namespace)
    out = tick_job(job, node="L")
    assert out["created"] == 20_000 and out["planned_max_id"] == 2_000_000
    stats = job.store.strategy.get_partition_stats()
    assert stats.total_count == stats.pending_count == 20_000
    ranges = sorted((p.min_id, p.max_id) for p in job.store.strategy.get_all_partitions())
    assert ranges[0] == (1, 100) and ranges[-1] == (1_999_901, 2_000_000)
    assert all(b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:]))


def test_elected_leader_lists_its_namespace(redis_url, redis_client, namespace):
    from elk_celery.keys import registry_key
    app = make_app(redis_url, namespace)
    elk = Elk(app)

    @partitioned_task(namespace=namespace, planner=RangePlanner(max_id=10, size=10))
    def listed(min_id, max_id, options):
        return 0

    assert not redis_client.sismember(registry_key(), namespace)
    tick_job(elk.job(namespace), node="L")
    assert redis_client.sismember(registry_key(), namespace)
    elk.job(namespace).store.reset()
    assert not redis_client.sismember(registry_key(), namespace)


def test_a_tick_that_does_not_lead_leaves_the_lease_to_expire(redis_url, namespace):
    app = make_app(redis_url, namespace, elk_leader_lock_expiry=1, elk_leader_election_interval=0.5)
    elk = Elk(app)

    @partitioned_task(namespace=namespace, planner=RangePlanner(max_id=10, size=10))
    def hung(min_id, max_id, options):
        return 0

    job = elk.job(namespace)
    assert tick_job(job, node="L")["role"] == "elected"
    # only "elect" ticks come in (the node's leading loop is hung): no renewal
    assert tick_job(job, node="L", lead=False)["role"] == "held"
    wait_for(lambda: job.store.leader() is None, 5, "the unrenewed lease to lapse")
    assert tick_job(job, node="other", lead=False)["role"] == "elected"


def test_messages_lost_with_a_killed_worker_do_not_hold_up_the_flow(redis_url, redis_client,
                                                                     namespace):
    # A worker SIGKILLed takes the messages it had prefetched with it; until they
    # are sent again (allocation_interval, 120 s) the leader must not count them
    # as still on their way, or it sends nothing new for two minutes.
    app = make_app(redis_url, namespace)
    elk = Elk(app)

    @partitioned_task(namespace=namespace, planner=RangePlanner(max_id=10_000, size=100))
    def lossy(min_id, max_id, options):
        return 0

    job = elk.job(namespace)
    job.store.heartbeat("n1", {"slots": 2})
    first = tick_job(job, node="L")["dispatched"]
    assert first >= 2
    redis_client.delete(namespace)  # the broker's queue: the messages are gone
    assert tick_job(job, node="L")["dispatched"] == 0  # just sent: on their way
    wait_for(lambda: tick_job(job, node="L")["dispatched"] > 0, 15,
             "the leader to send new messages while the lost ones wait for their resend")
    assert job.store.strategy.get_partition_stats().counters["dispatched"] > first
