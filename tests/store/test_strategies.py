"""The partition strategy API, on a real Redis, for both strategies."""

from __future__ import annotations

import time

import pytest
import redis

from elk_celery import (CorruptPartition, ElkError, ElkSettings, HashPartitionStrategy, InvalidPartition,
                        Partition, PartitionConflict, SimpleStrategy, StaleFenceError, Status,
                        StrategyType, VersionConflict)
from elk_celery.store.connection import text

from tests.invariants import check_invariants, eventually
from tests.partitions import SHORT, claimed, parts

#: short leases for preemption tests: expire fast, still valid settings
# ----------------------------------------------------------------- basics

def test_strategy_type_and_public_names(strategy):
    assert strategy.strategy_type() in (StrategyType.HASH, StrategyType.SIMPLE)
    assert str(strategy.strategy_type()) == strategy.kind.value
    assert issubclass(StaleFenceError, ElkError)


def test_from_url(strategy_cls, redis_url, namespace):
    s = strategy_cls.from_url(redis_url, namespace=namespace)
    assert isinstance(s, strategy_cls) and s.namespace == namespace
    s.create_partitions_if_not_exist(parts(1))
    assert s.get_partition(1).min_id == 11


# ---------------------------------------------------------------- create

def test_create_returns_stored_partitions(strategy):
    out = strategy.create_partitions_if_not_exist(
        parts(1, 2) + [Partition(partition_id=3, min_id=31, max_id=40, options={"k": "v"})])
    assert [p.partition_id for p in out] == [1, 2, 3]
    p3 = out[2]
    assert (p3.min_id, p3.max_id, p3.status, p3.options) == (31, 40, "pending", {"k": "v"})
    assert p3.version >= 1 and p3.fence == 0 and p3.attempts == 0 and p3.node_id == ""
    assert p3.created_at is not None and p3.updated_at is not None
    assert str(p3.status) == "pending" and p3.status == Status.PENDING
    stats = strategy.get_partition_stats()
    assert (stats.total_count, stats.pending_count) == (3, 3)
    check_invariants(strategy)


def test_create_is_idempotent(strategy):
    strategy.create_partitions_if_not_exist(parts(1, 2))
    p = claimed(strategy, 1)
    again = strategy.create_partitions_if_not_exist(parts(1, 2, 3))
    assert [x.partition_id for x in again] == [1, 2, 3]
    # the existing partition is left untouched (still claimed, same fence)
    assert again[0].status == "claimed" and again[0].fence == p.fence
    assert strategy.get_partition_stats().total_count == 3
    check_invariants(strategy)


def test_create_same_id_other_range_is_a_conflict(strategy):
    strategy.create_partitions_if_not_exist(parts(1))
    with pytest.raises(PartitionConflict) as info:
        strategy.create_partitions_if_not_exist([{"partition_id": 1, "min_id": 11, "max_id": 25}])
    msg = str(info.value)
    assert "partition 1" in msg and "11..20" in msg and "11..25" in msg
    assert strategy.get_partition(1).max_id == 20


@pytest.mark.parametrize("lo, hi", [(15, 18), (5, 11), (20, 30), (1, 100), (11, 20)])
def test_create_overlap_with_existing_partition_is_a_conflict(strategy, lo, hi):
    strategy.create_partitions_if_not_exist(parts(1))  # 11..20
    with pytest.raises(PartitionConflict, match="overlaps partition 1:11:20"):
        strategy.create_partitions_if_not_exist([{"partition_id": 9, "min_id": lo, "max_id": hi}])
    assert strategy.get_partition(9) is None


def test_create_adjacent_ranges_do_not_overlap(strategy):
    strategy.create_partitions_if_not_exist(parts(1))  # 11..20
    strategy.create_partitions_if_not_exist([{"partition_id": 0, "min_id": 1, "max_id": 10},
                                             {"partition_id": 2, "min_id": 21, "max_id": 21}])
    assert strategy.get_partition_stats().total_count == 3


def test_create_is_all_or_nothing(strategy):
    strategy.create_partitions_if_not_exist(parts(5))
    before = strategy.get_partition_stats()
    bad_batch = parts(1, 2, 3) + [{"partition_id": 5, "min_id": 0, "max_id": 1}]
    with pytest.raises(PartitionConflict):
        strategy.create_partitions_if_not_exist(bad_batch)
    assert strategy.get_partitions([1, 2, 3]) == []
    assert strategy.get_partition_stats() == before
    check_invariants(strategy)


def test_create_large_ids_are_exact(strategy):
    big = 2**62
    strategy.create_partitions_if_not_exist([{"partition_id": 7, "min_id": big, "max_id": big + 9}])
    p = strategy.get_partition(7)
    assert (p.min_id, p.max_id) == (big, big + 9)
    a = strategy.acquire_partition(7, "n")
    assert (a.min_id, a.max_id) == (big, big + 9)


