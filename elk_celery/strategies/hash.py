"""HashPartitionStrategy: every partition of a namespace in one Redis hash."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..models import StrategyType
from .base import PartitionStrategy


class HashPartitionStrategy(PartitionStrategy):
    """Partitions as fields of ``<prefix>:{ns}:partitions`` (the default).

    Reading many partitions is one HMGET; every script touches one hash.
    """

    kind = StrategyType.HASH

    def _storage(self, ids: Sequence[int | str]) -> list[str]:
        return [self.keys.partitions]

    def _raw_many(self, ids: Sequence[int | str]) -> list[Any]:
        if not ids:
            return []
        return self.redis.hmget(self.keys.partitions, [str(i) for i in ids])

    def _raw_all(self) -> list[tuple[str, Any]]:
        return [(k.decode() if isinstance(k, bytes) else k, v)
                for k, v in self.redis.hgetall(self.keys.partitions).items()]
