"""The Lua scripts: how they are composed and documented, and the operations
the strategy API does not wrap (recovery, node liveness, leader lease and
fencing, dispatch), called through the same script runner, on a real Redis."""

from __future__ import annotations

import re
from importlib import resources

import pytest
import redis

from elk_celery import ElkSettings, NamespaceStore, PartitionConflict, StaleLeaderError
from elk_celery.store import scripts
from elk_celery.store.connection import text

from tests.invariants import check_invariants, eventually
from tests.partitions import SHORT, claimed, parts
from tests.raw_script import run_script

LUA = resources.files("elk_celery.store").joinpath("lua")
LUA_FILES = sorted(p.name for p in LUA.iterdir() if p.name.endswith(".lua"))
OP_FILES = [f"{op}.lua" for op in scripts.OPERATIONS]


def _lua(name: str) -> str:
    return LUA.joinpath(name).read_text()


def _header(src: str) -> str:
    lines = []
    for line in src.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return "\n".join(lines)


# ------------------------------------------------------------ composition

def test_every_operation_has_a_script_and_no_stray_files():
    assert set(OP_FILES) | {"_lib.lua", "_io_hash.lua", "_io_simple.lua"} == set(LUA_FILES)


@pytest.mark.parametrize("layout", scripts.LAYOUTS)
def test_source_is_lib_plus_adapter_plus_operation(layout):
    src = scripts.source("claim", layout)
    lib, io, op = _lua("_lib.lua"), _lua(f"_io_{layout}.lua"), _lua("claim.lua")
    assert src == "\n".join((lib, io, op))
    assert src.index("local function move") < src.index("local function p_load") < src.index(
        "local function claim_one")


def test_unknown_operation_or_layout_is_refused():
    with pytest.raises(ValueError, match="no script 'nope'"):
        scripts.source("nope", "hash")
    with pytest.raises(ValueError, match="layout 'json'"):
        scripts.source("claim", "json")


@pytest.mark.parametrize("name", OP_FILES)
def test_each_script_header_documents_keys_and_every_argv_slot(name):
    src = _lua(name)
    head = _header(src)
    body = src[len(head):]
    assert head.startswith(f"-- {name}:"), "header names the script"
    assert "KEYS:" in head and "Reply:" in head
    used = {int(n) for n in re.findall(r"ARGV\[(\d+)\]", body)}
    documented = {int(n) for n in re.findall(r"--\s+ARGV\[(\d+)", head)}
    open_ended = re.findall(r"ARGV\[(\d+)\.\.\]", head)  # "ARGV[3..] pairs ..."
    for n in used:
        assert n in documented or any(n >= int(s) for s in open_ended), \
            f"{name}: ARGV[{n}] is used but not documented in the header"


@pytest.mark.parametrize("name", LUA_FILES)
def test_scripts_use_keys_only_through_KEYS_and_never_scan(name):
    src = _lua(name)
    assert not re.search(r"redis\.call\(\s*'(KEYS|SCAN|FLUSHDB|FLUSHALL)'", src, re.I)
    for m in re.finditer(r"redis\.call\(\s*'(\w+)'\s*(?:,\s*([^,)]+))?", src):
        cmd, first = m.group(1), (m.group(2) or "").strip()
        if cmd.upper() == "TIME":
            continue
        assert first.startswith("KEYS["), f"{name}: {m.group(0)} names a key not from KEYS"


# ---------------------------------------------------------- via the runner

def _heartbeat(s, node: str, lifetime_ms: int) -> list:
    return run_script(s, "heartbeat", [], [node, lifetime_ms, '{"host": "test"}'])


def _recover(s, ids=None, epoch="", max_retries=None):
    if ids is None:
        ids = [int(text(m)) for m in s.redis.zrange(s.keys.leases, 0, -1)]
    mr = s.settings.max_retries if max_retries is None else max_retries
    r = run_script(s, "recover", ids, [epoch, mr, *ids])
    if text(r[0]) != "ok":
        return text(r[0])
    return sorted(int(text(i)) for i in r[1]), sorted(int(text(i)) for i in r[2])


