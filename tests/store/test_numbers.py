"""Big numbers through the scripts (issue 11, finding 3).

Lua numbers are doubles (exact to 2^53) and Redis's cjson writes numbers
with 14 significant digits, so partition ids, range IDs and item counts
travel as decimal strings and are checked before a script writes anything.
Real Redis, both strategies."""

from __future__ import annotations

import pytest

from elk_celery import InvalidPartition, Partition
from elk_celery.models import MAX_ITEMS, MAX_PARTITION_ID
from elk_celery.store.connection import text
from elk_celery.store.namespace import NamespaceStore

from tests.invariants import check_invariants
from tests.raw_script import claim_argv, run_script, stored_values

BIG_PID = 10**14 + 7


def _snapshot(s) -> tuple:
    """Everything a half-written script could have changed."""
    r, k = s.redis, s.keys
    return (stored_values(s, [1, 2, BIG_PID]), r.hgetall(k.stats), r.zrange(k.leases, 0, -1, withscores=True),
            r.zrange(k.pending, 0, -1), r.hgetall(k.inflight), r.hgetall(k.meta))


def _claim_argv(s, ids, bad=None) -> list:
    """claim.lua's ARGV for ``ids``; ``bad`` replaces ARGV slots (1-based)."""
    args = claim_argv(s)
    args.append("")  # ARGV[13]: no claim token
    for slot, value in (bad or {}).items():
        args[slot - 1] = value
    return [*args, *ids]


# --------------------------------------------------------------- partition ids

@pytest.mark.parametrize("pid", [BIG_PID, 2**53 + 1, MAX_PARTITION_ID])
def test_partition_ids_beyond_1e14_round_trip(strategy, pid):
    strategy.create_partitions_if_not_exist([{"partition_id": pid, "min_id": 1, "max_id": 10}])
    p = strategy.get_partition(pid)
    assert p is not None and p.partition_id == pid
    c = strategy.claim(pid, "n1")
    assert c.ok and c.partition_id == pid
    assert strategy.complete_partition(pid, "n1", c.fence, 10) > 0
    assert [q.partition_id for q in strategy.get_all_partitions()] == [pid]
    # the leader's id allocator stays ahead of it, exactly
    assert int(text(strategy.redis.hget(strategy.keys.meta, "next_pid"))) == pid + 1
    check_invariants(strategy)


def test_dispatch_and_recovery_name_big_ids_exactly(strategy):
    strategy.create_partitions_if_not_exist([{"partition_id": BIG_PID, "min_id": 1, "max_id": 10},
                                             {"partition_id": BIG_PID + 1, "min_id": 11, "max_id": 20}])
    store = NamespaceStore(strategy)
    assert sorted(store.dispatch().due) == [(BIG_PID, 1, 10), (BIG_PID + 1, 11, 20)]
    strategy.claim(BIG_PID, "n1")
    store.heartbeat("n1")
    strategy.redis.zadd(strategy.keys.nodes, {"n1": 0})  # its node is dead
    assert store.recover() == ([BIG_PID], [], [])


@pytest.mark.parametrize("pid", [MAX_PARTITION_ID + 1, 2**64, -1])
def test_partition_ids_out_of_range_are_refused_with_nothing_written(strategy, pid):
    with pytest.raises(InvalidPartition, match="partition_id must be"):
        strategy.create_partitions_if_not_exist([{"partition_id": pid, "min_id": 1, "max_id": 10}])
    assert strategy.get_partition_stats().total_count == 0


@pytest.mark.parametrize("bad", [str(MAX_PARTITION_ID + 1), "1.5", "1e3", "01", "-1", "", "x"])
def test_scripts_refuse_bad_partition_ids(strategy, bad):
    """The Lua guard, for callers that bypass the Python checks."""
    before = _snapshot(strategy)
    with pytest.raises(InvalidPartition, match="partition id"):
        run_script(strategy, "claim", [bad], _claim_argv(strategy, [bad]))
    with pytest.raises(InvalidPartition, match="partition id"):
        run_script(strategy, "delete", [bad], [bad])
    assert _snapshot(strategy) == before


