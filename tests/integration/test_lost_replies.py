"""Lost replies (issue 11, finding 2): a command that ran on Redis while its
reply never reached the caller. A loopback proxy (tests/lost_reply.py)
forwards the claim or completion to a real Redis and cuts the connection
before the reply comes back; the retry must recognise its own earlier write:
the claim gets its own fence back without another attempt or window slot,
and the completion is not counted as a stale write."""

from __future__ import annotations

import pytest
import redis
from celery import Celery

from tests.conftest import STRATEGIES, cleanup_namespace
from tests.lost_reply import ReplyDropper

from elk_celery import Elk, Hooks, RangePlanner, partitioned_task
from elk_celery.models import Partition
from elk_celery.store.namespace import NamespaceStore
from elk_celery.worker import completion


@pytest.fixture
def proxy(redis_url):
    with ReplyDropper(redis_url) as p:
        yield p


@pytest.fixture(params=sorted(STRATEGIES))
def cut(request, proxy, namespace):
    """A strategy whose every connection goes through the proxy."""
    client = redis.Redis.from_url(proxy.url)
    s = STRATEGIES[request.param](client, namespace)
    s.create_partitions_if_not_exist([Partition(partition_id=i, min_id=10 * i + 1, max_id=10 * i + 10)
                                      for i in (1, 2)])
    s.line  # noqa: B018 - loads the hot-path scripts
    yield s
    client.close()


def test_a_claim_whose_reply_was_lost_gets_its_own_claim_back(cut, proxy):
    dropped = proxy.arm(cut.scripts.sha("claim").encode())
    c = cut.worker_claim(1, "n1", window=1, token="task-1/ab12")
    assert dropped.is_set(), "the proxy did not lose the reply"
    assert c.ok, f"the retried claim found its own claim {c.code!r}: the partition is orphaned"
    p = cut.get_partition(1)
    assert (str(p.status), p.node_id, p.fence, p.attempts) == ("running", "n1", c.fence, 1)
    assert c.attempts == 1
    st = cut.get_partition_stats()
    assert st.counters.get("claims") == 1 and st.running_count == 1
    assert int(cut.redis.hget(cut.keys.inflight, "n1")) == 1  # one window slot, not two
    assert cut.worker_claim(2, "n1", window=1, token="task-2/cd34").code == "window"


def test_a_claim_with_another_token_still_finds_the_partition_held(cut):
    first = cut.worker_claim(1, "n1", token="task-1/ab12")
    assert first.ok
    # a duplicate message (even redelivered to the same node) is another claim
    assert cut.worker_claim(1, "n1", token="task-1/ef56").code == "held"
    assert cut.claim(1, "n1").code == "held"
    assert cut.get_partition(1).attempts == 1


def test_a_completion_whose_reply_was_lost_is_not_a_stale_write(cut, proxy):
    c = cut.worker_claim(1, "n1", token="task-1/ab12")
    store = NamespaceStore(cut)
    outcomes: list[str] = []
    dropped = proxy.arm(cut.scripts.sha("complete").encode())
    assert completion.record(store, Hooks(), 1, "n1", c.fence, 10, outcomes.append) is None
    completion.settle_all()  # reads the (lost) reply, then writes it again
    assert dropped.is_set() and proxy.drops == 1
    assert outcomes == ["completed"]
    p = cut.get_partition(1)
    assert str(p.status) == "completed" and p.items_processed == 10
    st = cut.get_partition_stats()
    assert st.stale_writes == 0 and st.items_processed == 10


def test_complete_partition_retried_by_its_caller_succeeds(cut, proxy):
    c = cut.claim(1, "n1")
    proxy.arm(cut.scripts.sha("complete").encode())
    with pytest.raises(redis.ConnectionError):
        cut.complete_partition(1, "n1", c.fence, 7)
    assert proxy.drops == 1
    # the caller tries again: the repeat is recognised as done
    version = cut.complete_partition(1, "n1", c.fence, 7)
    assert version == cut.get_partition(1).version
    st = cut.get_partition_stats()
    assert (st.completed_count, st.items_processed, st.stale_writes) == (1, 7, 0)


# ------------------------------------------------------------ the whole task

def test_a_partition_task_survives_its_claim_reply_being_lost(proxy, redis_client, namespace):
    app = Celery(f"app-{namespace}", broker=proxy.url, set_as_current=False)
    app.conf.update(task_default_queue=namespace, elk_leader_queue=f"{namespace}.leader",
                    elk_redis_url=proxy.url, elk_task_window=1)
    elk = Elk(app)

    @partitioned_task(namespace=namespace, planner=RangePlanner(max_id=20, size=10))
    def lossy(min_id, max_id, options):
        return max_id - min_id + 1

    try:
        job = elk.job(namespace)
        strategy = job.store.strategy
        strategy.create_partitions_if_not_exist([{"partition_id": 1, "min_id": 1, "max_id": 10}])
        strategy.line  # noqa: B018
        proxy.arm(strategy.scripts.sha("claim").encode())
        result = job.task.apply(args=(1, 1, 10)).get()
        assert proxy.drops == 1
        assert result.startswith("completed"), result
        p = strategy.get_partition(1)
        assert (str(p.status), p.attempts, p.items_processed) == ("completed", 1, 10)
        assert strategy.get_partition_stats().stale_writes == 0
        assert not redis_client.hget(strategy.keys.inflight, p.node_id)
    finally:
        cleanup_namespace(redis_client, namespace)
