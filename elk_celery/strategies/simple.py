"""SimpleStrategy: one string key per partition, guarded by a per-partition lock."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..models import StrategyType
from ..store.codec import member_id
from .base import PartitionStrategy


class SimpleStrategy(PartitionStrategy):
    """Partitions as ``<prefix>:{ns}:p:<id>`` strings, leases as ``lock:<id>`` keys.

    The lock key carries ``node|fence`` and expires with the lease, so an
    owner that stops renewing simply loses it. Suits small and medium jobs;
    listing all partitions reads the id index, then MGETs the keys.
    """

    kind = StrategyType.SIMPLE

    def _storage(self, ids: Sequence[int | str]) -> list[str]:
        return self.keys.simple_storage(ids)

    def _raw_many(self, ids: Sequence[int | str]) -> list[Any]:
        if not ids:
            return []
        return self.redis.mget([self.keys.partition(i) for i in ids])

    def _raw_all(self) -> list[tuple[str, Any]]:
        ids = [member_id(m) for m in self.redis.zrange(self.keys.ids, 0, -1)]
        out: list[tuple[str, Any]] = []
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            out += [(i, raw) for i, raw in zip(chunk, self._raw_many(chunk)) if raw is not None]
        return out
