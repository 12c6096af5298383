"""The lease keeper (elk_celery/worker/lease.py) in this process, talking to
the real Redis through a loopback proxy (tests/netproxy.py): a processor
stops before anybody else can own its partition, i.e. before its node's
heartbeat expiry on Redis's clock, however its Redis goes away; a healthy
one is never stopped."""

from __future__ import annotations

import threading
import time

import pytest

from elk_celery import ElkSettings, HashPartitionStrategy, Hooks, LeaseLost
from elk_celery.store.connection import redis_from_url
from elk_celery.store.namespace import NamespaceStore
from elk_celery.worker.lease import LeaseKeeper, fence_timing
from tests.conftest import wait_for
from tests.netproxy import TcpProxy


class Counting(Hooks):
    def __init__(self) -> None:
        self.renewed = 0

    def on_leases_renewed(self, namespace: str, node: str, *, renewed: int, lost: int) -> None:
        self.renewed += renewed


class Node:
    """A worker in miniature: a store through the proxy, a heartbeat thread
    (the main process), a lease keeper and one processor thread (a pool process)."""

    def __init__(self, proxy: TcpProxy, redis_client, namespace: str, **settings) -> None:
        self.settings = ElkSettings(**settings)
        client = redis_from_url(proxy.url(), socket_timeout=10)
        self.store = NamespaceStore(HashPartitionStrategy(client, namespace, self.settings))
        self.direct = HashPartitionStrategy(redis_client, namespace, self.settings)
        self.node = "n1"
        self.keeper = LeaseKeeper()
        self.keeper.hooks = self.hooks = Counting()
        self.beating = threading.Event()
        self.beating.set()
        self.stopped_at: float | None = None  # Redis-clock seconds (same machine clock)
        self.error: BaseException | None = None
        self._quit = threading.Event()
        self.store.heartbeat(self.node)
        threading.Thread(target=self._heartbeat, daemon=True).start()

    def _heartbeat(self) -> None:
        while not self._quit.wait(self.settings.heartbeat_interval):
            if self.beating.is_set():
                try:
                    self.store.heartbeat(self.node)
                except Exception:  # noqa: BLE001 - cut: like the bootstep, try again
                    pass

    def run(self, seconds: float) -> threading.Thread:
        self.store.strategy.create_partitions_if_not_exist(
            [{"partition_id": 1, "min_id": 1, "max_id": 10}])
        claimed_at = time.monotonic()
        c = self.store.strategy.claim(1, self.node, require_live_node=True)
        assert c.ok, c

        def processor() -> None:
            h = self.keeper.hold(self.store, 1, c.fence, self.node, claimed_at=claimed_at)
            try:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    time.sleep(0.01)
            except LeaseLost:
                self.stopped_at = time.time()
            except BaseException as exc:  # noqa: BLE001
                self.error = exc
            finally:
                h.stop_interrupts()
                self.keeper.drop(h)
        t = threading.Thread(target=processor, daemon=True)
        t.start()
        self.fence = c.fence
        return t

    def node_expiry(self) -> float:
        """The node's heartbeat expiry, read directly (seconds)."""
        return self.direct.redis.zscore(self.direct.keys.nodes, self.node) / 1000

    def close(self) -> None:
        self._quit.set()


@pytest.fixture
def make_node(proxy, redis_client, namespace):
    made = []

    def make(**settings) -> Node:
        n = Node(proxy, redis_client, namespace, **settings)
        made.append(n)
        return n
    yield make
    for n in made:
        n.close()


SETTINGS = dict(heartbeat_interval=0.5, node_expiry=2.0, partition_lock_expiry=60)


def _settle_then(node: Node, fault) -> float:
    """Let two renewals through, apply ``fault``; the node's expiry then."""
    wait_for(lambda: node.hooks.renewed >= 2, 5, "two renewals")
    fault()
    time.sleep(0.1)  # a heartbeat already in flight lands or fails
    return node.node_expiry()


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_a_processor_cut_from_redis_stops_before_its_node_expires(make_node, proxy, fault):
    n = make_node(**SETTINGS)
    t = n.run(seconds=30)
    expiry = _settle_then(n, proxy.cut if fault == "cut" else proxy.stall)
    t.join(10)
    assert n.error is None and n.stopped_at is not None, "the processor was not stopped"
    # a recovery could take it from expiry on: the processor stopped before
    assert n.stopped_at < expiry, (n.stopped_at, expiry)
    proxy.heal()
    # the renewer gave up only the processor: the lease itself is untouched
    assert n.direct.get_partition(1).fence == n.fence


def test_a_main_process_that_stops_heartbeating_stops_the_processor(make_node):
    # renewals go through, but the node's expiry stops moving (a hung main
    # process): the processor must stop before it, not at the lease's end
    n = make_node(**SETTINGS)
    t = n.run(seconds=30)
    expiry = _settle_then(n, n.beating.clear)
    t.join(10)
    assert n.stopped_at is not None and n.stopped_at < expiry, (n.stopped_at, expiry)


def test_a_cut_shorter_than_the_slack_stops_nothing(make_node, proxy):
    n = make_node(**SETTINGS)
    t = n.run(seconds=4)
    wait_for(lambda: n.hooks.renewed >= 2, 5, "two renewals")
    proxy.cut()
    time.sleep(0.3)  # less than node expiry - heartbeat - margin (1.25 s)
    proxy.heal()
    t.join(10)
    assert not t.is_alive() and n.error is None
    assert n.stopped_at is None, "a short cut stopped the processor"


def test_a_lease_found_lost_stops_the_processor(make_node):
    n = make_node(**SETTINGS)
    t = n.run(seconds=30)
    wait_for(lambda: n.hooks.renewed >= 1, 5, "a renewal")
    assert n.direct.claim(1, "thief", force=True).ok
    t.join(5)
    assert n.stopped_at is not None


def test_a_healthy_processor_is_never_stopped_even_with_a_tight_node_expiry(make_node):
    # node expiry only 2.7 heartbeats: renewals must come sooner than every
    # heartbeat, to see the main process's next heartbeat before the deadline
    s = dict(heartbeat_interval=0.3, node_expiry=0.8, partition_lock_expiry=60)
    n = make_node(**s)
    t = n.run(seconds=3)
    t.join(10)
    assert not t.is_alive() and n.error is None
    assert n.stopped_at is None, "a healthy processor was stopped"


def test_fence_timing_keeps_inside_the_slack():
    for hb, ne in [(10, 30), (0.5, 2), (1, 1.2), (0.25, 0.6)]:
        margin, retry = fence_timing(ElkSettings(heartbeat_interval=hb, node_expiry=ne))
        assert 0 < margin <= hb / 2 and margin < ne - hb
        assert 0 < retry <= margin