# ------------------------------------------------------------------- range IDs

def test_adjacent_ranges_above_2_53_are_not_overlaps(strategy):
    b = 2**62
    strategy.create_partitions_if_not_exist([{"partition_id": 1, "min_id": b, "max_id": b + 9}])
    strategy.create_partitions_if_not_exist([{"partition_id": 2, "min_id": b + 10, "max_id": b + 19},
                                             {"partition_id": 3, "min_id": b - 10, "max_id": b - 1}])
    from elk_celery import PartitionConflict
    for lo, hi in ((b + 5, b + 7), (b - 100, b - 10), (b + 19, b + 30), (b - 1, b)):
        with pytest.raises(PartitionConflict, match="overlaps partition"):
            strategy.create_partitions_if_not_exist([{"partition_id": 9, "min_id": lo, "max_id": hi}])
    assert strategy.get_partition(9) is None
    assert [(p.min_id, p.max_id) for p in strategy.get_all_partitions()] == [
        (b, b + 9), (b + 10, b + 19), (b - 10, b - 1)]
    check_invariants(strategy)


@pytest.mark.parametrize("lo, hi", [(2**63, 2**63 + 5), (-(2**63) - 1, 0)])
def test_range_ids_beyond_int64_are_refused(strategy, lo, hi):
    with pytest.raises(InvalidPartition, match="must be between"):
        strategy.create_partitions_if_not_exist([{"partition_id": 1, "min_id": lo, "max_id": hi}])
    assert strategy.get_partition_stats().total_count == 0


# ------------------------------------------------------------------ item counts

def test_item_counts_up_to_the_limit_are_exact(strategy):
    strategy.create_partitions_if_not_exist([{"partition_id": i, "min_id": 10 * i, "max_id": 10 * i + 9}
                                             for i in (1, 2, 3)])
    c1, c2 = strategy.claim(1, "n1"), strategy.claim(2, "n1")
    strategy.complete_partition(1, "n1", c1.fence, MAX_ITEMS)
    assert strategy.get_partition(1).items_processed == MAX_ITEMS
    assert strategy.get_partition_stats().items_processed == MAX_ITEMS
    c3 = strategy.claim(3, "n1")
    out = strategy.complete_many("n1", [(2, c2.fence, MAX_ITEMS - 1), (3, c3.fence, MAX_ITEMS)])
    assert all(isinstance(v, int) for v in out)
    assert strategy.get_partition_stats().items_processed == 3 * MAX_ITEMS - 1
    assert strategy.delete_partitions([1, 3]) == 2
    assert strategy.get_partition_stats().items_processed == MAX_ITEMS - 1
    check_invariants(strategy)


@pytest.mark.parametrize("items", [MAX_ITEMS + 1, 10**17, 10**17 + 3])
def test_complete_with_too_many_items_is_refused_and_nothing_is_half_written(strategy, items):
    strategy.create_partitions_if_not_exist([{"partition_id": 1, "min_id": 1, "max_id": 10}])
    c = strategy.claim(1, "n1")
    before = _snapshot(strategy)
    with pytest.raises(InvalidPartition, match="items_processed must be"):
        strategy.complete_partition(1, "n1", c.fence, items)
    # and the script's own guard, for callers that bypass the Python check
    with pytest.raises(InvalidPartition, match="items"):
        run_script(strategy, "complete", [1], ["n1", "0", 1, c.fence, str(items)])
    assert _snapshot(strategy) == before
    assert str(strategy.get_partition(1).status) == "running"
    check_invariants(strategy)
    # the owner can still complete it with a sane count
    strategy.complete_partition(1, "n1", c.fence, 10)
    check_invariants(strategy)


