"""The settings keywords, typed for mypy: ``**settings: Unpack[JobSettings]``.

Written out by hand from the fields of :class:`~elk_celery.settings.ElkSettings`
(a TypedDict can't be derived from a dataclass): :class:`JobSettings` has
every field except ``APP_ONLY``, :class:`ElkOptions` every field.
tests/test_job_settings.py fails when a field is added to ElkSettings
and not here. Durations take seconds or a ``timedelta``, as at runtime.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, TypedDict, Union

#: Seconds (int or float) or a timedelta.
Duration = Union[float, timedelta]


class JobSettings(TypedDict, total=False):
    """Keywords of ``@partitioned_task`` beyond its own parameters (per-job settings)."""

    strategy: Literal["hash", "simple"]
    heartbeat_interval: Duration
    node_expiry: Duration | None
    leader_lock_expiry: Duration
    partition_lock_expiry: Duration
    worker_partition_multiple: int
    task_window: int | None  # None: the worker's pool size
    allow_preemption: bool
    allocation_interval: Duration
    max_retries: int
    retry_backoff: Duration
    retry_backoff_max: Duration
    defer_delay: Duration
    max_pending_partitions: int
    partition_size: int | None  # None: the planner's
    max_partitions_per_second: float
    dispatch_batch: int
    keep_completed: int
    gap_detection: bool
    start_id: int
    split_partitions: bool
    target_partition_seconds: Duration | None
    queue: str | None
    circuit_breaker_enabled: bool
    circuit_breaker_consecutive_failures: int
    circuit_breaker_total_failures: int
    circuit_breaker_failure_window: Duration
    circuit_breaker_open_timeout: Duration
    circuit_breaker_half_open_max_requests: int


class ElkOptions(JobSettings, total=False):
    """Keywords of ``Elk(app, ...)``: every setting, the app-wide ones too."""

    redis_url: str | None
    key_prefix: str
    leader_election_interval: Duration
    leader_queue: str
    leader_process: bool | None
    metrics_port: int | None
    metrics_address: str