@pytest.mark.parametrize("batch, words", [
    ([{"partition_id": 1, "min_id": 9, "max_id": 3}], ["min_id 9 > max_id 3"]),
    (parts(1) + parts(1), ["partition id 1 appears twice"]),
    ([{"partition_id": 1, "min_id": 1, "max_id": 10}, {"partition_id": 2, "min_id": 10, "max_id": 20}],
     ["overlap", "1..10", "10..20"]),
    ([{"partition_id": "1", "min_id": 1, "max_id": 10}], ["partition_id must be an integer", "'1'"]),
    ([{"partition_id": 1.0, "min_id": 1, "max_id": 10}], ["partition_id must be an integer"]),
    ([{"partition_id": True, "min_id": 1, "max_id": 10}], ["partition_id must be an integer"]),
    ([{"partition_id": 1, "min_id": "a", "max_id": 10}], ["min_id must be an integer"]),
    ([{"partition_id": 1, "min_id": 1}], ["lacks max_id"]),
    ([{"partition_id": -1, "min_id": 1, "max_id": 2}], ["partition_id must be >= 0"]),
    ([("not", "a", "mapping")], ["expected a Partition or a mapping"]),
])
def test_bad_batches_give_clear_errors_and_write_nothing(strategy, batch, words):
    with pytest.raises(InvalidPartition) as info:
        strategy.create_partitions_if_not_exist(batch)
    for w in words:
        assert w in str(info.value), str(info.value)
    assert strategy.get_partition_stats().total_count == 0


# ---------------------------------------------------------- acquire / claim

def test_acquire_claims_with_a_fence(strategy):
    strategy.create_partitions_if_not_exist(parts(1))
    p = strategy.acquire_partition(1, "n1")
    assert p.status == "claimed" and p.node_id == "n1" and p.fence > 0 and p.attempts == 1
    assert p.last_heartbeat is not None and p.lease_expires_at is not None
    s = strategy.get_partition_stats()
    assert (s.pending_count, s.claimed_count) == (0, 1)
    check_invariants(strategy)


