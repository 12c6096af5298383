"""HashPartitionStrategy: every partition of a namespace in one Redis hash."""

from __future__ import annotations

from ..models import StrategyType
from ..store.layouts import HashLayout
from ..store.partitions import PartitionStrategy


class HashPartitionStrategy(HashLayout, PartitionStrategy):
    """Partitions as fields of ``<prefix>:{ns}:partitions`` (the default).

    Reading many partitions is one HMGET; every script touches one hash.
    """

    kind = StrategyType.HASH
