"""The completion path of a pool process: recording a partition done,
now (:func:`complete_now`, retried) or with its reply read later
(:func:`record`), on the process's own connection (store/line.py), with
the synchronous write as the fallback. The runner calls :func:`record`
only; nothing else of the worker touches a completion.

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

from ..errors import CorruptPartition, StaleFenceError
from ..hooks import Hooks, timed

log = logging.getLogger("elk_celery.worker")


@dataclass(eq=False)
class Pending:
    store: Any
    hooks: Hooks
    partition_id: int
    node: str
    fence: int
    items: int
    #: called with the outcome once known: 'completed' | 'stale' | 'corrupt' | 'lost'
    report: Callable[[str], None]
    sent_at: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False
    #: filled in by the line (store/line.py): the reply, or the error standing for it
    reply: Any = None
    error: BaseException | None = None


_pending: set[Pending] = set()
_lock = threading.Lock()


def record(store: Any, hooks: Hooks, partition_id: int, node: str, fence: int, items: int,
           report: Callable[[str], None], *, defer: bool = True) -> str | None:
    """Record ``partition_id`` done. With ``defer``, send it and return None:
    its reply is read later and ``report`` gets the outcome then. Otherwise
    (or when it can't be sent) write it now and return the outcome, which
    the caller reports."""
    if defer:
        p = Pending(store, hooks, partition_id, node, fence, items, report)
        try:
            store.strategy.complete_send(p, partition_id, node, fence, items)
        except Exception:  # noqa: BLE001 - Redis away: the synchronous path retries
            pass
        else:
            with _lock:
                _pending.add(p)
            return None
    return complete_now(store, hooks, partition_id, node, fence, items)


def complete_now(store: Any, hooks: Hooks, partition_id: int, node: str, fence: int,
                 items: int, attempts: int = 5) -> str:
    """Record the completion and wait for it, retrying Redis errors (safe: the
    write is fenced, and complete.lua answers a repeat of our own completion
    'ok'): 'completed', 'stale', 'corrupt' or 'lost'."""
    delay = 0.2
    for attempt in range(attempts):
        try:
            with timed(hooks, "complete"):
                store.strategy.complete_partition(partition_id, node, fence, items)
            return "completed"
        except StaleFenceError as exc:
            log.warning("elk: %s", exc)
            return "stale"
        except CorruptPartition as exc:  # the leader's recovery quarantines it
            log.error("elk: could not record partition %s done: %s", partition_id, exc)
            return "corrupt"
        except Exception as exc:  # noqa: BLE001 - Redis away: try again, then give up
            if attempt == attempts - 1:
                log.error("elk: could not record partition %s done (%r); its lease will lapse "
                          "and it will run again", partition_id, exc)
                return "lost"
            time.sleep(delay)
            delay *= 2
    return "lost"


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
            outcome = complete_now(p.store, p.hooks, p.partition_id, p.node, p.fence, p.items)
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


def pending() -> list[Pending]:
    """The completions of this process whose reply was not read yet."""
    with _lock:
        return list(_pending)


def pending_count() -> int:
    with _lock:
        return len(_pending)


def _after_fork_in_child() -> None:
    # the parent's completions are the parent's to settle
    global _lock
    _pending.clear()
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
