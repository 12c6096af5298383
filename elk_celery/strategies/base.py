"""The partition strategy API (the Go original's PartitionStrategy, in
snake_case). It lives in the store (store/partitions.py), which owns Redis;
a strategy adds only where partitions are stored (store/layouts.py)."""

from __future__ import annotations

from ..models import StrategyType
from ..store.partitions import PartitionStrategy, validate_batch

__all__ = ["PartitionStrategy", "StrategyType", "validate_batch"]
