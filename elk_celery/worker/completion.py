"""Completions whose reply is read later.

A partition's completion is the last Redis round trip before its task
returns, and under load it costs a third of a no-op partition's time in
the pool (benchmarks/bench_e2e.py --trace). So the worker writes the
completion script to the process's own connection (store/line.py) and
returns at once; the reply is read before this process's next claim (so
the task window counts the finished partition as gone), by the lease
keeper within a second when the process stays idle, and when the process
exits.

Nothing is lost by not waiting: the script runs as soon as Redis reads it,
before Celery acks the message. A reply that never arrives (Redis went
away) is settled by writing the completion again, synchronously, which is
safe: the write is fenced and complete.lua answers a repeat of our own
completion 'ok' (not a stale write). Only the
outcome's report (hooks, metrics, a stale-owner warning) comes later.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import StaleFenceError

log = logging.getLogger("elk_celery.worker")


@dataclass(eq=False)
class Pending:
    store: Any
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
    #: filled in by the line (store/line.py): the reply, or the error standing for it
    reply: Any = None
    error: BaseException | None = None


_pending: set[Pending] = set()
_lock = threading.Lock()


def send(store: Any, partition_id: int, node: str, fence: int, items: int,
         report: Callable[[str], None], fallback: Callable[[], str]) -> bool:
    """Send the completion; False when it could not be sent (do it synchronously)."""
    p = Pending(store, partition_id, node, fence, items, report, fallback)
    try:
        store.strategy.complete_send(p, partition_id, node, fence, items)
    except Exception:  # noqa: BLE001 - Redis away: the synchronous path retries
        return False
    with _lock:
        _pending.add(p)
    return True


def settle(p: Pending) -> None:
    with p.lock:
        if p.done:
            return
        p.store.strategy.line.drain()  # reads p's reply unless already read
        p.done = True
        with _lock:
            _pending.discard(p)
        outcome: str | None = None
        if p.error is None:
            try:
                p.store.strategy.complete_reply(p.reply, p.partition_id, p.node, p.fence)
                outcome = "completed"
            except StaleFenceError as exc:
                log.warning("elk: %s", exc)
                outcome = "stale"
            except Exception:  # noqa: BLE001 - Redis away while reading the state
                outcome = None
        if outcome is None:  # no reply (or NOSCRIPT): write it again
            outcome = p.fallback()
    p.report(outcome)


def settle_all(older_than: float = 0.0) -> None:
    """Settle every pending completion of this process (sent at least
    ``older_than`` seconds ago)."""
    now = time.monotonic()
    with _lock:
        if not _pending:
            return
        due = [p for p in _pending if now - p.sent_at >= older_than]
    for p in due:
        settle(p)


def pending_count() -> int:
    with _lock:
        return len(_pending)


def _after_fork_in_child() -> None:
    # the parent's completions are the parent's to settle
    global _lock
    _pending.clear()
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