def test_acquire_reads_what_its_claim_wrote_in_one_round_trip(strategy, monkeypatch):
    strategy.create_partitions_if_not_exist(parts(1, 2))
    strategy.scripts.load("claim")  # as after the first claim (and connected)
    sends = []
    real = redis.connection.AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        sends.append(command)
        return real(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    p = strategy.acquire_partition(1, "n1")
    assert len(sends) == 1  # claim and read, one pipeline
    monkeypatch.undo()
    assert p == strategy.get_partition(1)  # the same partition a separate read finds
    strategy.redis.script_flush()  # Redis forgot the scripts (a restart): loaded again
    q = strategy.acquire_partition(2, "n1")
    assert q is not None and q.status == "claimed" and q.node_id == "n1"


def test_acquire_returns_none_when_held_by_anyone_even_the_same_node(strategy):
    strategy.create_partitions_if_not_exist(parts(1))
    first = claimed(strategy, 1, "n1")
    assert strategy.acquire_partition(1, "n2") is None
    assert strategy.acquire_partition(1, "n1") is None  # a duplicate message finds nothing
    assert strategy.acquire_partition(1, "n2", allow_preemption=True) is None  # lease alive
    assert strategy.get_partition(1).fence == first.fence


def test_acquire_returns_none_for_completed_failed_and_missing(strategy):
    strategy.create_partitions_if_not_exist(parts(1, 2))
    p1 = claimed(strategy, 1)
    strategy.complete_partition(1, "n1", p1.fence, 10)
    p2 = claimed(strategy, 2)
    strategy.fail_partition(2, "n1", p2.fence, "boom", retryable=False)
    for pid in (1, 2):
        assert strategy.acquire_partition(pid, "n1") is None
        assert strategy.acquire_partition(pid, "n2", allow_preemption=True) is None
    assert strategy.acquire_partition(99, "n1") is None
    assert strategy.claim(1, "n1").code == "completed"
    assert strategy.claim(2, "n1").code == "failed"
    assert strategy.claim(99, "n1").code == "missing"


def test_claim_is_compact_and_carries_the_range(strategy):
    strategy.create_partitions_if_not_exist(
        [Partition(partition_id=4, min_id=41, max_id=50, options={"table": "t"})])
    c = strategy.claim(4, "n1")
    assert c.ok and c.code == "ok"
    assert (c.partition_id, c.attempts, c.min_id, c.max_id) == (4, 1, 41, 50) and c.fence > 0
    assert c.options == {"table": "t"}
    assert strategy.get_partition(4).status == "running"  # the worker's default target


def test_preemption_takes_an_expired_lease_and_bumps_the_fence(make_strategy):
    s = make_strategy(**SHORT)
    s.create_partitions_if_not_exist(parts(1))
    old = claimed(s, 1, "old")
    assert s.acquire_partition(1, "new", allow_preemption=True) is None  # still alive
    new = eventually(lambda: s.acquire_partition(1, "new", allow_preemption=True))
    assert new.node_id == "new" and new.fence > old.fence and new.attempts == 2
    stats = s.get_partition_stats()
    assert stats.preempted == 1 and stats.claimed_count == 1
    check_invariants(s)

    # the stale owner's late writes are refused and counted
    with pytest.raises(StaleFenceError) as info:
        s.complete_partition(1, "old", old.fence, 5)
    e = info.value
    assert (e.partition_id, e.fence, e.current_fence, e.current_node) == (1, old.fence, new.fence, "new")
    assert "no longer owns it" in str(e)
    with pytest.raises(StaleFenceError):
        s.fail_partition(1, "old", old.fence, "late")
    assert s.get_partition_stats().stale_writes == 2
    assert s.renew_leases("old", [(1, old.fence)]) == [1]
    # the new owner is unaffected
    s.complete_partition(1, "new", new.fence, 3)
    assert s.get_partition(1).status == "completed"
    check_invariants(s)


def test_without_preemption_an_expired_lease_is_not_taken(make_strategy):
    s = make_strategy(**SHORT)
    s.create_partitions_if_not_exist(parts(1))
    claimed(s, 1, "old")
    eventually(lambda: s.get_partition(1).lease_expires_at.timestamp() * 1000
               < _server_ms(s) - 50)
    assert s.acquire_partition(1, "new") is None


def _server_ms(s) -> int:
    sec, usec = s.redis.time()
    return sec * 1000 + usec // 1000


def test_force_takes_a_live_lease(strategy):
    strategy.create_partitions_if_not_exist(parts(1))
    old = claimed(strategy, 1, "old")
    p = strategy.acquire_partition(1, "op", force=True)
    assert p.node_id == "op" and p.fence > old.fence
    with pytest.raises(StaleFenceError):
        strategy.complete_partition(1, "old", old.fence, 0)
    check_invariants(strategy)


# ------------------------------------------------------ complete / fail

def test_complete(strategy):
    strategy.create_partitions_if_not_exist(parts(1, 2))
    p = claimed(strategy, 1)
    version = strategy.complete_partition(1, "n1", p.fence, 10)
    done = strategy.get_partition(1)
    assert done.status == "completed" and done.items_processed == 10 and done.version == version
    s = strategy.get_partition_stats()
    assert (s.completed_count, s.items_processed, s.completion_rate) == (1, 10, 0.5)
    check_invariants(strategy)
    # again by the owner with its fence (a retry after a lost reply): done, not stale
    assert strategy.complete_partition(1, "n1", p.fence, 10) == version
    assert strategy.get_partition_stats().stale_writes == 0
    with pytest.raises(StaleFenceError):  # by anybody else
        strategy.complete_partition(1, "n2", p.fence, 10)


def test_complete_by_wrong_node_or_fence_or_missing_is_stale(strategy):
    strategy.create_partitions_if_not_exist(parts(1))
    p = claimed(strategy, 1)
    with pytest.raises(StaleFenceError):
        strategy.complete_partition(1, "n2", p.fence, 1)
    with pytest.raises(StaleFenceError):
        strategy.complete_partition(1, "n1", p.fence + 1, 1)
    with pytest.raises(StaleFenceError, match="does not exist"):
        strategy.complete_partition(42, "n1", 1, 1)
    assert strategy.get_partition_stats().stale_writes == 3
    assert strategy.get_partition(1).status == "claimed"


def test_complete_of_a_pending_partition_is_stale(strategy):
    strategy.create_partitions_if_not_exist(parts(1))
    with pytest.raises(StaleFenceError):
        strategy.complete_partition(1, "n1", 0, 1)
    assert strategy.get_partition(1).status == "pending"


@pytest.mark.parametrize("items", [-1, 1.5, "3", True])
def test_complete_rejects_bad_item_counts(strategy, items):
    strategy.create_partitions_if_not_exist(parts(1))
    p = claimed(strategy, 1)
    with pytest.raises(InvalidPartition, match="items_processed"):
        strategy.complete_partition(1, "n1", p.fence, items)


def test_fail_retries_with_backoff_then_stays_failed(make_strategy):
    s = make_strategy(max_retries=2, retry_backoff=1, retry_backoff_max=1.5)
    s.create_partitions_if_not_exist(parts(1))
    delays = []
    for attempt in (1, 2, 3):
        p = claimed(s, 1)
        assert p.attempts == attempt
        code, delay = s.fail_partition(1, "n1", p.fence, f"boom {attempt}")
        delays.append((code, delay))
        check_invariants(s)
    assert delays == [("retry", 1.0), ("retry", 1.5), ("failed", 0)]  # 1s, 2s capped at 1.5s
    p = s.get_partition(1)
    assert p.status == "failed" and p.error == "boom 3"
    st = s.get_partition_stats()
    assert (st.failed_count, st.retried, st.failure_rate) == (1, 2, 1.0)


def test_retry_is_scheduled_after_the_backoff(make_strategy):
    s = make_strategy(retry_backoff=2)
    s.create_partitions_if_not_exist(parts(1))
    p = claimed(s, 1)
    before = _server_ms(s)
    s.fail_partition(1, "n1", p.fence, "x")
    score = s.redis.zscore(s.keys.pending, "1:11:20")
    assert before + 2000 - 5 <= score <= _server_ms(s) + 2000
    assert s.get_partition(1).status == "pending" and s.get_partition(1).node_id == ""


def test_fail_not_retryable_fails_at_once(strategy):
    strategy.create_partitions_if_not_exist(parts(1))
    p = claimed(strategy, 1)
    assert strategy.fail_partition(1, "n1", p.fence, "bad input", retryable=False) == ("failed", 0)
    assert strategy.get_partition(1).status == "failed"


def test_retry_failed_requeues_with_fresh_attempts(strategy):
    strategy.create_partitions_if_not_exist(parts(1, 2, 3))
    for pid in (1, 2):
        p = claimed(strategy, pid)
        strategy.fail_partition(pid, "n1", p.fence, "x", retryable=False)
    assert strategy.retry_failed([3, 99]) == []  # not failed: untouched
    assert sorted(strategy.retry_failed()) == [1, 2]
    for pid in (1, 2):
        p = strategy.get_partition(pid)
        assert p.status == "pending" and p.attempts == 0
    assert strategy.get_partition_stats().failed_count == 0
    check_invariants(strategy)
    again = claimed(strategy, 1)
    assert again.attempts == 1


# ----------------------------------------------------------- release / renew

def test_release_gives_the_partition_and_the_attempt_back(strategy):
    strategy.create_partitions_if_not_exist(parts(1))
    p = claimed(strategy, 1)
    assert strategy.release_partition(1, "n2") is False  # not the owner
    assert strategy.release_partition(1, "n1", fence=p.fence + 1) is False  # wrong fence
    assert strategy.release_partition(1, "n1", fence=p.fence) is True
    back = strategy.get_partition(1)
    assert back.status == "pending" and back.attempts == 0 and back.node_id == ""
    assert strategy.release_partition(1, "n1") is False  # nothing held any more
    check_invariants(strategy)
    assert claimed(strategy, 1, "n2").attempts == 1


def test_release_partitions_many_and_unregister(strategy):
    strategy.create_partitions_if_not_exist(parts(1, 2, 3))
    held = [(pid, claimed(strategy, pid).fence) for pid in (1, 2)]
    claimed(strategy, 3, "other")
    out = strategy.release_partitions("n1", held + [(3, None)], unregister=True)
    assert sorted(out) == [1, 2]
    assert strategy.get_partition(3).node_id == "other"
    assert strategy.redis.hget(strategy.keys.inflight, "n1") is None
    check_invariants(strategy)


def test_renew_leases_returns_lost_ids(strategy):
    strategy.create_partitions_if_not_exist(parts(1, 2, 3))
    a, b = claimed(strategy, 1), claimed(strategy, 2)
    lease_before = strategy.get_partition(1).lease_expires_at
    lost = strategy.renew_leases("n1", [(1, a.fence), (2, b.fence + 7), (3, 1), (404, 1)])
    assert sorted(lost) == [2, 3, 404]
    assert strategy.get_partition(1).lease_expires_at >= lease_before
    assert strategy.renew_leases("n1", []) == []
    assert strategy.get_partition_stats().counters.get("leases_lost") == 3


def test_renew_with_start_marks_running(strategy):
    strategy.create_partitions_if_not_exist(parts(1))
    p = claimed(strategy, 1)
    strategy.start_partition(1, "n1", p.fence)
    assert strategy.get_partition(1).status == "running"
    s = strategy.get_partition_stats()
    assert (s.claimed_count, s.running_count) == (0, 1)
    check_invariants(strategy)
    with pytest.raises(StaleFenceError):
        strategy.start_partition(1, "n2", p.fence)


def test_renewal_keeps_a_short_lease_alive(make_strategy):
    s = make_strategy(**SHORT)
    s.create_partitions_if_not_exist(parts(1))
    p = claimed(s, 1, "owner")
    # renew every heartbeat (0.1 s) for more than two lease lengths (0.3 s):
    # the lease must never lapse
    start = _server_ms(s)
    rounds = 0
    while _server_ms(s) - start < 700:
        assert s.renew_leases("owner", [(1, p.fence)]) == []
        assert s.acquire_partition(1, "thief", allow_preemption=True) is None
        rounds += 1
        time.sleep(0.1)  # the owner's heartbeat period, not synchronisation
    assert rounds >= 5
    s.complete_partition(1, "owner", p.fence, 1)


# ------------------------------------------------- task window and breaker

def test_task_window_refuses_with_code_window(strategy):
    strategy.create_partitions_if_not_exist(parts(1, 2, 3))
    assert strategy.claim(1, "n1", window=2).ok
    assert strategy.claim(2, "n1", window=2).ok
    refused = strategy.claim(3, "n1", window=2)
    assert refused.code == "window" and not refused.ok
    assert strategy.get_partition(3).status == "pending"
    assert strategy.claim(3, "n2", window=2).ok  # another node has room
    s = strategy.get_partition_stats()
    assert s.counters.get("deferred_window") == 1 and s.running_count == 3
    check_invariants(strategy)


def test_window_refusal_defers_the_pending_partition(make_strategy):
    s = make_strategy(defer_delay=5)
    s.create_partitions_if_not_exist(parts(1, 2))
    assert s.claim(1, "n1", window=1).ok
    now = _server_ms(s)
    assert s.claim(2, "n1", window=1).code == "window"
    assert s.redis.zscore(s.keys.pending, "2:21:30") >= now + 5000 - 5


def test_window_frees_up_after_complete(strategy):
    strategy.create_partitions_if_not_exist(parts(1, 2))
    c = strategy.claim(1, "n1", window=1)
    strategy.complete_partition(1, "n1", c.fence, 0)
    assert strategy.claim(2, "n1", window=1).ok


def _breaker(s) -> dict[str, str]:
    return {text(k): text(v) for k, v in s.redis.hgetall(s.keys.breaker).items()}


BREAKER = {"circuit_breaker_consecutive_failures": 3, "circuit_breaker_open_timeout": 0.3,
           "circuit_breaker_half_open_max_requests": 1, "max_retries": 0}


def _fail(s, pid, node="n1"):
    c = s.claim(pid, node)
    assert c.ok, c
    s.fail_partition(pid, node, c.fence, "boom")


def test_breaker_opens_after_consecutive_failures_and_refuses(make_strategy):
    s = make_strategy(**BREAKER)
    s.create_partitions_if_not_exist(parts(*range(1, 7)))
    _fail(s, 1)
    _fail(s, 2)
    assert _breaker(s).get("state", "closed") == "closed"
    _fail(s, 3)
    b = _breaker(s)
    assert b["state"] == "open" and "3 consecutive failures" in b["reason"]
    refused = s.claim(4, "n2")
    assert refused.code == "breaker" and not refused.ok
    assert s.get_partition(4).status == "pending"
    # the strategy API's acquire honours the shared breaker too
    assert s.acquire_partition(4, "n2") is None
    check_invariants(s)


def test_breaker_half_open_probe_success_closes(make_strategy):
    s = make_strategy(**BREAKER)
    s.create_partitions_if_not_exist(parts(*range(1, 8)))
    for pid in (1, 2, 3):
        _fail(s, pid)
    assert s.claim(4, "n1").code == "breaker"
    probe = eventually(lambda: (lambda c: c if c.ok else None)(s.claim(4, "n1")))
    assert _breaker(s)["state"] == "half_open"
    assert s.claim(5, "n2").code == "breaker"  # only one probe at a time
    s.complete_partition(4, "n1", probe.fence, 1)
    b = _breaker(s)
    assert b["state"] == "closed" and b["consecutive"] == "0"
    assert s.claim(5, "n2").ok and s.claim(6, "n2").ok


def test_breaker_probe_failure_reopens(make_strategy):
    s = make_strategy(**BREAKER)
    s.create_partitions_if_not_exist(parts(*range(1, 8)))
    for pid in (1, 2, 3):
        _fail(s, pid)
    probe = eventually(lambda: (lambda c: c if c.ok else None)(s.claim(4, "n1")))
    s.fail_partition(4, "n1", probe.fence, "still broken")
    b = _breaker(s)
    assert b["state"] == "open" and b["reason"] == "probe failed" and b["trips"] == "2"
    assert s.claim(5, "n1").code == "breaker"


def test_breaker_opens_on_total_failures_within_window(make_strategy):
    s = make_strategy(circuit_breaker_consecutive_failures=10, circuit_breaker_total_failures=3,
                      max_retries=0)
    s.create_partitions_if_not_exist(parts(*range(1, 8)))
    for pid in (1, 2):
        _fail(s, pid)
        ok = s.claim(pid + 3, "n1")  # a success in between resets 'consecutive'
        s.complete_partition(pid + 3, "n1", ok.fence, 1)
        assert _breaker(s).get("state", "closed") == "closed"
    _fail(s, 3)  # the third failed partition within the window
    b = _breaker(s)
    assert b["state"] == "open" and "3 partitions failed within the window" in b["reason"]
    assert s.claim(7, "n1").code == "breaker"


def test_breaker_disabled_never_refuses(make_strategy):
    s = make_strategy(**BREAKER, circuit_breaker_enabled=False)
    s.create_partitions_if_not_exist(parts(*range(1, 6)))
    for pid in (1, 2, 3, 4):
        _fail(s, pid)
    assert s.claim(5, "n1").ok


# ---------------------------------------------------------------- reading

def test_get_filtered_partitions_by_status_and_node(strategy):
    strategy.create_partitions_if_not_exist(parts(*range(1, 8)))
    claimed(strategy, 1, "a")
    claimed(strategy, 2, "b")
    strategy.claim(3, "a")  # running
    c4 = claimed(strategy, 4, "a")
    strategy.complete_partition(4, "a", c4.fence, 1)
    c5 = claimed(strategy, 5, "b")
    strategy.fail_partition(5, "b", c5.fence, "x", retryable=False)

    def ids(**kw):
        return [p.partition_id for p in strategy.get_filtered_partitions(**kw)]

    assert ids(status="pending") == [6, 7]
    assert ids(status="claimed") == [1, 2]
    assert ids(status=Status.RUNNING) == [3]
    assert ids(status="completed") == [4]
    assert ids(status="failed") == [5]
    assert ids(status=["claimed", "running"], node_id="a") == [1, 3]
    assert ids(node_id="b") == [2, 5]
    assert ids(status=["pending", "completed"], limit=2) == [4, 6]
    assert ids() == list(range(1, 8))
    with pytest.raises(InvalidPartition, match="unknown partition status 'done'"):
        strategy.get_filtered_partitions(status="done")


def test_get_partition_missing_and_get_partitions_skips_missing(strategy):
    strategy.create_partitions_if_not_exist(parts(1, 3))
    assert strategy.get_partition(2) is None
    assert [p.partition_id for p in strategy.get_partitions([3, 2, 1])] == [3, 1]
    assert strategy.get_partitions([]) == []


def test_stats_rates(strategy):
    assert strategy.get_partition_stats().completion_rate == 0.0
    strategy.create_partitions_if_not_exist(parts(1, 2, 3, 4))
    for pid, ok in ((1, True), (2, False)):
        p = claimed(strategy, pid)
        if ok:
            strategy.complete_partition(pid, "n1", p.fence, 1)
        else:
            strategy.fail_partition(pid, "n1", p.fence, "x", retryable=False)
    s = strategy.get_partition_stats()
    assert (s.completion_rate, s.failure_rate) == (0.25, 0.25)
    d = s.as_dict()
    assert d["total_count"] == 4 and d["completed_count"] == 1 and d["failure_rate"] == 0.25


# --------------------------------------------------------- update (CAS)

def test_update_compare_and_set(strategy):
    strategy.create_partitions_if_not_exist(parts(1))
    p = strategy.get_partition(1)
    p.error = "note"
    p.options = {"a": 1}
    updated = strategy.update_partition(p)
    assert updated.version == p.version + 1 and updated.error == "note" and updated.options == {"a": 1}
    # p is now one version behind
    with pytest.raises(VersionConflict) as info:
        strategy.update_partition(p)
    assert info.value.current_version == updated.version
    assert f"version {updated.version}, not {p.version}" in str(info.value)
    # explicit expected version
    with pytest.raises(VersionConflict):
        strategy.update_partition(updated, expected_version=updated.version - 1)


def test_update_status_moves_indexes_and_stats(strategy):
    strategy.create_partitions_if_not_exist(parts(1, 2))
    p = strategy.get_partition(1)
    p.status, p.node_id = Status.CLAIMED, "op"
    held = strategy.update_partition(p)
    assert held.status == "claimed" and held.node_id == "op" and held.fence > 0
    check_invariants(strategy)
    held.status = "completed"
    done = strategy.update_partition(held)
    assert done.status == "completed"
    q = strategy.get_partition(2)
    q.status = "failed"
    strategy.update_partition(q)
    s = strategy.get_partition_stats()
    assert (s.pending_count, s.completed_count, s.failed_count) == (0, 1, 1)
    check_invariants(strategy)
    # back to pending (an operator's reset of one partition)
    done.status = "pending"
    assert strategy.update_partition(done).status == "pending"
    check_invariants(strategy)


@pytest.mark.parametrize("start, to", [
    ("completed", "running"), ("completed", "failed"), ("failed", "running"),
    ("failed", "completed"), ("pending", "completed")])
def test_update_refuses_disallowed_transitions(strategy, start, to):
    strategy.create_partitions_if_not_exist(parts(1))
    p = strategy.get_partition(1)
    if start != "pending":
        p.status, p.node_id = "claimed", "n1"
        p = strategy.update_partition(p)
        p.status = start
        p = strategy.update_partition(p)
    p.status = to
    p.node_id = p.node_id or "n1"
    with pytest.raises(InvalidPartition, match=f"status {start} -> {to} is not an allowed transition"):
        strategy.update_partition(p)
    assert strategy.get_partition(1).status == start


def test_update_to_a_held_status_needs_a_node(strategy):
    strategy.create_partitions_if_not_exist(parts(1))
    p = strategy.get_partition(1)
    p.status = "running"
    with pytest.raises(InvalidPartition, match="without a node"):
        strategy.update_partition(p)


def test_update_unknown_status_and_missing_partition(strategy):
    strategy.create_partitions_if_not_exist(parts(1))
    p = strategy.get_partition(1)
    p.status = "archived"  # type: ignore[assignment]
    with pytest.raises(InvalidPartition, match="unknown partition status 'archived'"):
        strategy.update_partition(p)
    ghost = Partition(partition_id=77, min_id=1, max_id=2)
    with pytest.raises(InvalidPartition, match="partition 77 does not exist"):
        strategy.update_partition(ghost)


# ---------------------------------------------------------------- delete

def test_delete(strategy):
    strategy.create_partitions_if_not_exist(parts(1, 2, 3))
    claimed(strategy, 2)
    assert strategy.delete_partition(2) is True
    assert strategy.delete_partition(2) is False
    assert strategy.delete_partitions([1, 3, 99]) == 2
    assert strategy.delete_partitions([]) == 0
    assert strategy.get_all_partitions() == []
    s = strategy.get_partition_stats()
    assert (s.total_count, s.pending_count, s.claimed_count) == (0, 0, 0)
    check_invariants(strategy)
    # the range is free again
    strategy.create_partitions_if_not_exist([{"partition_id": 2, "min_id": 1, "max_id": 100}])
    assert strategy.get_partition(2).max_id == 100


# ---------------------------------------------------------------- garbage

GARBAGE = ["not json", "[1, 2]", '"a string"', '{"id": 5}', '{"status": "pending"}',
           '{"id": 5, "min": "51", "max": "60", "status": "weird"}']


def _plant(strategy, pid: int, raw: str) -> None:
    k = strategy.keys
    if isinstance(strategy, HashPartitionStrategy):
        strategy.redis.hset(k.partitions, str(pid), raw)
    else:
        strategy.redis.set(k.partition(pid), raw)
    strategy.redis.zadd(k.ids, {f"{pid}:51:60": 51})  # so cleanup finds the key


@pytest.mark.parametrize("raw", GARBAGE)
def test_garbage_in_redis_is_a_clear_corrupt_partition_error(strategy, raw):
    strategy.create_partitions_if_not_exist(parts(1))
    _plant(strategy, 5, raw)
    with pytest.raises(CorruptPartition, match="partition 5 holds a value that is not an elk partition"):
        strategy.get_partition(5)
    with pytest.raises(CorruptPartition, match="partition 5"):
        strategy.get_all_partitions()
    before = strategy.get_partition_stats()
    # the scripts refuse to touch it too, and change nothing
    with pytest.raises(CorruptPartition, match="partition 5 holds a value that is not an elk partition"):
        strategy.claim(5, "n1")
    with pytest.raises(CorruptPartition, match="partition 5"):
        strategy.complete_partition(5, "n1", 1, 1)
    assert strategy.get_partition_stats() == before
    assert strategy.get_partition(1).status == "pending"  # neighbours unaffected


# ------------------------------------------------------------- isolation

def test_two_namespaces_on_one_redis_never_see_each_other(strategy_cls, redis_client):
    from tests.conftest import cleanup_namespace, unique_namespace

    a_ns, b_ns = unique_namespace("a"), unique_namespace("b")
    try:
        a, b = strategy_cls(redis_client, a_ns), strategy_cls(redis_client, b_ns)
        a.create_partitions_if_not_exist(parts(1, 2, 3))
        b.create_partitions_if_not_exist([{"partition_id": 1, "min_id": 500, "max_id": 999}])
        pa = claimed(a, 1, "n1")
        assert b.get_partition(1).status == "pending" and b.get_partition(1).min_id == 500
        assert b.acquire_partition(1, "n1") is not None  # a's claim doesn't hold b's partition
        with pytest.raises(StaleFenceError):
            b.complete_partition(2, "n1", 1, 1)  # a's partition 2 is unknown to b
        a.complete_partition(1, "n1", pa.fence, 1)
        assert b.get_partition(1).status == "claimed"
        assert a.get_partition_stats().total_count == 3
        assert b.get_partition_stats().total_count == 1
        assert [p.partition_id for p in b.get_all_partitions()] == [1]
        assert b.delete_partitions([2, 3]) == 0
        assert a.get_partition_stats().total_count == 3
        check_invariants(a)
        check_invariants(b)
    finally:
        cleanup_namespace(redis_client, a_ns)
        cleanup_namespace(redis_client, b_ns)


def test_partition_state_has_no_ttl_and_simple_lock_is_the_lease(strategy):
    strategy.create_partitions_if_not_exist(parts(1))
    p = claimed(strategy, 1)
    r, k = strategy.redis, strategy.keys
    if isinstance(strategy, SimpleStrategy):
        assert r.ttl(k.partition(1)) == -1
        assert text(r.get(k.lock(1))) == f"n1|{p.fence}"
        assert 0 < r.pttl(k.lock(1)) <= strategy.settings.ms("partition_lock_expiry")
    else:
        assert r.ttl(k.partitions) == -1
    for key in k.all_fixed():
        assert r.ttl(key) in (-1, -2), key


# ------------------------------------------------ batched calls (one script)

def test_claim_many_and_complete_many(strategy):
    strategy.create_partitions_if_not_exist(parts(*range(1, 7)))
    claimed(strategy, 3, "other")
    claims = strategy.claim_many([1, 2, 3, 4, 99], "n1")
    assert [(c.partition_id, c.code) for c in claims] == [
        (1, "ok"), (2, "ok"), (3, "held"), (4, "ok"), (99, "missing")]
    assert [(c.min_id, c.max_id) for c in claims[:2]] == [(11, 20), (21, 30)]
    out = strategy.complete_many("n1", [(1, claims[0].fence, 5), (2, claims[1].fence + 1, 5),
                                        (4, claims[3].fence, 7)])
    assert isinstance(out[0], int) and isinstance(out[2], int)
    assert isinstance(out[1], StaleFenceError) and out[1].partition_id == 2
    s = strategy.get_partition_stats()
    assert (s.completed_count, s.items_processed, s.stale_writes) == (2, 12, 1)
    assert strategy.claim_many([], "n1") == [] and strategy.complete_many("n1", []) == []
    check_invariants(strategy)


def test_batched_calls_with_an_id_twice_act_as_two_calls(strategy):
    strategy.create_partitions_if_not_exist(parts(1))
    first, second = strategy.claim_many([1, 1], "n1")
    assert (first.code, second.code) == ("ok", "held") and second.fence == first.fence > 0
    a, b = strategy.complete_many("n1", [(1, first.fence, 4), (1, first.fence, 4)])
    assert isinstance(a, int) and b == a  # the second is a repeat of the owner's own
    s = strategy.get_partition_stats()
    assert (s.counters["claims"], s.items_processed, s.stale_writes) == (1, 4, 0)
    check_invariants(strategy)


def test_claim_many_in_several_script_calls(strategy, monkeypatch):
    monkeypatch.setattr(strategy, "BATCH", 3)
    strategy.create_partitions_if_not_exist(parts(*range(8)))
    claims = strategy.claim_many(range(8), "n1", window=5)
    assert [c.code for c in claims] == ["ok"] * 5 + ["window"] * 3
    out = strategy.complete_many("n1", [(c.partition_id, c.fence, 1) for c in claims])
    assert [isinstance(v, int) for v in out] == [True] * 5 + [False] * 3
    check_invariants(strategy)


def test_claim_many_applies_the_window_in_order(strategy):
    strategy.create_partitions_if_not_exist(parts(1, 2, 3))
    codes = [c.code for c in strategy.claim_many([1, 2, 3], "n1", window=2)]
    assert codes == ["ok", "ok", "window"]


def test_claim_many_with_a_corrupt_partition_claims_nothing(strategy):
    strategy.create_partitions_if_not_exist(parts(1, 2))
    _plant(strategy, 5, "garbage")
    with pytest.raises(CorruptPartition, match="partition 5"):
        strategy.claim_many([1, 5, 2], "n1")
    assert [str(p.status) for p in strategy.get_partitions([1, 2])] == ["pending", "pending"]
    assert strategy.get_partition(1).attempts == 0


def test_batched_calls_survive_a_script_cache_flush(private_redis, strategy_cls):
    client = redis.Redis.from_url(private_redis.url)
    s = strategy_cls(client, "flush")
    s.create_partitions_if_not_exist(parts(1, 2))
    client.script_flush()  # a private server: as after a Redis restart
    claims = s.claim_many([1, 2], "n1")
    assert [c.code for c in claims] == ["ok", "ok"]
    client.script_flush()
    assert all(isinstance(v, int) for v in s.complete_many("n1", [(c.partition_id, c.fence, 1)
                                                                   for c in claims]))
    client.close()


def test_create_batches_past_stored_ranges_and_overlapping_a_batch_span(strategy):
    # the fast path (nothing stored meets the batch's span) and the slow one
    strategy.create_partitions_if_not_exist(parts(5, 6))  # 51..70
    strategy.create_partitions_if_not_exist(parts(7, 8, 9))  # after: fast path
    strategy.create_partitions_if_not_exist(parts(0, 1, 2))  # before: fast path
    # span 31..100 meets 51..90, but the new ranges themselves don't overlap
    strategy.create_partitions_if_not_exist(parts(3, 10))
    with pytest.raises(PartitionConflict, match="overlaps partition 5:51:60"):
        strategy.create_partitions_if_not_exist(
            parts(4) + [{"partition_id": 11, "min_id": 60, "max_id": 60}])
    # a stored range that starts before the span and reaches into it
    with pytest.raises(PartitionConflict, match="overlaps partition 10:101:110"):
        strategy.create_partitions_if_not_exist([{"partition_id": 12, "min_id": 105, "max_id": 200}])
    assert strategy.get_partition(4) is None and strategy.get_partition(11) is None
    assert [p.partition_id for p in strategy.get_all_partitions()] == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10]
    check_invariants(strategy)


