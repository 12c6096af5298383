"""HashPartitionStrategy: partitions in small hashes of 100 (the default)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..models import StrategyType
from ..store.codec import member_id, text
from .base import PartitionStrategy


class HashPartitionStrategy(PartitionStrategy):
    """Partitions as fields of ``<prefix>:{ns}:pb:<id // 100>`` (the default).

    A bucket of 100 short records is one listpack-encoded hash in Redis
    (see :data:`elk_celery.keys.BUCKET`). Records of the layout before
    buckets (one hash, ``<prefix>:{ns}:partitions``) are still read, and
    move to their bucket when they change.
    """

    kind = StrategyType.HASH

    def _storage(self, ids: Sequence[int | str]) -> list[str]:
        return [self.keys.partitions, *(self.keys.bucket(i) for i in ids)]

    def _raw_many(self, ids: Sequence[int | str]) -> list[Any]:
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            pipe.hget(self.keys.bucket(i), str(i))
        pipe.hmget(self.keys.partitions, [str(i) for i in ids])
        *raws, old = pipe.execute()
        return [raw if raw is not None else o for raw, o in zip(raws, old)]

    def _raw_all(self) -> list[tuple[str, Any]]:
        buckets = sorted({self.keys.bucket(member_id(m))
                          for m in self.redis.zrange(self.keys.ids, 0, -1)})
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.partitions)
        for key in buckets:
            pipe.hgetall(key)
        found: dict[str, Any] = {}
        for h in pipe.execute():  # a bucket's record wins over the old hash's
            found.update({text(k): v for k, v in h.items()})
        return list(found.items())
