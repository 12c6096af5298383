"""The bad input catalogue (README: Troubleshooting, Bad input): one test per
row. Each bad input gets an error that names the problem and the fix, and
loses nothing: what was stored stays as it was, the rest of the job goes
on. Real Redis, real Celery (tasks run in-process with ``apply()``)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from celery import Celery
from click.testing import CliRunner

from tests.conftest import cleanup_namespace

from elk_celery import (ConfigError, CorruptPartition, Elk, ElkSettings, HashPartitionStrategy,
                        InvalidPartition, PlannerError, RangePlanner, StaleFenceError,
                        partitioned_task)
from elk_celery.cli import elk as elk_cli
from elk_celery.keys import Keys
from elk_celery.leader.tick import tick_job
from elk_celery.models import MAX_ITEMS, MAX_PARTITION_ID, Partition
from elk_celery.planners import checked_next_max, checked_size
from elk_celery.store.namespace import NamespaceStore
from tests.raw_script import run_script

FAST = dict(elk_heartbeat_interval=0.5, elk_leader_election_interval=0.5, elk_leader_lock_expiry=3,
            elk_partition_lock_expiry=3, elk_defer_delay=0.1, elk_circuit_breaker_enabled=False)


def _app(redis_url: str, namespace: str, **conf) -> Celery:
    app = Celery(f"bad-{namespace}", broker=redis_url, set_as_current=False)
    app.conf.update(task_default_queue=namespace, elk_leader_queue=f"{namespace}.leader",
                    **{**FAST, **conf})
    return app


def _says(exc: BaseException, *words: str) -> None:
    msg = str(exc)
    for w in words:
        assert w in msg, f"{w!r} not in: {msg}"


@pytest.fixture
def s(redis_client, namespace):
    st = HashPartitionStrategy(redis_client, namespace)
    st.create_partitions_if_not_exist([{"partition_id": i, "min_id": 10 * i + 1, "max_id": 10 * i + 10}
                                       for i in (1, 2)])
    return st


def _state(st) -> tuple:
    r, k = st.redis, st.keys
    return (st._raw_all(), r.hgetall(k.stats), r.zrange(k.pending, 0, -1), r.lrange(k.fresh, 0, -1),
            r.zrange(k.leases, 0, -1), r.hgetall(k.meta))


# ------------------------------------------------------------------ settings

def test_bi_01_misspelt_setting(redis_url, namespace):
    with pytest.raises(ConfigError) as e:
        ElkSettings.from_celery_conf({"elk_heartbeat_intervall": 5})
    _says(e.value, "elk_heartbeat_intervall", "elk_heartbeat_interval")  # the typo and the right key


def test_bi_02_setting_of_the_wrong_type():
    with pytest.raises(ConfigError) as e:
        ElkSettings.from_celery_conf({"elk_heartbeat_interval": "ten"})
    _says(e.value, "elk_heartbeat_interval='ten'", "expected float (seconds or a timedelta)")


def test_bi_03_durations_that_contradict_each_other():
    with pytest.raises(ConfigError) as e:
        ElkSettings(heartbeat_interval=10, partition_lock_expiry=15)
    _says(e.value, "elk_partition_lock_expiry=15", "must exceed 2 x elk_heartbeat_interval")


def test_bi_04_count_out_of_range():
    with pytest.raises(ConfigError) as e:
        ElkSettings(task_window=0)
    _says(e.value, "elk_task_window=0", "integer >= 1")


def test_bi_05_app_wide_setting_given_per_job(redis_url, namespace):
    with pytest.raises(ConfigError) as e:
        partitioned_task(planner=RangePlanner(max_id=10), redis_url=redis_url)
    _says(e.value, "cannot be set per job", "elk_redis_url on app.conf")


def test_bi_06_bad_redis_url():
    with pytest.raises(ConfigError) as e:
        ElkSettings(redis_url="http://127.0.0.1:6379")
    _says(e.value, "elk_redis_url", "'http://127.0.0.1:6379'", "unknown scheme http://",
          "redis://, rediss://, unix://, redis+cluster://, rediss+cluster://, redis+sentinel://")


def test_bi_07_broker_is_not_redis_and_no_redis_url(namespace):
    app = Celery(f"bad-{namespace}", broker="amqp://guest@127.0.0.1//", set_as_current=False)
    with pytest.raises(ConfigError) as e:
        Elk(app).settings  # noqa: B018
    _says(e.value, "elk_redis_url is not set", "app.conf.elk_redis_url = 'redis://")


def test_bi_08_unreachable_redis_in_the_cli():
    r = CliRunner().invoke(elk_cli, ["--redis-url", "redis://:pw@127.0.0.1:1/0", "status", "-n", "x"])
    assert r.exit_code == 1
    _says(r.output, "cannot reach Redis at redis://:***@127.0.0.1:1")
    assert "pw@" not in r.output


def test_bi_09_invalid_namespace():
    with pytest.raises(ConfigError) as e:
        Keys("orders/2024")
    _says(e.value, "'orders/2024' is invalid", "letters, digits, '_', '.', '-'")


def test_bi_10_unknown_namespace(redis_url, namespace):
    elk = Elk(_app(redis_url, namespace))
    with pytest.raises(ConfigError) as e:
        elk.job("no-such-job")
    _says(e.value, "no partitioned job with namespace 'no-such-job'", "known:")
    r = CliRunner().invoke(elk_cli, ["--redis-url", redis_url, "status", "-n", namespace, "--json",
                                     "--sample", "0"])
    assert r.exit_code == 0 and json.loads(r.stdout)["namespaces"][0]["exists"] is False
    r = CliRunner().invoke(elk_cli, ["--redis-url", redis_url, "status", "-n", namespace, "--sample", "0"])
    _says(r.output, "no state in Redis")


def test_bi_11_two_jobs_on_one_namespace(redis_url, namespace):
    elk = Elk(_app(redis_url, namespace))

    @partitioned_task(namespace=namespace, planner=RangePlanner(max_id=10), name=f"{namespace}.a")
    def a(lo, hi, opts):
        return 0
    with pytest.raises(ConfigError) as e:
        @partitioned_task(namespace=namespace, planner=RangePlanner(max_id=10), name=f"{namespace}.b")
        def b(lo, hi, opts):
            return 0
    _says(e.value, f"two partitioned tasks use namespace '{namespace}'", "give each its own")
    assert elk.job(namespace).task_name == f"{namespace}.a"


# ------------------------------------------------------------ planner answers

class _Planner:
    def __init__(self, answer, size=10):
        self.answer, self.size = answer, size

    def partition_size(self):
        return self.size

    def next_max_id(self, start_id, range_size):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer(start_id, range_size) if callable(self.answer) else self.answer

    def __repr__(self):
        return "Planner()"


@pytest.mark.parametrize("answer, words", [
    (Decimal(30), ["returned Decimal('30')", "expected an int"]),
    (None, ["returned None", "expected an int"]),
    (lambda lo, size: lo + size + 5, ["beyond start_id + range_size - 1"]),
    (RuntimeError("db down"), ["raised RuntimeError('db down')"]),
    (lambda lo, size: lo + size - 1, ["jobs plan IDs up to 2^53-1", "offset them"]),
])
def test_bi_12_planner_answers_that_are_not_a_next_max_id(redis_url, namespace, answer, words):
    """The leader records the error, plans nothing this round, and leads on."""
    elk = Elk(_app(redis_url, namespace))

    @partitioned_task(namespace=namespace, planner=_Planner(answer), name=f"{namespace}.job")
    def job_fn(lo, hi, opts):
        return 0
    job = elk.job(namespace)
    start = 2**53 - 10 if "2^53" in words[0] else 1
    job.store.set_meta(cursor=start, start_id=start)
    with pytest.raises(PlannerError) as e:
        checked_next_max(job.planner, start, 100)
    _says(e.value, *words)
    out = tick_job(job, node="n")
    assert out["role"] == "elected" and out["created"] == 0
    for w in words:
        assert w in out["planner_error"] and w in job.store.meta()["planner_error"]


def test_bi_13_planner_partition_size_not_positive(redis_url, namespace):
    with pytest.raises(PlannerError) as e:
        checked_size(_Planner(10, size=0))
    _says(e.value, "partition_size() returned 0", "expected an int from 1 to 2^53-1")


def test_bi_14_planner_without_the_protocol():
    with pytest.raises(ConfigError) as e:
        partitioned_task(planner=object())
    _says(e.value, "must have partition_size() and next_max_id(start_id, range_size)")


# ---------------------------------------------------------- processor results

def _run_one(redis_url, namespace, result, **settings):
    elk = Elk(_app(redis_url, namespace))

    def processor(lo, hi, opts):
        return result(lo, hi, opts)
    partitioned_task(namespace=namespace, planner=RangePlanner(max_id=20, size=10),
                     name=f"{namespace}.processor", **settings)(processor)
    job = elk.job(namespace)
    job.store.strategy.create_partitions_if_not_exist(
        [{"partition_id": 1, "min_id": 1, "max_id": 10}, {"partition_id": 2, "min_id": 11, "max_id": 20}])
    res = job.task.apply(args=(1, 1, 10))
    return job, res


@pytest.mark.parametrize("result, words", [
    ("12 items", ["processor returned '12 items'", "expected the number of items processed"]),
    (-1, ["processor returned -1", "an int from 0 to"]),
    (True, ["processor returned True"]),
    (MAX_ITEMS + 1, [f"processor returned {MAX_ITEMS + 1}", f"an int from 0 to {MAX_ITEMS}"]),
])
def test_bi_15_processor_returns_something_that_is_not_an_item_count(redis_url, namespace, result, words):
    """That partition fails for good (a bug, not a transient error); the rest is untouched."""
    job, res = _run_one(redis_url, namespace, lambda lo, hi, opts: result, max_retries=3)
    assert res.failed() and "no retries left" in str(res.result)
    p = job.store.strategy.get_partition(1)
    assert str(p.status) == "failed" and p.attempts == 1
    for w in words:
        assert w in p.error
    assert str(job.store.strategy.get_partition(2).status) == "pending"
    cleanup_namespace(job.store.redis, namespace)


def test_bi_16_processor_raises(redis_url, namespace):
    def boom(lo, hi, opts):
        raise ValueError("row 7 is malformed")
    job, res = _run_one(redis_url, namespace, boom, max_retries=3)
    assert res.failed() and "retry in" in str(res.result)
    p = job.store.strategy.get_partition(1)
    assert str(p.status) == "pending" and "ValueError: row 7 is malformed" in p.error


# ------------------------------------------------------- strategy API arguments

@pytest.mark.parametrize("batch, words", [
    ([{"partition_id": 3, "min_id": 9, "max_id": 3}], ["min_id 9 > max_id 3", "min_id <= max_id"]),
    ([{"partition_id": 3, "min_id": 21, "max_id": 30}, {"partition_id": 4, "min_id": 30, "max_id": 40}],
     ["overlap", "21..30", "30..40"]),
    ([{"partition_id": 3, "min_id": 5, "max_id": 12}], ["overlaps partition 1:11:20"]),
    ([{"partition_id": 1, "min_id": 11, "max_id": 25}], ["partition 1 exists with range 11..20"]),
    ([{"partition_id": "3", "min_id": 21, "max_id": 30}], ["partition_id must be an integer, got '3'"]),
    ([{"partition_id": MAX_PARTITION_ID + 1, "min_id": 21, "max_id": 30}],
     ["partition_id must be >= 0 and <= 9223372036854775806"]),
    ([{"partition_id": 3, "min_id": 21, "max_id": 2**64}], ["max_id must be between", "int64"]),
    ([{"partition_id": 3, "min_id": 21}], ["lacks max_id"]),
])
def test_bi_17_bad_partitions_to_create(s, batch, words):
    before = _state(s)
    with pytest.raises(InvalidPartition) as e:
        s.create_partitions_if_not_exist(batch)
    _says(e.value, *words)
    assert _state(s) == before


@pytest.mark.parametrize("items, words", [
    (-1, ["items_processed must be >= 0"]), (1.5, ["items_processed must be an integer"]),
    (10**17, [f"<= {MAX_ITEMS}", "return the number of items"]),
])
def test_bi_18_bad_item_counts(s, items, words):
    c = s.claim(1, "n1")
    before = _state(s)
    with pytest.raises(InvalidPartition) as e:
        s.complete_partition(1, "n1", c.fence, items)
    _says(e.value, *words)
    assert _state(s) == before


def test_bi_19_a_fence_that_is_not_the_claims(s):
    c = s.claim(1, "n1")
    before = _state(s)
    with pytest.raises(InvalidPartition) as e:
        s.complete_partition(1, "n1", str(c.fence), 1)
    _says(e.value, "fence must be an integer", "the fence token your claim returned")
    assert _state(s) == before
    with pytest.raises(StaleFenceError) as e:
        s.complete_partition(1, "n1", c.fence + 1, 1)
    _says(e.value, "no longer owns it", "the write was refused")
    assert str(s.get_partition(1).status) == "running"


def test_bi_20_an_empty_node_id(s):
    before = _state(s)
    with pytest.raises(InvalidPartition) as e:
        s.claim(1, "")
    _says(e.value, "node_id must be a non-empty string")
    assert _state(s) == before


def test_bi_21_unknown_status(s):
    with pytest.raises(InvalidPartition) as e:
        s.get_filtered_partitions(status="done")
    _says(e.value, "unknown partition status 'done'", "use one of pending, claimed")


def test_bi_22_a_transition_update_partition_does_not_allow(s):
    p = s.get_partition(1)
    p.status = "completed"
    before = _state(s)
    with pytest.raises(InvalidPartition) as e:
        s.update_partition(p)
    _says(e.value, "status pending -> completed is not an allowed transition")
    assert _state(s) == before


def test_bi_23_update_from_a_stale_read(s):
    p = s.get_partition(1)
    s.update_partition(Partition(**{**p.__dict__, "error": "note"}))
    from elk_celery import VersionConflict
    with pytest.raises(VersionConflict) as e:
        s.update_partition(p)
    _says(e.value, f"is at version {p.version + 1}, not {p.version}", "read it again and retry")


# -------------------------------------------------------- oversized numbers

def test_bi_24_partition_ids_beyond_1e14_and_items_near_2_53(s):
    big = 10**14 + 3
    s.create_partitions_if_not_exist([{"partition_id": big, "min_id": 101, "max_id": 110}])
    c = s.claim(big, "n1")
    assert c.ok and c.partition_id == big
    s.complete_partition(big, "n1", c.fence, MAX_ITEMS)
    assert s.get_partition(big).items_processed == s.get_partition_stats().items_processed == MAX_ITEMS


def test_bi_25_numbers_a_script_cannot_hold_exactly(s):
    """The scripts' own guard, for callers that bypass the Python checks."""
    c = s.claim(1, "n1")
    before = _state(s)
    with pytest.raises(InvalidPartition) as e:
        run_script(s, "complete", [1], ["n1", "0", 1, c.fence, str(10**17)])
    _says(e.value, "items 100000000000000000", "must be an integer from 0 to 9007199254740991")
    assert _state(s) == before


