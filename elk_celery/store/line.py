"""A process's own Redis connection for the partition hot path.

A pool process claims and completes one partition at a time, and redis-py
spends more CPU on such a call (pool checkout and release, argument
packing, retry wrappers: 91 µs per claim on the development machine) than
Redis spends running the claim script. A :class:`Line` is one connection
per process per namespace, used under a lock, for commands the strategy
packs from cached pieces (41 µs per claim; both measured by
benchmarks/bench_strategies.py).

It also carries completions whose reply is read later
(worker/completion.py). Replies come back in the order the commands were
sent, so every reply owed is read before anything else is sent: a line
owes at most the replies of what was sent since its last call.

Errors are for the caller to handle with the ordinary client (which
retries, and loads a script that Redis has forgotten): the line drops its
connection on any error but an error reply, and connects again when next
used.

On a Redis Cluster the line connects to the master of its namespace's slot
as the cluster client last saw it. A reply saying the slot is elsewhere or
unavailable (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) or that the server is now a
replica (READONLY, after a failover) is a connection error here: the line
drops its connection, the caller falls back to the ordinary client (which
follows the redirect and learns the new slot map), and the next use connects
to the slot's new master. Behind Sentinel each connect asks the sentinels
for the master.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from typing import Any, Protocol

import redis
from redis.exceptions import AskError, ClusterDownError, ReadOnlyError, TryAgainError

#: error replies meaning "not here (any more)": reconnect and let the caller fall back
MOVED = (AskError, TryAgainError, ClusterDownError, ReadOnlyError)


def _moved(exc: BaseException) -> redis.ConnectionError:
    err = redis.ConnectionError(f"the line's server no longer serves its slot: {exc}")
    err.__cause__ = exc
    return err


class Owed(Protocol):
    """Something waiting for the reply of a command sent on a line."""

    #: the reply, once read
    reply: Any
    #: or what stands for it: an error reply, or the connection error that lost it
    error: BaseException | None


def bulk(*parts: Any) -> bytes:
    """``parts`` as RESP bulk strings (str, int or bytes), concatenated."""
    out = []
    for part in parts:
        b = part if isinstance(part, bytes) else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


_lines: weakref.WeakSet[Line] = weakref.WeakSet()


class Line:
    """One connection of this process to the Redis of ``client`` (on a
    cluster: to the master of ``key``'s slot)."""

    def __init__(self, client: Any, key: str | None = None) -> None:
        self._client = client
        self._key = key
        self._conn: Any = None
        self.lock = threading.Lock()
        self.owed: deque[Owed] = deque()
        _lines.add(self)

    def _pool(self) -> Any:
        from .connection import is_cluster
        if is_cluster(self._client):
            if self._key is None:
                raise ValueError("a line on a Redis Cluster needs the key whose slot it serves")
            node = self._client.get_node_from_key(self._key)
            if node.redis_connection is None:  # not connected yet: the client makes it
                self._client.nodes_manager.create_redis_connections([node])
            return node.redis_connection.connection_pool
        return self._client.connection_pool

    def _connection(self) -> Any:
        if self._conn is None:
            # the pool's own settings: AUTH, TLS, timeouts, health checks
            # (behind Sentinel, its connections find the master on connect)
            pool = self._pool()
            conn = pool.connection_class(**pool.connection_kwargs)
            # connect() here: Sentinel's connection finds the master in
            # connect(), which sending on an unconnected connection skips
            conn.connect()
            self._conn = conn
        return self._conn

    def call(self, command: bytes) -> Any:
        """Send ``command`` (packed RESP) and return its reply, after reading
        the replies owed. An error reply raises ``redis.ResponseError``."""
        with self.lock:
            self._drain()
            conn = self._connection()
            try:
                conn.send_packed_command([command])
                return conn.read_response()
            except MOVED as exc:
                self._drop()
                raise _moved(exc) from exc
            except redis.ResponseError:
                raise
            except BaseException:
                self._drop()
                raise

    def send(self, command: bytes, owed: Owed) -> None:
        """Send ``command``; its reply goes to ``owed`` when the line is next
        drained or used. Raises what sending raised (nothing is then owed)."""
        with self.lock:
            self._drain()  # a health check on sending must not read an owed reply
            conn = self._connection()
            try:
                conn.send_packed_command([command])
            except BaseException:
                self._drop()
                raise
            self.owed.append(owed)

    def drain(self) -> None:
        """Read every reply owed."""
        with self.lock:
            self._drain()

    def _drain(self) -> None:
        moved = False
        while self.owed:
            item = self.owed.popleft()
            try:
                item.reply = self._conn.read_response()
            except MOVED as exc:
                item.error = _moved(exc)
                moved = True
            except redis.ResponseError as exc:
                item.error = exc
            except BaseException as exc:  # noqa: BLE001 - every reply owed went with it
                item.error = exc
                for rest in self.owed:
                    rest.error = exc
                self.owed.clear()
                self._drop()
        if moved:
            self._drop()

    def drop(self) -> None:
        """Close the connection (replies owed are lost: they get errors)."""
        with self.lock:
            err = redis.ConnectionError("the connection was closed before its reply was read")
            for item in self.owed:
                item.error = err
            self.owed.clear()
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.disconnect()
            self._conn = None

    def _forget(self) -> None:
        # in a forked child: the socket and the replies owed are the parent's
        # (not disconnected: redis-py shuts a socket down only in its owner)
        self._conn = None
        self.owed.clear()
        self.lock = threading.Lock()


def _after_fork_in_child() -> None:
    for line in list(_lines):
        line._forget()


os.register_at_fork(after_in_child=_after_fork_in_child)
