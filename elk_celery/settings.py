"""Settings: one dataclass, read from keyword arguments, then ``app.conf.elk_*``,
then the defaults (the Go original's, except where its defaults were defects).

Every duration is in seconds (int or float) or a ``timedelta``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any, Iterable, Mapping

from .errors import ConfigError
from .models import MAX_EXACT, StrategyType
from .redis_urls import parse as parse_redis_url

PREFIX = "elk_"

_STRATEGIES = tuple(t.value for t in StrategyType)

#: Settings that belong to the whole app (connections, the tick, the metrics
#: endpoint): a per-job value would be silently meaningless, so it is refused.
APP_ONLY = frozenset({"redis_url", "key_prefix", "leader_election_interval", "leader_queue",
                      "leader_process",
                      "metrics_port", "metrics_address"})

#: The largest count setting is MAX_EXACT (2^53-1, Lua's exact integers),
#: what the scripts check every count argument against.
#: The longest duration setting, seconds (about 31 years): in milliseconds,
#: added to Redis's clock, still an exact integer in Lua.
MAX_SECONDS = 1e9
#: The highest claim rate (max_partitions_per_second); claim.lua takes it per 1000 s.
MAX_RATE = 1e9
#: Settings in seconds: those that must be positive, those that may be 0,
#: and the two that may be None (checked on their own).
_POSITIVE_DURATIONS = ("heartbeat_interval", "leader_election_interval", "leader_lock_expiry",
                       "partition_lock_expiry", "allocation_interval", "retry_backoff_max",
                       "circuit_breaker_failure_window", "circuit_breaker_open_timeout")
_NON_NEGATIVE_DURATIONS = ("retry_backoff", "defer_delay")
DURATIONS = (*_POSITIVE_DURATIONS, *_NON_NEGATIVE_DURATIONS,
             "node_expiry", "target_partition_seconds")


@dataclass(frozen=True)
class ElkSettings:
    """All elk_celery options; the Celery key of ``x`` is ``elk_x``."""

    #: Redis holding coordination state; default: the broker URL when it is Redis.
    redis_url: str | None = None
    #: First part of every key: ``<key_prefix>:{<namespace>}:...``.
    key_prefix: str = "elk"
    #: ``"hash"`` (HashPartitionStrategy) or ``"simple"`` (SimpleStrategy).
    strategy: str = "hash"
    #: How often a node heartbeats and renews its leases.
    heartbeat_interval: float = 10.0
    #: A node whose last heartbeat is older than this is dead (default 3 heartbeats).
    node_expiry: float | None = None
    #: How often the leader tick runs (the original's 180 s made failover take minutes).
    leader_election_interval: float = 5.0
    #: Lifetime of the leader lease; a dead leader is replaced after at most this plus a tick.
    leader_lock_expiry: float = 30.0
    #: Lifetime of a partition lease (renewed every heartbeat while the partition runs).
    partition_lock_expiry: float = 180.0
    #: The least pending backlog: live slots (task windows) x this multiple.
    worker_partition_multiple: int = 5
    #: Max partitions one node processes in parallel (across its pool
    #: processes); None = the worker's pool size (its -c, or the autoscale maximum).
    task_window: int | None = None
    #: Let a worker take a partition whose owner's lease expired or whose owner died.
    allow_preemption: bool = False
    #: A dispatched partition still unclaimed after this long is sent again.
    allocation_interval: float = 120.0
    #: Retries of a failed partition before it stays ``failed``.
    max_retries: int = 3
    #: Backoff before retry n: retry_backoff * 2**(n-1), at most retry_backoff_max.
    retry_backoff: float = 1.0
    retry_backoff_max: float = 300.0
    #: A task refused by a full task window or an open breaker is re-sent after this.
    defer_delay: float = 1.0
    #: Cap on the partitions kept pending (planned, not yet claimed). 0 = no
    #: cap: the leader keeps what the measured completion rate needs, and at
    #: least live slots x worker_partition_multiple (see "The flow" in the README).
    max_pending_partitions: int = 0
    #: IDs per partition planned from now on; None = the planner's partition_size().
    partition_size: int | None = None
    #: Claims per second the whole cluster may make for this job (token
    #: bucket in Redis, a burst of one second); 0 = no limit.
    max_partitions_per_second: float = 0.0
    #: Max task messages the leader sends in one round.
    dispatch_batch: int = 1000
    #: Compaction starts once more than this many partitions are stored: the
    #: contiguous completed prefix is then folded into a watermark (memory
    #: stays bounded; stats keep counting the folded partitions).
    keep_completed: int = 10_000
    #: Gap detection each leader tick (incremental; a full scan on election).
    gap_detection: bool = True
    #: First ID of a job.
    start_id: int = 1
    #: Split the unclaimed tail of a long-running partition onto idle slots
    #: (only partitions whose processor walks ``partition.blocks()``).
    split_partitions: bool = True
    #: Size new partitions so each takes about this long (seconds), from the
    #: measured IDs/s of recent partitions; None = the planner's size.
    target_partition_seconds: float | None = None
    #: Celery queue of partition tasks (None = the app's default queue).
    queue: str | None = None
    #: Celery queue of leader ticks; every elk worker consumes it in addition to its -Q.
    leader_queue: str = "elk.leader"
    #: Lead (plan, recover, send messages) from a process of its own next to
    #: the worker's main process, so sending thousands of messages never
    #: holds up the main process's consumer. None = yes under the prefork
    #: pool, a thread of the main process under the others.
    leader_process: bool | None = None
    circuit_breaker_enabled: bool = True
    circuit_breaker_consecutive_failures: int = 5
    circuit_breaker_total_failures: int = 10
    circuit_breaker_failure_window: float = 300.0
    circuit_breaker_open_timeout: float = 30.0
    circuit_breaker_half_open_max_requests: int = 2
    #: Start the /metrics endpoint in every worker (None = don't).
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _coerce(f, getattr(self, f.name)))
        self._check()

    # -- constructors -------------------------------------------------------
    @classmethod
    def from_celery_conf(cls, conf: Mapping[str, Any] | Any, **overrides: Any) -> ElkSettings:
        """Keyword arguments win over ``conf['elk_<name>']``, which wins over defaults."""
        values: dict[str, Any] = {}
        try:
            present = [k for k in list(conf) if isinstance(k, str) and k.startswith(PREFIX)]
        except Exception:  # a conf object without keys(): nothing to check
            present = []
        known = {PREFIX + f.name for f in fields(cls)} | OTHER_KEYS
        typos = sorted(set(present) - known)
        if typos:
            raise ConfigError(
                f"unknown setting(s) {', '.join(typos)} in the Celery config; elk settings are: "
                f"{', '.join(sorted(known))}")
        for f in fields(cls):
            key = PREFIX + f.name
            try:
                value = conf.get(key) if hasattr(conf, "get") else getattr(conf, key, None)
            except Exception:  # a lazy Celery conf that can't answer yet
                value = None
            if value is not None:
                values[f.name] = value
        reject_unknown(overrides)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def from_url(cls, redis_url: str, **overrides: Any) -> ElkSettings:
        reject_unknown(overrides)
        return cls(redis_url=redis_url, **overrides)

    def replace(self, **overrides: Any) -> ElkSettings:
        """A copy with overrides applied (None values are ignored)."""
        reject_unknown(overrides)
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    # -- derived values -----------------------------------------------------
    @property
    def node_expiry_s(self) -> float:
        return self.node_expiry if self.node_expiry is not None else 3 * self.heartbeat_interval

    def ms(self, name: str) -> int:
        """A duration setting in whole milliseconds (what the scripts take)."""
        value = self.node_expiry_s if name == "node_expiry" else getattr(self, name)
        return max(1, int(round(value * 1000)))

    def _check(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"{PREFIX}{name}={getattr(self, name)!r} is invalid: {why}")

        if self.strategy not in _STRATEGIES:
            raise bad("strategy", f"use one of {', '.join(_STRATEGIES)}")
        # numbers the scripts can take: a value past these made every round
        # or every claim fail (an infinite backoff cap, a "retry forever" of sys.maxsize)
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if not math.isfinite(v):
                raise bad(f.name, "must be a finite number")
            if f.name in DURATIONS and v > MAX_SECONDS:
                raise bad(f.name, f"must be at most {MAX_SECONDS:.0e} seconds (about 31 years)")
            if f.name == "max_partitions_per_second" and v > MAX_RATE:
                raise bad(f.name, f"must be at most {MAX_RATE:.0e} (0 = no limit)")
            if isinstance(v, int) and abs(v) > MAX_EXACT:
                raise bad(f.name, f"must be at most 2^53-1 ({MAX_EXACT})")
        for name in _POSITIVE_DURATIONS:
            if getattr(self, name) <= 0:
                raise bad(name, "must be a positive duration (seconds or timedelta)")
        for name in _NON_NEGATIVE_DURATIONS:
            if getattr(self, name) < 0:
                raise bad(name, "must be a duration >= 0")
        if self.partition_size is not None and self.partition_size < 1:
            raise bad("partition_size", "must be an integer >= 1, or None for the planner's")
        if self.max_partitions_per_second < 0:
            raise bad("max_partitions_per_second", "must be >= 0 (0 = no limit)")
        if self.task_window is not None and self.task_window < 1:
            raise bad("task_window", "must be an integer >= 1, or None for the worker's pool size")
        for name in ("worker_partition_multiple", "dispatch_batch",
                     "circuit_breaker_consecutive_failures", "circuit_breaker_total_failures",
                     "circuit_breaker_half_open_max_requests"):
            if getattr(self, name) < 1:
                raise bad(name, "must be an integer >= 1")
        for name in ("max_retries", "max_pending_partitions", "keep_completed"):
            if getattr(self, name) < 0:
                raise bad(name, "must be an integer >= 0")
        if self.target_partition_seconds is not None and self.target_partition_seconds <= 0:
            raise bad("target_partition_seconds",
                      "must be a positive duration (seconds or timedelta), or None for the "
                      "planner's partition size")
        if self.node_expiry is not None and self.node_expiry <= self.heartbeat_interval:
            raise bad("node_expiry", f"must exceed elk_heartbeat_interval ({self.heartbeat_interval})")
        if self.partition_lock_expiry <= 2 * self.heartbeat_interval:
            raise bad("partition_lock_expiry",
                      f"must exceed 2 x elk_heartbeat_interval ({self.heartbeat_interval}) so a "
                      "live owner renews its lease in time")
        if self.leader_lock_expiry <= self.leader_election_interval:
            raise bad("leader_lock_expiry",
                      f"must exceed elk_leader_election_interval ({self.leader_election_interval}) "
                      "or leadership lapses between rounds")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise bad("metrics_port", "must be a TCP port 0-65535")
        if self.redis_url is not None:
            try:
                parse_redis_url(self.redis_url)
            except ConfigError as exc:  # says the URL without its password
                raise ConfigError(f"{PREFIX}redis_url: {exc}") from None


#: elk_* keys read by other parts (the CLI), not ElkSettings fields.
OTHER_KEYS = frozenset({"elk_namespaces"})


def shortest(settings: Iterable[ElkSettings], name: str, default: float) -> float:
    """The shortest ``name`` duration over ``settings`` (e.g. every job's, to
    pace a thread that serves them all); ``default`` when there are none."""
    return min((float(getattr(s, name)) for s in settings), default=default)


def reject_app_only(overrides: Mapping[str, Any]) -> None:
    """Per-job settings may not name app-wide ones."""
    bad = sorted(set(overrides) & APP_ONLY)
    if bad:
        raise ConfigError(
            f"{', '.join(bad)} cannot be set per job: set elk_{bad[0]} on app.conf or in Elk(app, ...)")


def reject_unknown(overrides: Mapping[str, Any]) -> None:
    known = {f.name for f in fields(ElkSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"unknown elk setting(s) {', '.join(unknown)}; known settings: {', '.join(sorted(known))}")


def _coerce(f: dataclasses.Field[Any], value: Any) -> Any:
    """Turn config-file strings and timedeltas into the field's type, or fail clearly."""
    t = str(f.type)
    name = PREFIX + f.name
    if value is None:
        if "None" in t:
            return None
        raise ConfigError(f"{name} must be set")
    try:
        if t.startswith("float"):
            if isinstance(value, timedelta):
                return value.total_seconds()
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if t.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if t.startswith("bool"):
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise TypeError
            if not isinstance(value, (bool, int)):
                raise TypeError
            return bool(value)
        if t.startswith("str"):
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        kind = t.split("|")[0].strip()
        hint = " (seconds or a timedelta)" if kind == "float" else ""
        raise ConfigError(f"{name}={value!r} is invalid: expected {kind}{hint}") from None
    return value
