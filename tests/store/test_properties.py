"""Property-based: random sequences of operations on a few partitions keep
the scripts' bookkeeping exact. After every step, the stats equal a recount
of the partitions and the status indexes (pending, leases, failed, ids,
in-flight per node) match the statuses (see invariants.check_invariants);
writes by the owner succeed exactly when it holds the partition with that
fence, and fences never go down."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from elk_celery import (ElkSettings, InvalidPartition, PartitionConflict, StaleFenceError,
                        VersionConflict)
from elk_celery.store.connection import text

from tests.invariants import check_invariants
from tests.raw_script import run_script

PIDS = st.integers(0, 3)
NODES = st.sampled_from(["a", "b"])
#: "owner" = whoever holds the partition now, so owner writes happen often
WRITERS = st.sampled_from(["owner", "owner", "a", "b"])
RIGHT_FENCE = st.sampled_from([True, True, True, False])
STATUSES = st.sampled_from(["pending", "claimed", "running", "completed", "failed"])


def _range(pid: int, wide: bool = False) -> dict:
    # ``wide`` ranges clash with the neighbour (and with the same id's normal range)
    return {"partition_id": pid, "min_id": pid * 10, "max_id": pid * 10 + (14 if wide else 9)}


OPS = st.one_of(
    st.tuples(st.just("create"), st.lists(PIDS, min_size=1, max_size=4, unique=True), st.booleans()),
    st.tuples(st.just("claim"), PIDS, NODES, st.sampled_from(["claimed", "running"]),
              st.booleans(), st.booleans(), st.sampled_from([0, 1, 2])),
    st.tuples(st.just("claim_short"), PIDS, NODES),
    st.tuples(st.just("claim_many"), st.lists(PIDS, min_size=1, max_size=5), NODES,
              st.sampled_from([0, 2])),
    st.tuples(st.just("complete_many"), st.lists(PIDS, min_size=1, max_size=5), NODES),
    st.tuples(st.just("complete"), PIDS, WRITERS, RIGHT_FENCE),
    st.tuples(st.just("fail"), PIDS, WRITERS, RIGHT_FENCE, st.sampled_from([False, False, True])),
    st.tuples(st.just("release"), PIDS, WRITERS),
    st.tuples(st.just("renew"), PIDS, WRITERS, st.booleans()),
    st.tuples(st.just("delete"), st.lists(PIDS, max_size=3)),
    st.tuples(st.just("update"), PIDS, STATUSES, NODES, st.booleans()),
    st.tuples(st.just("expire_and_recover")),
    st.tuples(st.just("retry_failed"), st.booleans()),
)


def _writer(s, pid: int, node: str) -> str:
    if node != "owner":
        return node
    cur = s.get_partition(pid)
    return (cur.node_id if cur is not None else "") or "a"


def _apply(op: tuple, s, short) -> None:
    kind = op[0]
    if kind in ("complete", "fail", "release", "renew"):
        op = (kind, op[1], _writer(s, op[1], op[2]), *op[3:])
    if kind == "create":
        _, pids, wide = op
        batch = [_range(pid, wide and i == 0) for i, pid in enumerate(pids)]
        try:
            s.create_partitions_if_not_exist(batch)
        except (PartitionConflict, InvalidPartition):
            pass  # overlaps within the batch or with stored partitions: all or nothing
    elif kind == "claim":
        _, pid, node, target, preempt, force, window = op
        s.claim(pid, node, target=target, allow_preemption=preempt, force=force, window=window)
    elif kind == "claim_many":  # one script call; ids may repeat
        _, pids, node, window = op
        claims = s.claim_many(pids, node, window=window)
        assert [c.partition_id for c in claims] == pids
        ok = [c.partition_id for c in claims if c.ok]
        assert len(ok) == len(set(ok)), f"a partition was claimed twice in one call: {claims}"
    elif kind == "complete_many":  # the node's own fence where it holds one, else a stale one
        _, pids, node = op
        cur = {p.partition_id: p for p in s.get_partitions(set(pids))}
        done = [(pid, cur[pid].fence if pid in cur else 1, 1) for pid in pids]
        results = s.complete_many(node, done)
        for pid, r in zip(pids, results):
            p = cur.get(pid)
            # the owner's, or a repeat of its own completion (same node and fence)
            expect_ok = p is not None and str(p.status) in ("claimed", "running", "completed") \
                and p.node_id == node
            assert isinstance(r, int) == expect_ok, (pid, node, p, r)
    elif kind == "claim_short":
        _, pid, node = op
        short.claim(pid, node, target="claimed")
    elif kind in ("complete", "fail"):
        pid, node, right_fence = op[1], op[2], op[3]
        cur = s.get_partition(pid)
        fence = (cur.fence if cur else 1) + (0 if right_fence else 1)
        owns = (cur is not None and str(cur.status) in ("claimed", "running")
                and cur.node_id == node and right_fence)
        if kind == "complete" and cur is not None and str(cur.status) == "completed" \
                and cur.node_id == node and right_fence:
            owns = True  # a repeat of its own completion: done, not stale
        try:
            if kind == "complete":
                s.complete_partition(pid, node, fence, 1)
            else:
                s.fail_partition(pid, node, fence, "boom", retryable=op[4])
            assert owns, f"{kind} by a non-owner was accepted: {cur}"
        except StaleFenceError:
            assert not owns, f"{kind} by the owner with its fence was refused: {cur}"
    elif kind == "release":
        _, pid, node = op
        s.release_partition(pid, node)
    elif kind == "renew":
        _, pid, node, start = op
        cur = s.get_partition(pid)
        s.renew_leases(node, [(pid, cur.fence if cur else 1)], start=start)
    elif kind == "delete":
        s.delete_partitions(op[1])
    elif kind == "update":
        _, pid, status, node, stale = op
        cur = s.get_partition(pid)
        if cur is None:
            return
        cur.status, cur.node_id = status, node
        try:
            s.update_partition(cur, expected_version=cur.version - 1 if stale else None)
            assert not stale, "a stale compare-and-set was accepted"
        except VersionConflict:
            assert stale, "a compare-and-set with the current version conflicted"
        except InvalidPartition:
            pass  # a transition the scripts do not allow
    elif kind == "expire_and_recover":
        time.sleep(0.004)  # let the 2 ms leases of claim_short run out
        ids = [int(text(m)) for m in s.redis.zrange(s.keys.leases, 0, -1)]
        if ids:
            run_script(s, "recover", ids, ["", s.settings.max_retries, *ids])
    elif kind == "retry_failed":
        s.retry_failed() if op[1] else s.retry_failed([0, 1, 2])
    else:  # pragma: no cover
        raise AssertionError(op)


@pytest.mark.timeout(900)  # shrinking a failure takes minutes: let it report
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, min_size=10, max_size=40))
def test_stats_and_indexes_always_equal_a_recount(strategy_cls, redis_client, ops):
    # strategy_cls is an immutable class: sharing it across examples is safe;
    # every example gets its own namespace.
    from tests.conftest import cleanup_namespace, unique_namespace

    ns = unique_namespace("prop")
    # the breaker stays on but re-closes fast, so failures don't stall the sequence
    s = strategy_cls(redis_client, ns, ElkSettings(
        max_retries=1, retry_backoff=0, circuit_breaker_open_timeout=0.01))
    short = strategy_cls(redis_client, ns, ElkSettings(
        heartbeat_interval=0.0005, partition_lock_expiry=0.002))
    fences: dict[int, int] = {}
    try:
        # start from a few partitions (pids 0..2), so most steps find something to do
        s.create_partitions_if_not_exist([_range(pid) for pid in range(3)])
        for op in ops:
            _apply(op, s, short)
            check_invariants(s)
            for p in s.get_all_partitions():
                assert p.fence >= fences.get(p.partition_id, 0), ("fence went down", op, p)
                fences[p.partition_id] = p.fence
            for pid in list(fences):
                if s.get_partition(pid) is None:
                    del fences[pid]  # deleted: a re-created partition starts again at 0
    finally:
        cleanup_namespace(redis_client, ns)