def _leader(s, op: str, node: str, ms: int = 5000):
    r = run_script(s, "leader", [], [op, node, ms])
    return int(r[0]), int(r[1]), text(r[2]), text(r[3])


def test_recover_takes_back_expired_leases_and_fences_the_old_owner(make_strategy):
    s = make_strategy(**SHORT)
    s.create_partitions_if_not_exist(parts(1, 2))
    old = claimed(s, 1, "old")
    assert _recover(s) == ([], [])  # lease alive: nothing to do
    eventually(lambda: _recover(s) == ([1], []))
    p = s.get_partition(1)
    assert p.status == "pending" and p.fence > old.fence and p.node_id == ""
    assert s.get_partition_stats().recovered == 1
    check_invariants(s)
    from elk_celery import StaleFenceError
    with pytest.raises(StaleFenceError):
        s.complete_partition(1, "old", old.fence, 1)
    assert s.renew_leases("old", [(1, old.fence)]) == [1]


def test_recover_fails_a_partition_that_ran_out_of_attempts(make_strategy):
    s = make_strategy(**SHORT, max_retries=0)
    s.create_partitions_if_not_exist(parts(1))
    claimed(s, 1, "crashy")
    eventually(lambda: _recover(s) == ([], [1]))
    p = s.get_partition(1)
    assert p.status == "failed" and "lost its owner crashy" in p.error
    check_invariants(s)


def test_recover_forgets_lease_entries_of_deleted_partitions(strategy):
    strategy.redis.zadd(strategy.keys.leases, {"55": 1})
    assert _recover(strategy, [55]) == ([], [])
    assert strategy.redis.zscore(strategy.keys.leases, "55") is None


def test_dead_node_partitions_are_preemptable_before_their_lease_ends(strategy):
    # default lease: 180 s; the owner's heartbeat (150 ms) is what expires
    strategy.create_partitions_if_not_exist(parts(1))
    _heartbeat(strategy, "mortal", 150)
    p = claimed(strategy, 1, "mortal")
    assert strategy.acquire_partition(1, "heir", allow_preemption=True) is None
    taken = eventually(lambda: strategy.acquire_partition(1, "heir", allow_preemption=True))
    assert taken.fence > p.fence and taken.node_id == "heir"
    # the dead node can't renew (self-fences) ...
    assert strategy.renew_leases("mortal", [(1, p.fence)]) == [1]
    check_invariants(strategy)


def test_a_node_whose_heartbeat_expired_comes_back(strategy):
    strategy.create_partitions_if_not_exist(parts(1, 2))
    _heartbeat(strategy, "n", 100)
    c = strategy.claim(1, "n", require_live_node=True)
    assert c.ok
    eventually(lambda: strategy.renew_leases("n", [(1, c.fence)]) == [1])  # dead: leases lost
    assert strategy.claim(2, "n", require_live_node=True).code == "dead"
    now, held = _heartbeat(strategy, "n", 10_000)  # back
    assert int(now) > 0 and int(held) == 1
    assert strategy.renew_leases("n", [(1, c.fence)]) == []  # nobody took it meanwhile
    assert strategy.claim(2, "n", require_live_node=True).ok


def test_unregistered_nodes_are_not_dead(strategy):
    # strategy API users never heartbeat: their leases must still work
    strategy.create_partitions_if_not_exist(parts(1))
    p = claimed(strategy, 1, "never-registered")
    assert strategy.renew_leases("never-registered", [(1, p.fence)]) == []
    assert strategy.acquire_partition(1, "x", allow_preemption=True) is None


