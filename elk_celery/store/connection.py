"""Redis connections from URLs (AUTH, TLS via ``rediss://``, unix sockets)."""

from __future__ import annotations

import os

import redis

from ..errors import ConfigError
from .codec import text as text  # importable from here too

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def redis_from_url(url: str | None = None, **kwargs: object) -> redis.Redis:
    """A client for ``url`` (or ``$ELK_REDIS_URL``, or the local default).

    Credentials and TLS options in the URL are honoured as redis-py reads
    them: ``rediss://:password@host:6380/0?ssl_cert_reqs=required``.
    """
    url = url or os.environ.get("ELK_REDIS_URL") or DEFAULT_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"Redis URL {url!r} is invalid: use redis://, rediss:// or unix://")
    kwargs.setdefault("health_check_interval", 30)
    # a call must not block for ever on a half-open connection: leases and
    # heartbeats have to notice a lost Redis well within their lifetimes
    kwargs.setdefault("socket_timeout", 10)
    kwargs.setdefault("socket_connect_timeout", 5)
    kwargs.setdefault("socket_keepalive", True)
    return redis.Redis.from_url(url, **kwargs)


