"""Exceptions raised by elk_celery; all derive from :class:`ElkError`."""

from __future__ import annotations


class ElkError(Exception):
    """Base class of every elk_celery error."""


class ConfigError(ElkError, ValueError):
    """A setting is missing or invalid; the message names the key and the fix."""


class InvalidPartition(ElkError, ValueError):
    """A partition given to the API is malformed (bad range, overlap, ...)."""


class PartitionConflict(InvalidPartition):
    """A partition clashes with one already stored (same id, other range; overlap)."""


class CorruptPartition(ElkError):
    """Redis holds a value under a partition key that is not an elk partition."""


class VersionConflict(ElkError):
    """A compare-and-set update lost: the partition changed since it was read."""

    def __init__(self, message: str, current_version: int | None = None) -> None:
        super().__init__(message)
        self.current_version = current_version


class StaleFenceError(ElkError):
    """A write came from a node that no longer owns the partition with that fence.

    The partition was recovered, preempted or finished by someone else; the
    write was refused and counted (``stale_writes`` in the stats).
    """

    def __init__(self, message: str, *, partition_id: int, fence: int | None = None,
                 current_fence: int | None = None, current_status: str | None = None,
                 current_node: str | None = None) -> None:
        super().__init__(message)
        self.partition_id = partition_id
        self.fence = fence
        self.current_fence = current_fence
        self.current_status = current_status
        self.current_node = current_node


class StaleLeaderError(ElkError):
    """A leader write carried an epoch that is no longer the current one."""


class LeaseLost(ElkError):
    """Raised inside a processor whose partition lease was lost: stop working."""


class PartitionStopped(ElkError):
    """Raised inside a processor, at its next block or checkpoint, when the job
    was paused or cancelled with stop-running: the partition is handed back
    (done blocks stay done) and resumes from its checkpoint after ``resume``."""


class JobCancelled(ElkError):
    """A cancelled job cannot be paused or resumed: it stays cancelled until reset."""


class PlannerError(ElkError):
    """A planner raised or returned something that is not a valid next max id."""


class ProcessorError(ElkError):
    """A processor returned something that is not a count of items processed."""