# ------------------------------------------------------- corrupt Redis values

def test_bi_26_a_partition_value_that_is_not_an_elk_partition(s):
    s.redis.hset(s.keys.bucket(2), "2", "{not json")
    with pytest.raises(CorruptPartition) as e:
        s.get_partition(2)
    _says(e.value, "partition 2 holds a value that is not an elk partition", "delete it or reset")
    assert NamespaceStore(s).strategy.quarantine(2, 21, 30)
    with pytest.raises(CorruptPartition) as e:
        s.get_partition(2)
    _says(e.value, "quarantined", "delete it with delete_partitions()")
    assert [p.partition_id for p in s.get_all_partitions()] == [1]


def test_bi_27_a_planning_cursor_that_is_not_a_number(redis_url, namespace):
    """Planning stops with the error recorded; recovery and dispatch go on."""
    elk = Elk(_app(redis_url, namespace))

    @partitioned_task(namespace=namespace, planner=RangePlanner(max_id=100, size=10),
                      name=f"{namespace}.job")
    def job_fn(lo, hi, opts):
        return 0
    job = elk.job(namespace)
    job.store.strategy.create_partitions_if_not_exist([{"partition_id": 0, "min_id": 1, "max_id": 10}])
    job.store.set_meta(cursor="eleven", start_id=1)
    out = tick_job(job, node="n")
    assert out["created"] == 0 and out["dispatched"] == 1
    _says(out["planner_error"], "planning cursor 'eleven'", "not an integer", "elk reset")
    assert job.store.meta()["cursor"] == "eleven"  # left for the operator to see


