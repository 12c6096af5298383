"""Where a strategy keeps its partitions: the only thing the two strategies
do differently (which keys a script gets, how many partitions are read at
once). Mixed into :class:`~elk_celery.store.partitions.PartitionStrategy`
by the strategies (strategies/hash.py, strategies/simple.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .codec import member_id, text

if TYPE_CHECKING:
    from ..keys import Keys

    class _Base:
        redis: Any
        keys: Keys
else:
    _Base = object


class HashLayout(_Base):
    """Every partition of a namespace as a field of one hash,
    ``<prefix>:{ns}:partitions``: reading many is one HMGET."""

    def _storage(self, ids: Sequence[int | str]) -> list[str]:
        return [self.keys.partitions]

    def _raw_many(self, ids: Sequence[int | str], client: Any = None) -> list[Any]:
        if not ids:
            return []
        return (client or self.redis).hmget(self.keys.partitions, [str(i) for i in ids])  # type: ignore[no-any-return]

    def _raw_all(self) -> list[tuple[str, Any]]:
        return [(text(k), v) for k, v in self.redis.hgetall(self.keys.partitions).items()]


class SimpleLayout(_Base):
    """One string key per partition, ``<prefix>:{ns}:p:<id>``, and a
    ``lock:<id>`` key per lease: listing all reads the id index, then MGETs."""

    def _storage(self, ids: Sequence[int | str]) -> list[str]:
        return self.keys.simple_storage(ids)

    def _raw_many(self, ids: Sequence[int | str], client: Any = None) -> list[Any]:
        if not ids:
            return []
        return (client or self.redis).mget([self.keys.partition(i) for i in ids])  # type: ignore[no-any-return]

    def _raw_all(self) -> list[tuple[str, Any]]:
        ids = [member_id(m) for m in self.redis.zrange(self.keys.ids, 0, -1)]
        out: list[tuple[str, Any]] = []
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            out += [(i, raw) for i, raw in zip(chunk, self._raw_many(chunk)) if raw is not None]
        return out
