"""Partition strategies: where partitions live in Redis and how they change."""

from __future__ import annotations

from ..settings import ElkSettings
from ..models import StrategyType
from .base import PartitionStrategy, validate_batch
from .hash import HashPartitionStrategy
from .simple import SimpleStrategy

#: strategy name (``elk_strategy``) -> its class, one per :class:`StrategyType`
STRATEGIES: dict[str, type[PartitionStrategy]] = {
    cls.kind.value: cls for cls in (HashPartitionStrategy, SimpleStrategy)}


def strategy_for(client, namespace: str, settings: ElkSettings) -> PartitionStrategy:  # type: ignore[no-untyped-def]
    """The strategy ``settings.strategy`` names, for ``namespace``."""
    return STRATEGIES[settings.strategy](client, namespace, settings)


__all__ = ["PartitionStrategy", "StrategyType", "HashPartitionStrategy", "SimpleStrategy",
           "STRATEGIES", "strategy_for", "validate_batch"]