def test_bi_28_a_breaker_hash_edited_by_hand(s):
    s.redis.hset(s.keys.breaker, mapping={"state": "open", "opened_at": "yesterday", "probes": "x"})
    settings = ElkSettings(circuit_breaker_half_open_max_requests=1)
    st = HashPartitionStrategy(s.redis, s.namespace, settings)
    c = st.claim(1, "n1")  # unreadable times count as long ago: it probes
    assert c.ok
    assert st.claim(2, "n1").code == "breaker"  # one probe at a time


def test_bi_29_a_leader_key_edited_by_hand(s):
    store = NamespaceStore(s)
    s.redis.set(s.keys.leader, "garbage")
    assert store.leader() is None  # unreadable: nobody leads
    state = store.leader_acquire("n1")
    assert state.is_leader and store.leader() == ("n1", state.epoch)


def test_bi_30_a_stats_hash_edited_by_hand(s):
    s.redis.hset(s.keys.stats, "pending", "lots")
    with pytest.raises(CorruptPartition) as e:
        s.get_partition_stats()
    _says(e.value, "stats field 'pending'", "'lots'", "recount")


def test_bi_31_a_node_description_that_is_not_json(s):
    store = NamespaceStore(s)
    store.heartbeat("n1", {"host": "h"})
    s.redis.hset(s.keys.nodes_info, "n1", "{oops")
    (node,) = store.nodes()
    assert node.node_id == "n1" and node.alive and node.info == {}
