"""Completions whose reply is read later.

A partition's completion is the last Redis round trip before its task
returns, and under load it costs a third of a no-op partition's time in
the pool (benchmarks/bench_e2e.py --trace). So the worker writes the
completion script to a connection of its own and returns at once; the
reply is read before this process's next claim (so the task window counts
the finished partition as gone), by the lease keeper within a second when
the process stays idle, and when the process exits.

Nothing is lost by not waiting: the script runs as soon as Redis reads it,
before Celery acks the message. A reply that never arrives (Redis went
away) is settled by writing the completion again, synchronously, which is
safe: the write is fenced and a repeat of our own finds it done. Only the
outcome's report (hooks, metrics, a stale-owner warning) comes later.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import StaleFenceError


@dataclass(eq=False)
class Pending:
    store: Any
    conn: Any
    partition_id: int
    node: str
    fence: int
    items: int
    #: called with the outcome once known: 'completed' | 'stale' | 'lost'
    report: Callable[[str], None]
    #: settles it synchronously when the reply can't be read
    fallback: Callable[[], str]
    sent_at: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False


_pending: set[Pending] = set()
_lock = threading.Lock()


def send(store: Any, partition_id: int, node: str, fence: int, items: int,
         report: Callable[[str], None], fallback: Callable[[], str]) -> bool:
    """Send the completion; False when it could not be sent (do it synchronously)."""
    pool = store.redis.connection_pool
    try:
        conn = pool.get_connection()
    except Exception:  # noqa: BLE001 - Redis away: the synchronous path retries
        return False
    try:
        store.strategy.complete_send(conn, partition_id, node, fence, items)
    except Exception:  # noqa: BLE001
        conn.disconnect()
        pool.release(conn)
        return False
    p = Pending(store, conn, partition_id, node, fence, items, report, fallback)
    with _lock:
        _pending.add(p)
    return True


def settle(p: Pending) -> None:
    with p.lock:
        if p.done:
            return
        p.done = True
        with _lock:
            _pending.discard(p)
        pool = p.store.redis.connection_pool
        try:
            p.store.strategy.complete_read(p.conn, p.partition_id, p.node, p.fence)
            outcome = "completed"
        except StaleFenceError as exc:
            if (exc.current_status == "completed" and exc.current_node == p.node
                    and exc.current_fence == p.fence):
                outcome = "completed"
            else:
                import logging
                logging.getLogger("elk_celery.worker").warning("elk: %s", exc)
                outcome = "stale"
        except Exception:  # noqa: BLE001 - no reply (or NOSCRIPT): write it again
            p.conn.disconnect()
            outcome = None
        pool.release(p.conn)
        if outcome is None:
            outcome = p.fallback()
    p.report(outcome)


def settle_all(older_than: float = 0.0) -> None:
    """Settle every pending completion of this process (sent at least
    ``older_than`` seconds ago)."""
    now = time.monotonic()
    with _lock:
        due = [p for p in _pending if now - p.sent_at >= older_than]
    for p in due:
        settle(p)


def pending_count() -> int:
    with _lock:
        return len(_pending)
