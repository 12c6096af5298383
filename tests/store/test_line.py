"""A process's own connection for the hot path (elk_celery/store/line.py):
claims and completions packed by the strategy, replies read in order, and
the ordinary client taking over when the line can't answer. Real Redis."""

from __future__ import annotations

import multiprocessing
import os

import redis

from elk_celery.models import Partition
from elk_celery.store.namespace import NamespaceStore
from elk_celery.hooks import Hooks
from elk_celery.worker import completion


def _create(strategy, n: int = 3) -> None:
    strategy.create_partitions_if_not_exist(
        [Partition(partition_id=i, min_id=10 * i + 1, max_id=10 * i + 10, options={"k": i})
         for i in range(1, n + 1)])


def test_worker_claim_answers_like_claim(strategy):
    _create(strategy)
    a = strategy.worker_claim(1, "n1", window=2)
    b = strategy.claim(2, "n1", window=2)
    assert (a.code, a.attempts, a.min_id, a.max_id) == ("ok", 1, 11, 20) and a.fence > 0
    assert a.options == {"k": 1} and b.options == {"k": 2}
    # the window counts claims made either way
    c = strategy.worker_claim(3, "n1", window=2)
    assert c.code == "window"
    assert strategy.worker_claim(99, "n1").code == "missing"
    assert str(strategy.get_partition(1).status) == "running"


def test_worker_claim_loads_a_forgotten_script(strategy, redis_client):
    _create(strategy)
    strategy.worker_claim(1, "n1")
    redis_client.script_flush()  # as after a Redis restart
    c = strategy.worker_claim(2, "n1")
    assert c.ok and c.fence > 0
    assert redis_client.script_exists(strategy.scripts.sha("claim")) == [True]


def test_worker_claim_survives_its_connection_being_killed(strategy, redis_client):
    _create(strategy)
    assert strategy.worker_claim(1, "n1").ok
    conn = strategy.line._conn
    conn.send_command("CLIENT", "ID")
    killed = redis_client.client_kill_filter(_id=conn.read_response())
    assert killed == 1
    # the line finds it dead, the ordinary client claims, the line reconnects
    assert strategy.worker_claim(2, "n1").ok
    assert strategy.worker_claim(3, "n1").ok
    assert strategy.line._conn is not conn
    assert strategy.get_partition_stats().running_count == 3


def test_an_owed_reply_is_read_before_the_next_command(strategy):
    _create(strategy)
    c = strategy.worker_claim(1, "n1")
    outcomes: list[str] = []
    store = NamespaceStore(strategy)
    assert completion.record(store, Hooks(), 1, "n1", c.fence, 10, outcomes.append) is None
    assert len(strategy.line.owed) == 1
    # the claim reads the completion's reply first, then its own
    c2 = strategy.worker_claim(2, "n1")
    assert c2.ok and c2.min_id == 21
    assert not strategy.line.owed and outcomes == []
    completion.settle_all()
    assert outcomes == ["completed"]
    assert strategy.get_partition(1).items_processed == 10


def test_the_line_uses_the_urls_password(private_redis, strategy_cls, namespace):
    admin = redis.Redis.from_url(private_redis.url)
    admin.config_set("requirepass", "s3cret")
    try:
        url = private_redis.url.replace("redis://", "redis://:s3cret@")
        strategy = strategy_cls(redis.Redis.from_url(url), namespace)
        _create(strategy)
        c = strategy.worker_claim(1, "n1")
        assert c.ok
        outcomes: list[str] = []
        assert completion.record(NamespaceStore(strategy), Hooks(), 1, "n1", c.fence, 5,
                                 outcomes.append) is None
        completion.settle_all()
        assert outcomes == ["completed"]
    finally:
        redis.Redis.from_url(private_redis.url, password="s3cret").config_set("requirepass", "")


def _child_claims(strategy, q) -> None:
    c = strategy.worker_claim(2, "child")
    q.put((c.code, os.getpid(), len(strategy.line.owed)))


def test_a_forked_child_gets_a_connection_of_its_own(strategy):
    _create(strategy)
    assert strategy.worker_claim(1, "parent").ok
    parent_conn = strategy.line._conn
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_claims, args=(strategy, q))
    p.start()
    code, pid, owed = q.get(timeout=20)
    p.join(20)
    assert (code, owed) == ("ok", 0) and pid != os.getpid() and p.exitcode == 0
    # the parent's connection was neither used nor closed by the child
    assert strategy.line._conn is parent_conn
    assert strategy.worker_claim(3, "parent").ok
    assert strategy.get_partition(2).node_id == "child"
