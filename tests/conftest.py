"""Shared fixtures. Tests talk to a real Redis (``ELK_REDIS_URL``, default the
local one); each test works in its own namespace and removes exactly that
namespace's keys afterwards (never FLUSHDB, never KEYS/SCAN).

Keep this file additive: add new fixtures below, in their own section.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from elk_celery import ElkSettings, HashPartitionStrategy, Keys, SimpleStrategy  # noqa: E402

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_url_from_env() -> str:
    return os.environ.get("ELK_REDIS_URL") or DEFAULT_REDIS_URL


def unique_namespace(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def cleanup_namespace(client: redis.Redis, namespace: str, key_prefix: str = "elk") -> int:
    """Delete every key of ``namespace``: the fixed keys plus the per-partition
    keys of SimpleStrategy, found through the ``ids`` zset."""
    keys = Keys(namespace, key_prefix)
    names = list(keys.all_fixed())
    for member in client.zrange(keys.ids, 0, -1):
        pid = (member.decode() if isinstance(member, bytes) else member).split(":", 1)[0]
        names += [keys.partition(pid), keys.lock(pid)]
    deleted = 0
    for start in range(0, len(names), 500):
        deleted += client.delete(*names[start:start + 500])
    return deleted


# --------------------------------------------------------------------- Redis

@pytest.fixture(scope="session")
def redis_url() -> str:
    return redis_url_from_env()


@pytest.fixture(scope="session")
def _redis_session_client(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.exit(f"Redis at {redis_url} is not reachable ({exc}); set ELK_REDIS_URL", 2)
    yield client
    client.close()


@pytest.fixture
def redis_client(_redis_session_client: redis.Redis) -> redis.Redis:
    return _redis_session_client


@pytest.fixture
def namespace(redis_client: redis.Redis):
    """A fresh namespace; its keys are deleted after the test."""
    ns = unique_namespace()
    yield ns
    cleanup_namespace(redis_client, ns)


STRATEGIES = {"hash": HashPartitionStrategy, "simple": SimpleStrategy}


@pytest.fixture(params=sorted(STRATEGIES), ids=sorted(STRATEGIES))
def strategy_cls(request):
    """Each partition strategy class in turn (ids ``hash`` / ``simple``)."""
    return STRATEGIES[request.param]


@pytest.fixture
def strategy(strategy_cls, redis_client, namespace):
    """A strategy instance (both kinds) on the shared Redis, in a fresh namespace."""
    return strategy_cls(redis_client, namespace)


@pytest.fixture
def make_strategy(strategy_cls, redis_client, namespace):
    """``make_strategy(**settings)``: another instance of the same kind on the
    same namespace, with ElkSettings overrides (short leases, breaker, ...)."""
    def make(**settings):
        return strategy_cls(redis_client, namespace, ElkSettings(**settings))
    return make


# ------------------------------------------------------ private redis-server

@pytest.fixture
def private_redis():
    """A private ``redis-server`` on a free port, for tests that stop, pause or
    restart Redis. Yields the ``RedisServer`` (``.url``, ``.restart()``, ...)."""
    if importlib.util.find_spec("elk_celery._redis_server") is None:
        pytest.skip("elk_celery._redis_server (RedisServer) is not available yet")
    from elk_celery._redis_server import RedisServer

    try:
        server = RedisServer().start()
    except RuntimeError as exc:  # no redis-server binary on this machine
        pytest.skip(f"cannot start a private redis-server: {exc}")
    try:
        yield server
    finally:
        server.__exit__(None, None, None)  # stops it and removes its temp dir