def test_only_a_probe_success_closes_the_breaker(make_strategy):
    s = make_strategy(**BREAKER)
    s.create_partitions_if_not_exist(parts(*range(1, 8)))
    early = s.claim(7, "slow")  # running since before the trip
    for pid in (1, 2, 3):
        _fail(s, pid)
    s.complete_partition(7, "slow", early.fence, 1)  # proves nothing about recovery
    assert _breaker(s)["state"] == "open"
    probe = eventually(lambda: (lambda c: c if c.ok else None)(s.claim(4, "n1")))
    assert _breaker(s)["state"] == "half_open"
    s.complete_partition(4, "n1", probe.fence, 1)
    assert _breaker(s)["state"] == "closed"


def test_a_breaker_refusal_resends_when_probes_are_admitted(redis_client, strategy_cls, namespace):
    s = strategy_cls(redis_client, namespace, ElkSettings(
        **{**BREAKER, "circuit_breaker_open_timeout": 30}, defer_delay=1))
    s.create_partitions_if_not_exist(parts(*range(1, 6)))
    for pid in (1, 2, 3):
        _fail(s, pid)
    assert s.claim(4, "n1").code == "breaker"
    opened = int(_breaker(s)["opened_at"])
    member = next(m for m in redis_client.zrange(s.keys.pending, 0, -1)
                  if text(m).startswith("4:"))
    # re-sent when the open timeout ends, not every defer_delay meanwhile
    assert redis_client.zscore(s.keys.pending, member) == opened + 30_000


def test_items_stat_follows_reruns_and_edits(strategy):
    strategy.create_partitions_if_not_exist(parts(1))
    c = strategy.claim(1, "n1")
    strategy.complete_partition(1, "n1", c.fence, 10)
    p = strategy.get_partition(1)
    p.status = "pending"  # an operator re-runs it
    strategy.update_partition(p)
    assert strategy.get_partition_stats().items_processed == 0
    c = strategy.claim(1, "n1")
    strategy.complete_partition(1, "n1", c.fence, 10)
    assert strategy.get_partition_stats().items_processed == 10
    p = strategy.get_partition(1)
    p.items_processed = 3
    strategy.update_partition(p)
    assert strategy.get_partition_stats().items_processed == 3
    strategy.delete_partition(1)
    assert strategy.get_partition_stats().items_processed == 0


def test_unregistering_release_keeps_the_count_of_what_is_still_held(strategy):
    strategy.create_partitions_if_not_exist(parts(1, 2))
    strategy.claim(1, "n1")
    strategy.claim(2, "n1")
    strategy.release_partitions("n1", [(1, None)], unregister=True)
    assert int(strategy.redis.hget(strategy.keys.inflight, "n1")) == 1
    check_invariants(strategy)
