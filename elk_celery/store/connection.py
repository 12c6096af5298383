"""Redis clients from URLs: one server (AUTH, TLS via ``rediss://``, unix
sockets), a Redis Cluster or the master behind Sentinel (redis_urls.py)."""

from __future__ import annotations

import os
from typing import Any

import redis

from .. import redis_urls as urls
from .codec import text as text  # importable from here too

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def redis_from_url(url: str | None = None, **kwargs: Any) -> Any:
    """A client for ``url`` (or ``$ELK_REDIS_URL``, or the local default):
    ``redis.Redis``, ``redis.cluster.RedisCluster`` for ``redis+cluster://``,
    or Sentinel's master client (a ``redis.Redis`` that finds the master
    through the sentinels on every connect) for ``redis+sentinel://``.

    Credentials and TLS options in a one-server URL are honoured as redis-py
    reads them: ``rediss://:password@host:6380/0?ssl_cert_reqs=required``.
    """
    url = url or os.environ.get("ELK_REDIS_URL") or DEFAULT_URL
    parsed = urls.parse(url)
    # a call must not block for ever on a half-open connection: leases and
    # heartbeats have to notice a lost Redis well within their lifetimes
    kwargs.setdefault("socket_timeout", 10)
    kwargs.setdefault("socket_connect_timeout", 5)
    kwargs.setdefault("socket_keepalive", True)
    if parsed.kind == "cluster":
        return _cluster(parsed, kwargs)
    kwargs.setdefault("health_check_interval", 30)
    if parsed.kind == "sentinel":
        return _sentinel_master(parsed, kwargs)
    return redis.Redis.from_url(url, **kwargs)


def _auth(parsed: urls.RedisURL) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if parsed.username:
        out["username"] = parsed.username
    if parsed.password is not None:
        out["password"] = parsed.password
    if parsed.tls:
        out["ssl"] = True
        out.update(parsed.tls_options)
    return out


def _cluster(parsed: urls.RedisURL, kwargs: dict[str, Any]) -> Any:
    from redis.cluster import ClusterNode, RedisCluster

    nodes = [ClusterNode(host, port) for host, port in parsed.hosts]  # type: ignore[no-untyped-call]
    kwargs.pop("health_check_interval", None)  # not a cluster connection option
    return RedisCluster(startup_nodes=nodes, **_auth(parsed), **kwargs)


def _sentinel_master(parsed: urls.RedisURL, kwargs: dict[str, Any]) -> redis.Redis:
    from redis.sentinel import Sentinel

    to_sentinels: dict[str, Any] = {k: kwargs[k] for k in (
        "socket_timeout", "socket_connect_timeout", "socket_keepalive") if k in kwargs}
    to_sentinels.update(parsed.sentinel_auth)
    if parsed.tls:
        to_sentinels.update(ssl=True, **parsed.tls_options)
    sentinel = Sentinel(list(parsed.hosts), sentinel_kwargs=to_sentinels)  # type: ignore[no-untyped-call]
    master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        parsed.service, db=parsed.db, **_auth(parsed), **kwargs)
    return master


def is_cluster(client: Any) -> bool:
    from redis.cluster import RedisCluster
    return isinstance(client, RedisCluster)


def server_time(client: Any, key: str) -> tuple[int, int]:
    """TIME of the server holding ``key`` (on a cluster: its slot's master,
    whose clock the scripts on that slot read)."""
    if is_cluster(client):
        return client.time(target_nodes=client.get_node_from_key(key))  # type: ignore[no-any-return]
    return client.time()  # type: ignore[no-any-return]


def socket_timeout(client: Any) -> float | None:
    """The read timeout of ``client``'s connections (None: none)."""
    kwargs = client.get_connection_kwargs() if is_cluster(client) else \
        client.connection_pool.connection_kwargs
    value = kwargs.get("socket_timeout")
    return None if value is None else float(value)
