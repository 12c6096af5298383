"""The loopback TCP proxy of tests/netproxy.py, against the real Redis."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from elk_celery._redis_server import free_port
from tests.conftest import wait_for
from tests.netproxy import TcpProxy


def _client(proxy: TcpProxy, timeout: float | None = 1.0) -> redis.Redis:
    return redis.Redis(port=proxy.port, socket_timeout=timeout, socket_connect_timeout=1,
                       retry=Retry(NoBackoff(), 0))  # see each failure, not a retry's


def test_forwards_both_ways(proxy, redis_client, namespace):
    c = _client(proxy)
    c.set(f"{namespace}:k", "v" * 100_000)
    assert redis_client.get(f"{namespace}:k") == b"v" * 100_000
    assert c.get(f"{namespace}:k") == b"v" * 100_000
    assert proxy.bytes_forwarded > 200_000 and proxy.connections() == 1
    redis_client.delete(f"{namespace}:k")


def test_cut_drops_connections_and_refuses_new_ones_until_healed(proxy):
    c = _client(proxy)
    assert c.ping()
    proxy.cut()
    wait_for(lambda: proxy.connections() == 0, 2, "the cut to drop the connection")
    t0 = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        c.ping()  # the old connection is gone; a new one is reset at once
    with pytest.raises(redis.ConnectionError):
        _client(proxy).ping()
    assert time.monotonic() - t0 < 1.0, "a cut fails fast (no timeout waited for)"
    assert proxy.refused >= 2
    proxy.heal()
    assert c.ping() and _client(proxy).ping()


def test_stall_keeps_sockets_open_and_delivers_after_heal(proxy, redis_client, namespace):
    key = f"{namespace}:stalled"
    c = _client(proxy)
    assert c.ping()
    proxy.stall()
    with pytest.raises(redis.TimeoutError):
        c.ping()  # nothing comes back: the client's own timeout ends the call
    assert proxy.connections() == 1, "the socket stays open"
    # a write sent while stalled arrives once healed
    patient = _client(proxy, timeout=None)
    done = threading.Event()
    threading.Thread(target=lambda: (patient.set(key, "late"), done.set()), daemon=True).start()
    assert not done.wait(0.5) and redis_client.get(key) is None
    proxy.heal()
    assert done.wait(5) and redis_client.get(key) == b"late"
    redis_client.delete(key)


def test_a_cut_may_stall_new_connections(proxy):
    proxy.cut(new="stall")
    with pytest.raises(redis.TimeoutError):
        _client(proxy, timeout=0.3).ping()  # connected, but silence
    proxy.heal()
    assert _client(proxy).ping()


def test_target_down_closes_the_client():
    with TcpProxy(free_port()) as p:
        with pytest.raises(redis.ConnectionError):
            _client(p).ping()


def test_bad_mode_is_refused(proxy):
    with pytest.raises(ValueError, match="use 'refuse' or 'stall'"):
        proxy.cut(new="sometimes")
