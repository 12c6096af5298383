"""HashPartitionStrategy: every partition of a namespace in one Redis hash."""

from __future__ import annotations

from ..models import StrategyType
from ..store.layouts import HashLayout
from ..store.partitions import PartitionStrategy


class HashPartitionStrategy(HashLayout, PartitionStrategy):
    """Partitions in hashes of 100, ``<prefix>:{ns}:pb:<id // 100>`` (the
    default; store/layouts.py)."""

    kind = StrategyType.HASH
