"""Compaction: fold the contiguous completed prefix of a job into a watermark.

A job with millions of partitions would otherwise keep every completed one
in Redis forever. ``compact.lua`` removes the completed run at the low end
of the ``ids`` index (bounded per call), moves meta ``watermark`` past it
(every ID below it is completed) and leaves the stats (total, completed,
items) as they were, counting ``compacted``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .errors import StaleLeaderError
from .store.codec import int_or_none, member_id, text
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
    members = [text(m) for m in store.redis.zrange(store.keys.ids, 0, max(1, limit) - 1)]
    if not members:
        return CompactResult(0, int_or_none(store.redis.hget(store.keys.meta, "watermark")))
    ids = [member_id(m) for m in members]
    reply = store.strategy._run("compact", ids, [epoch, store.settings.start_id, *members])
    if text(reply[0]) != "ok":
        raise StaleLeaderError(f"{store.namespace}: epoch {epoch} is no longer the leader's")
    done = int(reply[1])
    return CompactResult(done, int(text(reply[2])) if done else
                         int_or_none(store.redis.hget(store.keys.meta, "watermark")))


def compact_all(store: NamespaceStore, limit: int = 500, epoch: int | str = "",
                budget_s: float | None = None) -> CompactResult:
    """Call :func:`compact_completed` until the completed prefix is gone, or
    until ``budget_s`` seconds have passed (a leader tick's share)."""
    deadline = None if budget_s is None else time.monotonic() + budget_s
    total, wm = 0, None
    while True:
        res = compact_completed(store, limit, epoch)
        total += res.compacted
        wm = res.watermark
        if res.compacted < limit or (deadline is not None and time.monotonic() >= deadline):
            return CompactResult(total, wm)
