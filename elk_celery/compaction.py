"""Compaction: fold the contiguous completed prefix of a job into a watermark.

A job with millions of partitions would otherwise keep every completed one
in Redis forever. ``compact.lua`` removes the completed run at the low end
of the ``ids`` index (bounded per call), moves meta ``watermark`` past it
(every ID below it is completed) and leaves the stats (total, completed,
items) as they were, counting ``compacted``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, ContextManager

from .store.namespace import NamespaceStore


@dataclass(frozen=True)
class CompactResult:
    compacted: int
    watermark: int | None


def compact_completed(store: NamespaceStore, limit: int = 500,
                      epoch: int | str = "") -> CompactResult:
    """Forget the contiguous completed partitions at the low end of the job
    (at most ``limit`` per call), moving meta ``watermark`` past them.

    Stats (total, completed, items) are unchanged; ``compacted`` counts.
    Compacted partitions are gone from storage: get_partition / get_all
    no longer return them. Call it again while it returns ``limit``.
    """
    return CompactResult(*store.compact(limit, epoch))


def compact_all(store: NamespaceStore, limit: int = 500, epoch: int | str = "",
                budget_s: float | None = None, *, keep: int = 0,
                each: Callable[[], ContextManager[object]] = contextlib.nullcontext,
                ) -> CompactResult:
    """Call :func:`compact_completed` until the completed prefix is gone, or
    until ``budget_s`` seconds have passed (a leader round's share), leaving
    at least ``keep`` partitions (the newest stay readable); ``each`` wraps
    every call (the leader times them)."""
    deadline = None if budget_s is None else time.monotonic() + budget_s
    total, wm = 0, None
    while True:
        step = limit
        if keep:
            step = min(limit, store.partition_count() - keep)
            if step <= 0:
                return CompactResult(total, wm if wm is not None else store.watermark())
        with each():
            res = compact_completed(store, step, epoch)
        total += res.compacted
        wm = res.watermark
        if res.compacted < step or (deadline is not None and time.monotonic() >= deadline):
            return CompactResult(total, wm)