def test_leader_lease_epochs_grow_and_only_the_holder_releases(strategy):
    _, e1, _, _ = _leader(strategy, "acquire", "A")
    assert _leader(strategy, "acquire", "A") == (1, e1, "A", "renewed")
    assert _leader(strategy, "acquire", "B") == (0, e1, "A", "follower")
    assert _leader(strategy, "release", "B") == (0, e1, "A", "follower")  # not B's to release
    assert _leader(strategy, "release", "A") == (0, e1, "", "released")
    _, e2, _, role = _leader(strategy, "acquire", "B")
    assert role == "elected" and e2 > e1 > 0
    assert _leader(strategy, "acquire", "A") == (0, e2, "B", "follower")


def test_leader_lease_expires_and_a_dead_leader_is_replaced(strategy):
    assert _leader(strategy, "acquire", "A", ms=100)[3] == "elected"
    eventually(lambda: _leader(strategy, "acquire", "B", ms=5000)[3] == "elected")
    _heartbeat(strategy, "B", 100)  # B's node dies; its lease (5 s) is still set
    assert _leader(strategy, "acquire", "C")[3] == "follower"
    before = int(strategy.redis.hget(strategy.keys.meta, "epoch"))
    state = eventually(lambda: (lambda r: r if r[3] == "elected" else None)(
        _leader(strategy, "acquire", "C")))
    assert state[1] > before


def test_stale_leader_writes_are_refused_and_counted(strategy):
    _, epoch, _, _ = _leader(strategy, "acquire", "A")
    assert strategy.create_batch(_batch(1), epoch=epoch)[0] == "ok"
    _leader(strategy, "release", "A")
    _leader(strategy, "acquire", "B")  # epoch + 1
    with pytest.raises(StaleLeaderError, match="no longer the leader's: the write was refused"):
        strategy.create_batch(_batch(2), epoch=epoch)
    assert _recover(strategy, [1], epoch=str(epoch)) == "stale_leader"
    with pytest.raises(StaleLeaderError):
        NamespaceStore(strategy).dispatch(epoch, 10, 1000)
    assert strategy.get_partition(2) is None
    assert strategy.get_partition_stats().counters["stale_leader_writes"] == 3


def _batch(*ids):
    from elk_celery.strategies import validate_batch
    return validate_batch(parts(*ids))


def test_create_moves_the_planning_cursor_by_compare_and_set(strategy):
    assert strategy.create_batch(_batch(1), expected_cursor="", new_cursor="20")[0] == "ok"
    assert strategy.redis.hget(strategy.keys.meta, "cursor") is None  # '' = don't track
    strategy.redis.hset(strategy.keys.meta, "cursor", "20")
    assert strategy.create_batch(_batch(2), expected_cursor="20", new_cursor="30")[0] == "ok"
    assert text(strategy.redis.hget(strategy.keys.meta, "cursor")) == "30"
    lost = strategy.create_batch(_batch(3), expected_cursor="20", new_cursor="40")
    assert [text(x) for x in lost] == ["cursor", "30"]
    assert strategy.get_partition(3) is None


def test_dispatch_picks_due_pending_partitions_and_reschedules_them(strategy):
    store = NamespaceStore(strategy)
    strategy.create_partitions_if_not_exist(parts(1, 2, 3))
    claimed(strategy, 2)
    picked = store.dispatch("", 10, 60_000)
    assert sorted(picked.due) == [(1, 11, 20), (3, 31, 40)]
    # sent once: not due again until the resend delay passed, which is when
    # the leader should look again
    again = store.dispatch("", 10, 60_000)
    assert again.due == [] and again.next_due_ms == picked.now_ms + 60_000
    assert strategy.get_partition_stats().counters["dispatched"] == 2
    check_invariants(strategy)


def test_dispatch_sends_re_sent_partitions_before_fresh_ones(strategy):
    store = NamespaceStore(strategy)
    strategy.create_partitions_if_not_exist(parts(1, 2, 3))
    c = strategy.claim(3, "n1")
    strategy.release_partition(3, "n1", c.fence)  # due again now: sent before 1 and 2
    assert [d[0] for d in store.dispatch("", 2, 60_000).due] == [3, 1]
    assert [d[0] for d in store.dispatch("", 5, 60_000).due] == [2]


