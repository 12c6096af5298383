"""This worker's node id, shared by its main process and pool children.

A node is one worker *start*: ``<celery hostname>:<random token>``, so a
restarted worker never inherits its predecessor's leases. The bootstep
sets it in the main process before the pool forks; children inherit it.
"""

from __future__ import annotations

import os
import secrets
import socket

_node_id: str | None = None
_registered = False
_pool_size = 0


def new_node_id(hostname: str | None = None) -> str:
    host = hostname or f"celery@{socket.gethostname()}"
    return f"{host}:{secrets.token_hex(4)}"


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
