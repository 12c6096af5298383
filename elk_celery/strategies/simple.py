"""SimpleStrategy: one string key per partition, guarded by a per-partition lock."""

from __future__ import annotations

from ..models import StrategyType
from ..store.layouts import SimpleLayout
from ..store.partitions import PartitionStrategy


class SimpleStrategy(SimpleLayout, PartitionStrategy):
    """Partitions as ``<prefix>:{ns}:p:<id>`` strings, leases as ``lock:<id>`` keys.

    The lock key carries ``node|fence`` and expires with the lease, so an
    owner that stops renewing simply loses it. Suits small and medium jobs;
    listing all partitions reads the id index, then MGETs the keys.
    """

    kind = StrategyType.SIMPLE
