"""The shared circuit breaker with real workers."""

from __future__ import annotations

import pytest

from tests.conftest import holds_for, wait_for
from tests.integration.helpers import stats

from elk_celery import CircuitBreaker, ElkSettings, HashPartitionStrategy, Keys
from elk_celery.store.namespace import NamespaceStore

pytestmark = pytest.mark.slow

FAILING = tuple(range(1, 1001, 100))  # every partition of 1..1000 fails


def _breaker(client, namespace, **settings):
    return CircuitBreaker(NamespaceStore(HashPartitionStrategy(client, namespace, ElkSettings(**settings))))


def test_consecutive_failures_trip_the_breaker_for_every_node(cluster, redis_client, namespace):
    c = cluster(max_id=1_000, size=100, window=1, fail=FAILING, max_retries=5,
                circuit_breaker_enabled=True, circuit_breaker_consecutive_failures=3,
                circuit_breaker_open_timeout=60)
    c.beat()
    c.worker("b1", concurrency=1)
    c.worker("b2", concurrency=1)
    breaker = _breaker(redis_client, namespace)
    wait_for(lambda: breaker.state().state == "open", 60, lambda: "the breaker to open\n" + c.logs())
    failures_at_open = stats(redis_client, namespace).counters.get("failures", 0)
    assert failures_at_open >= 3
    # while open: the leader sends nothing (it waits for the open timeout),
    # a claim is refused on any node, nothing new starts
    pending = NamespaceStore(HashPartitionStrategy(redis_client, namespace)).strategy \
        .get_filtered_partitions(status="pending", limit=1)[0]
    claim = HashPartitionStrategy(redis_client, namespace, ElkSettings(
        circuit_breaker_open_timeout=60)).claim(pending.partition_id, "another-node")
    assert claim.code == "breaker"
    queued = Keys(namespace).queued
    wait_for(lambda: redis_client.zcard(queued) == 0, 30,
             lambda: "messages sent before the breaker opened to be taken\n" + c.logs())
    sent = int(redis_client.hget(Keys(namespace).stats, "dispatched"))
    holds_for(lambda: int(redis_client.hget(Keys(namespace).stats, "dispatched")) == sent
              and stats(redis_client, namespace).counters.get("failures", 0) <= failures_at_open + 1,
              3, lambda: "nothing is sent or started while the breaker is open\n" + c.logs())
    s = stats(redis_client, namespace)
    assert s.failed_count == 0, "refusals must not burn retries"
    assert breaker.state().trips == 1


def test_half_open_probe_success_closes_it(cluster, redis_client, namespace):
    # fails at first, then the failure is "fixed" by resetting the list of failing ranges:
    # the breaker lets a probe through after the open timeout and closes on its success
    c = cluster(max_id=600, size=100, window=1, fail=(1, 101, 201), max_retries=5,
                circuit_breaker_enabled=True, circuit_breaker_consecutive_failures=2,
                circuit_breaker_open_timeout=2, circuit_breaker_half_open_max_requests=1)
    c.beat()
    w = c.worker("p1", concurrency=1)
    breaker = _breaker(redis_client, namespace)
    wait_for(lambda: breaker.state().trips >= 1, 60, lambda: "a trip\n" + c.logs())
    # restart the worker with a processor that no longer fails
    w.stop()
    c.configure(max_id=600, size=100, window=1, max_retries=5, circuit_breaker_enabled=True,
                circuit_breaker_consecutive_failures=2, circuit_breaker_open_timeout=2,
                circuit_breaker_half_open_max_requests=1)
    c.worker("p2", concurrency=1)
    wait_for(lambda: stats(redis_client, namespace).completed_count == 6, 60, lambda: "all done\n" + c.logs())
    st = breaker.state()
    assert st.state == "closed" and st.consecutive_failures == 0


def test_distinct_failed_partitions_counted_in_window(redis_client, namespace):
    s = HashPartitionStrategy(redis_client, namespace, ElkSettings(
        circuit_breaker_consecutive_failures=100, circuit_breaker_total_failures=3,
        max_retries=10, retry_backoff=0))
    s.create_partitions_if_not_exist([{"partition_id": i, "min_id": i * 10, "max_id": i * 10 + 9}
                                      for i in range(6)])
    breaker = CircuitBreaker(NamespaceStore(s))
    # the same partition failing again and again is one distinct failure...
    for _ in range(4):
        c = s.claim(0, "n1")
        s.fail_partition(0, "n1", c.fence, "boom")
    assert breaker.state().state == "closed"
    assert breaker.state().failures_in_window == 1
    # ...three distinct partitions within the window open it
    for pid in (2, 3):
        c = s.claim(pid, "n1")
        s.fail_partition(pid, "n1", c.fence, "boom")
    st = breaker.state()
    assert st.state == "open" and "within the window" in st.reason
    assert s.claim(4, "n1").code == "breaker"
