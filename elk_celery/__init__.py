"""elk_celery: leader-coordinated, partitioned batch processing for Celery."""

from __future__ import annotations

from .errors import (ConfigError, CorruptPartition, ElkError, InvalidPartition, JobCancelled,
                     LeaseLost, PartitionConflict, PartitionStopped, PlannerError,
                     ProcessorError, StaleFenceError, StaleLeaderError, VersionConflict)
from .app import Elk, PartitionedTask, get_elk, partitioned_task
from .breaker import BreakerState, CircuitBreaker
from .hooks import HookChain, Hooks
from .job import Job
from .job_settings import ElkOptions, JobSettings
from .keys import Keys
from .eta import Eta
from .models import Block, Claim, Partition, PartitionStats, Status
from .planners import PartitionPlanner, RangePlanner, SQLPlanner
from .settings import ElkSettings
from .store.namespace import Control, NamespaceStore
from .strategies import HashPartitionStrategy, PartitionStrategy, SimpleStrategy, StrategyType
from .worker.runner import PartitionContext, PartitionFailed

from ._version import __version__

__all__ = [
    "Elk", "Job", "PartitionedTask", "JobSettings", "ElkOptions", "get_elk", "partitioned_task", "BreakerState", "CircuitBreaker", "HookChain",
    "Hooks", "PartitionPlanner", "RangePlanner", "SQLPlanner", "NamespaceStore",
    "PartitionContext", "PartitionFailed",
    "ConfigError", "CorruptPartition", "ElkError", "InvalidPartition", "LeaseLost",
    "PartitionConflict", "PlannerError", "ProcessorError", "StaleFenceError",
    "JobCancelled", "PartitionStopped", "Block", "Control", "Eta",
    "StaleLeaderError", "VersionConflict", "Keys", "Claim", "Partition", "PartitionStats",
    "Status", "ElkSettings", "HashPartitionStrategy", "PartitionStrategy", "SimpleStrategy",
    "StrategyType", "__version__",
]