def test_update_with_too_many_items_is_refused_and_nothing_is_half_written(strategy):
    strategy.create_partitions_if_not_exist([{"partition_id": 1, "min_id": 1, "max_id": 10}])
    p = strategy.get_partition(1)
    p.status, p.node_id, p.items_processed = "completed", "n1", 10**17
    before = _snapshot(strategy)
    with pytest.raises(InvalidPartition, match="items_processed must be"):
        strategy.update_partition(p)
    with pytest.raises(InvalidPartition, match="items"):
        run_script(strategy, "update", [1], [1, "", '{"status":"running","node":"n1","items":1e17}', 1000])
    assert _snapshot(strategy) == before
    check_invariants(strategy)


# ---------------------------------------------------------- every numeric ARGV

def _bad_calls(s, c):
    """(script, ids, args) with one bad numeric argument each."""
    return [
        ("claim", [2], _claim_argv(s, [2], {3: "abc"})),                     # lease ms
        ("claim", [2], _claim_argv(s, [2], {6: "-1"})),                      # window
        ("claim", [2], _claim_argv(s, [2], {10: "1.5"})),                    # probes
        ("complete", [1], ["n1", "0", 1, "x", 1]),                            # fence
        ("complete", [1], ["n1", "0", 1, c.fence, "-3"]),                     # items
        ("fail", [1], [1, "n1", c.fence, "e", "x", 1000, 1000, "1", "0", 5, 10, 1000]),
        ("fail", [1], [1, "n1", "1e5", "e", 3, 1000, 1000, "1", "0", 5, 10, 1000]),
        ("release", [1], ["n1", "0", 1, "f"]),
        ("renew", [1], ["n1", "soon", "0", 1, c.fence]),
        ("renew", [1], ["n1", 1000, "0", 1, "1.0"]),
        ("recover", [1], ["", "many", 1]),
        ("dispatch", [], ["", "ten", 1000]),
        ("dispatch", [], ["", 10, "-5"]),
        ("heartbeat", [], ["n1", "forever", "{}"]),
        ("leader", [], ["acquire", "n1", "1e3"]),
        ("update", [1], [1, "v1", "{}", 1000]),
        ("create", [5], ["", "", "", '[{"id":5,"min":"1","max":"2","opts":""}]']),
        ("create", [5], ["", "", "", '[{"id":"5","min":1.5,"max":"2","opts":""}]']),
        ("create", [5], ["", "", "", '[{"id":"5","min":"9","max":"2","opts":""}]']),
        ("create", [5], ["x", "", "", '[]']),
        ("retry_failed", ["1x"], ["1x"]),
        ("compact", [], ["", "start"]),
        ("gaps", [], ["1", "x", 10, "0"]),
    ]


def test_every_script_checks_its_numeric_arguments_before_writing(strategy):
    strategy.create_partitions_if_not_exist([{"partition_id": 1, "min_id": 1, "max_id": 10},
                                             {"partition_id": 2, "min_id": 11, "max_id": 20}])
    c = strategy.claim(1, "n1")
    for op, ids, args in _bad_calls(strategy, c):
        before = _snapshot(strategy)
        with pytest.raises(InvalidPartition) as info:
            run_script(strategy, op, ids, args)
        assert _snapshot(strategy) == before, (op, args)
        assert "must be" in str(info.value) or "expected" in str(info.value), str(info.value)
    check_invariants(strategy)


@pytest.mark.parametrize("call", [
    lambda s: s.complete_partition(1, "n1", "1", 1),
    lambda s: s.complete_partition(1, "n1", -1, 1),
    lambda s: s.fail_partition(1, "n1", 1.5, "x"),
    lambda s: s.release_partition(1, "n1", fence="1"),
    lambda s: s.renew_leases("n1", [(1, None)]),
    lambda s: s.claim("1", "n1"),
    lambda s: s.claim(1, ""),
    lambda s: s.delete_partitions(["1"]),
    lambda s: s.update_partition(Partition(partition_id=1, min_id=1, max_id=10), expected_version="3"),
])
def test_the_api_checks_numbers_and_node_ids_before_sending(strategy, call):
    strategy.create_partitions_if_not_exist([{"partition_id": 1, "min_id": 1, "max_id": 10}])
    before = _snapshot(strategy)
    with pytest.raises(InvalidPartition, match="must be"):
        call(strategy)
    assert _snapshot(strategy) == before
