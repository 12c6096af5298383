"""This worker's node id, shared by its main process and pool children.

A node is one worker *start*: ``<celery hostname>:<random token>``, so a
restarted worker never inherits its predecessor's leases. The bootstep
sets it in the main process before the pool forks; children inherit it.
Metrics and per-node counts use the stable part, the Celery hostname
(:func:`hostname_of`), so a restart continues the same series.
"""

from __future__ import annotations

import os
import re
import secrets
import socket

_node_id: str | None = None
_registered = False
_pool_size = 0


def new_node_id(hostname: str | None = None) -> str:
    host = hostname or f"celery@{socket.gethostname()}"
    return f"{host}:{secrets.token_hex(4)}"


#: ``<hostname>:<8 hex digits>``; the Lua scripts strip the token the same way.
_NODE_ID = re.compile(r"(.+):[0-9a-fA-F]{8}")


def hostname_of(node_id: str) -> str:
    """The stable part of a node id: the Celery hostname, without the
    per-start token (an id without a token is returned as it is)."""
    m = _NODE_ID.fullmatch(node_id)
    return m.group(1) if m else node_id


def token_of(node_id: str) -> str:
    """The per-start token of a node id ('' when it has none)."""
    m = _NODE_ID.fullmatch(node_id)
    return node_id[len(m.group(1)) + 1:] if m else ""


def set_node_id(node_id: str, *, registered: bool = True) -> None:
    global _node_id, _registered
    _node_id, _registered = node_id, registered


def node_id() -> str:
    """The node id; a process without the bootstep (eager calls, scripts)
    gets an unregistered id of its own."""
    global _node_id
    if _node_id is None:
        _node_id = new_node_id(f"unregistered@{socket.gethostname()}-{os.getpid()}")
    return _node_id


def is_registered() -> bool:
    """True when a bootstep heartbeats this node (claims then need it alive)."""
    return _registered


def is_prefork(worker: object) -> bool:
    """Does this Celery worker run the prefork pool (partitions in child processes)?"""
    pool = getattr(worker, "pool_cls", None)
    return "prefork" in f"{getattr(pool, '__module__', '')}.{getattr(pool, '__name__', pool)}"


def set_pool_size(size: int) -> None:
    """The worker's pool size (set by the bootstep before the pool forks)."""
    global _pool_size
    _pool_size = max(0, int(size or 0))


def pool_size() -> int:
    """Partitions this worker can run at once; 0 when unknown (no bootstep)."""
    return _pool_size


def task_window(settings: object) -> int:
    """The node's task window for a job: its setting, or the pool size
    (0 = no cap: the pool size is unknown here)."""
    window = getattr(settings, "task_window", None)
    return window if window is not None else _pool_size


#: Celery's pool modules (celery.concurrency.<module>) -> the ``-P`` name.
_POOLS = {"prefork": "prefork", "thread": "threads", "solo": "solo", "eventlet": "eventlet",
          "gevent": "gevent", "processes": "processes"}


def pool_name(worker: object) -> str:
    """The pool as ``celery worker -P`` names it (``prefork``, ``threads``,
    ``solo``, ...); a custom pool by its dotted class path."""
    pool = getattr(worker, "pool_cls", None) or type(getattr(worker, "pool", None))
    module = getattr(pool, "__module__", "") or ""
    package, _, last = module.rpartition(".")
    if package == "celery.concurrency" and last in _POOLS:
        return _POOLS[last]
    return f"{module}.{getattr(pool, '__qualname__', pool)}"
