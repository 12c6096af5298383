"""elk_celery: leader-coordinated, partitioned batch processing for Celery."""

from __future__ import annotations

from .errors import (ConfigError, CorruptPartition, ElkError, InvalidPartition, LeaseLost,
                     PartitionConflict, PlannerError, ProcessorError, StaleFenceError,
                     StaleLeaderError, VersionConflict)
from .keys import Keys
from .models import Claim, Partition, PartitionStats, Status
from .settings import ElkSettings
from .strategies import HashPartitionStrategy, PartitionStrategy, SimpleStrategy, StrategyType

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "CorruptPartition", "ElkError", "InvalidPartition", "LeaseLost",
    "PartitionConflict", "PlannerError", "ProcessorError", "StaleFenceError",
    "StaleLeaderError", "VersionConflict", "Keys", "Claim", "Partition", "PartitionStats",
    "Status", "ElkSettings", "HashPartitionStrategy", "PartitionStrategy", "SimpleStrategy",
    "StrategyType", "__version__",
]
