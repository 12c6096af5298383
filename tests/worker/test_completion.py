"""Completions whose reply is read later (elk_celery/worker/completion.py),
on a real Redis: landed before the reply is read, stale owners reported,
a lost reply settled by writing the completion again."""

from __future__ import annotations

from elk_celery import Hooks
from elk_celery.models import Partition
from elk_celery.store.namespace import NamespaceStore
from elk_celery.worker import completion


def _claimed(strategy, pid: int = 1):
    strategy.create_partitions_if_not_exist([Partition(partition_id=pid, min_id=1, max_id=10),
                                             Partition(partition_id=99, min_id=11, max_id=20)])
    strategy.complete_partition(99, "n1", strategy.claim(99, "n1").fence, 10)
    return strategy.claim(pid, "n1")


class Writes(Hooks):
    """Counts the synchronous completion writes (the fallback's)."""

    def __init__(self, into: list[int]) -> None:
        self.into = into

    def on_redis_call(self, operation, duration, error) -> None:
        if operation == "complete":
            self.into.append(1)


def _send(strategy, pid, fence, outcomes, fallbacks) -> bool:
    """Record the completion with its reply read later; True when sent."""
    store = NamespaceStore(strategy)
    return completion.record(store, Writes(fallbacks), pid, "n1", fence, 10,
                             outcomes.append) is None


def test_the_completion_lands_before_its_reply_is_read(strategy, redis_client):
    c = _claimed(strategy)
    outcomes: list[str] = []
    assert _send(strategy, 1, c.fence, outcomes, [])
    assert completion.pending_count() == 1
    # read through another connection, after a round trip on this one
    redis_client.ping()
    assert str(strategy.get_partition(1).status) == "completed"
    assert outcomes == []  # reported only once settled
    completion.settle_all()
    assert outcomes == ["completed"] and completion.pending_count() == 0
    assert strategy.get_partition_stats().completed_count == 2


def test_a_stale_owner_is_reported_stale(strategy):
    c = _claimed(strategy)
    outcomes: list[str] = []
    assert _send(strategy, 1, c.fence + 1, outcomes, [])  # not the current fence
    completion.settle_all()
    assert outcomes == ["stale"]
    assert str(strategy.get_partition(1).status) != "completed"
    assert strategy.get_partition_stats().stale_writes == 1


def test_a_reply_that_cannot_be_read_is_settled_by_writing_again(strategy):
    c = _claimed(strategy)
    outcomes: list[str] = []
    fallbacks: list[int] = []
    assert _send(strategy, 1, c.fence, outcomes, fallbacks)
    pending = completion.pending()[0]
    pending.store.strategy.line.drop()  # the reply is gone with the connection
    completion.settle_all()
    # the repeat found its own completion done: success, written once
    assert fallbacks == [1] and outcomes == ["completed"]
    p = strategy.get_partition(1)
    assert str(p.status) == "completed" and p.fence == c.fence
    assert strategy.get_partition_stats().completed_count == 2


def test_an_unknown_script_is_settled_by_writing_again(strategy, redis_client):
    c = _claimed(strategy)
    assert strategy.line  # the process's line exists (it loaded the scripts)...
    redis_client.script_flush()  # ...then Redis restarted
    outcomes: list[str] = []
    fallbacks: list[int] = []
    assert _send(strategy, 1, c.fence, outcomes, fallbacks)
    completion.settle_all()
    assert fallbacks == [1] and outcomes == ["completed"]
    assert str(strategy.get_partition(1).status) == "completed"


def test_settle_all_leaves_recent_ones_when_asked(strategy):
    c = _claimed(strategy)
    outcomes: list[str] = []
    assert _send(strategy, 1, c.fence, outcomes, [])
    completion.settle_all(older_than=60)
    assert outcomes == [] and completion.pending_count() == 1
    completion.settle_all()
    assert outcomes == ["completed"]