def test_a_claim_that_leaves_few_messages_unclaimed_wakes_the_leader(strategy, redis_client):
    store = NamespaceStore(strategy)
    strategy.create_partitions_if_not_exist(parts(1, 2, 3, 4))
    store.dispatch("", 4, 60_000, refill_below=2, plan_below=0)
    assert redis_client.zcard(strategy.keys.queued) == 4
    strategy.claim(1, "n1")
    assert redis_client.llen(strategy.keys.wake) == 0  # 3 left unclaimed
    strategy.claim(2, "n1")
    assert redis_client.llen(strategy.keys.wake) == 1  # 2 left: refill
    strategy.claim(3, "n1")
    assert redis_client.llen(strategy.keys.wake) == 1  # one wake-up at a time
    assert store.wait_for_wake(1.0) and redis_client.llen(strategy.keys.wake) == 0
    assert not store.wait_for_wake(0.05)


def test_scripts_are_reloaded_after_a_redis_restart(private_redis, strategy_cls):
    client = redis.Redis.from_url(private_redis.url)
    s = strategy_cls(client, "restart")
    s.create_partitions_if_not_exist(parts(1))
    private_redis.restart()  # no AOF: data and script cache are gone
    s.create_partitions_if_not_exist(parts(1))  # EVALSHA -> NOSCRIPT -> reload
    assert s.acquire_partition(1, "n").fence > 0
    client.close()


def test_settings_reach_the_scripts_in_milliseconds(make_strategy):
    s = make_strategy(heartbeat_interval=1, partition_lock_expiry=2.5)
    s.create_partitions_if_not_exist(parts(1))
    before = _server_ms(s)
    p = claimed(s, 1)
    expires = p.lease_expires_at.timestamp() * 1000
    assert before + 2500 - 5 <= expires <= _server_ms(s) + 2500 + 5
    assert isinstance(s.settings, ElkSettings)


def _server_ms(s) -> int:
    sec, usec = s.redis.time()
    return sec * 1000 + usec // 1000


def test_plan_range_makes_the_partitions_create_would(strategy):
    store = NamespaceStore(strategy)
    store.init_plan(1)
    assert store.plan_range("", 1, 250, 100) == (3, 0)
    made = strategy.get_all_partitions()
    assert [(p.partition_id, p.min_id, p.max_id) for p in made] == [(0, 1, 100), (1, 101, 200),
                                                                     (2, 201, 250)]
    # the same record as the API's create path writes
    strategy.create_partitions_if_not_exist([{"partition_id": 9, "min_id": 1000, "max_id": 1099}])
    api = strategy.get_partition(9)
    for p in made:
        assert (p.status, p.version, p.fence, p.attempts, p.items_processed, p.node_id,
                p.options) == (api.status, api.version, api.fence, api.attempts,
                               api.items_processed, api.node_id, api.options)
        assert p.created_at is not None and p.updated_at is not None
    assert store.meta()["cursor"] == "251" and store.meta()["next_pid"] == "10"
    check_invariants(strategy)
    # the cursor moved meanwhile: nothing is written
    assert store.plan_range("", 1, 300, 100) == (0, -1)
    # a range reaching a stored partition is refused as a whole
    with pytest.raises(PartitionConflict, match="overlaps partition 9"):
        store.plan_range("", 251, 1050, 100)
    assert strategy.get_partition_stats().total_count == 4
    check_invariants(strategy)


def test_plan_range_is_fenced_by_the_leader_epoch(strategy):
    store = NamespaceStore(strategy)
    store.init_plan(1)
    old = store.leader_acquire("A").epoch
    store.leader_release("A")
    store.leader_acquire("B")
    with pytest.raises(StaleLeaderError):
        store.plan_range(old, 1, 100, 10)
    assert strategy.get_partition_stats().total_count == 0
