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
    """Partition ``id`` as a field of the hash ``<prefix>:{ns}:pb:<id // 100>``:
    a bucket of 100 short records is one listpack-encoded hash in Redis (see
    :data:`elk_celery.keys.BUCKET`). Records of the layout before buckets
    (one hash, ``<prefix>:{ns}:partitions``) are still read (the scripts
    move each to its bucket when it changes: store/lua/_io_hash.lua)."""

    def _storage(self, ids: Sequence[int | str]) -> list[str]:
        return [self.keys.partitions, *(self.keys.bucket(i) for i in ids)]

    def _raw_many(self, ids: Sequence[int | str], client: Any = None) -> list[Any]:
        if not ids:
            return []
        if client is not None:
            # queued on the caller's pipeline after a script that wrote them:
            # a partition a script wrote is in its bucket
            buckets = {self.keys.bucket(i) for i in ids}
            if len(buckets) != 1:
                raise ValueError("_raw_many on a caller's pipeline reads one bucket at a time")
            return client.hmget(buckets.pop(), [str(i) for i in ids])  # type: ignore[no-any-return]
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
