"""Partitions, their statuses and statistics, as the strategies return them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Mapping

from .errors import CorruptPartition, InvalidPartition

#: The numbers the scripts take exactly (Lua numbers are doubles, exact only
#: below 2^53, and Redis's cjson writes numbers with 14 significant digits;
#: so ids and counts travel and are stored as decimal strings). A partition
#: id leaves room for the leader's next id (an int64 counter).
MAX_PARTITION_ID = 2**63 - 2
#: First and last ID of a range: int64, as in SQL tables.
MIN_ID, MAX_ID = -(2**63), 2**63 - 1
#: Lua's exact integers (doubles): every count a script checks stays within.
MAX_EXACT = 2**53 - 1
#: Items one partition may report: exact in Lua arithmetic.
MAX_ITEMS = MAX_EXACT
#: Fences and epochs are Redis server time in ms plus claims (well below
#: this until the year 5138); compared as the scripts print them.
MAX_FENCE = 10**14 - 1
#: Partition versions (compared as the scripts print them, like fences).
MAX_EXACT_VERSION = 10**14 - 1


class StrategyType(str, Enum):
    """Where a namespace's partitions live: the one list of strategy names
    (settings, the scripts' storage layouts and the strategy classes use it)."""

    SIMPLE = "simple"
    HASH = "hash"

    def __str__(self) -> str:
        return self.value


class Status(str, Enum):
    """Partition status; compares equal to (and prints as) its plain value."""

    PENDING = "pending"
    CLAIMED = "claimed"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: str | Status) -> Status:
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(s.value for s in cls)
            raise InvalidPartition(f"unknown partition status {value!r}: use one of {allowed}") from None


#: The stored record's one-letter names and status letters (store/lua/_lib.lua
#: "the record"); a record without "s" uses the long names (the encoding
#: before that one) and is read as it is.
_LONG = {"s": "status", "a": "min", "b": "max", "f": "fence", "v": "version", "n": "attempts",
         "i": "items", "o": "node", "e": "error", "x": "opts", "c": "created", "u": "updated",
         "h": "hb", "l": "lease", "r": "probe", "k": "claim"}
_STATUS = {"p": "pending", "c": "claimed", "r": "running", "d": "completed", "f": "failed"}


def _expand(d: dict[str, Any], partition_id: Any) -> dict[str, Any]:
    """A compact record with the long names (and its id, which it does not store)."""
    if "s" not in d:
        return d
    out = {_LONG.get(k, k): v for k, v in d.items()}
    out["status"] = _STATUS.get(out["status"], out["status"])
    out["id"] = partition_id
    out.setdefault("updated", out.get("created"))
    return out


def _opt_int(v: Any) -> int | None:
    return None if v in (None, "") else int(v)


def _ts(ms: Any) -> datetime | None:
    if ms in (None, "", 0):
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc)


@dataclass
class Partition:
    """One ID range ``min_id..max_id`` (inclusive) and its processing state."""

    partition_id: int
    min_id: int
    max_id: int
    status: Status = Status.PENDING
    node_id: str = ""
    fence: int = 0
    version: int = 0
    attempts: int = 0
    items_processed: int = 0
    error: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_heartbeat: datetime | None = None
    lease_expires_at: datetime | None = None
    #: the last ID its owner recorded done (blocks(), checkpoint()); None: none yet
    checkpoint: int | None = None
    #: the last ID of the block being processed (claimed by blocks())
    block_end: int | None = None
    #: items its current (or last) run reported so far (progress(), blocks())
    progress_items: int | None = None
    #: the partition this one was split from (dynamic rebalancing), if any
    parent_id: int | None = None
    #: times its range was split (its tail given to another partition)
    splits: int = 0
    #: server time (ms) its current (or last) run was claimed, and the ID it
    #: resumed at then; when its checkpoint was last recorded (ms)
    run_started_ms: int | None = None
    run_from: int | None = None
    checkpoint_ms: int | None = None

    @property
    def size(self) -> int:
        return self.max_id - self.min_id + 1

    @property
    def resume_id(self) -> int:
        """Where work on it resumes: after its checkpoint, else its first ID."""
        return self.min_id if self.checkpoint is None else self.checkpoint + 1

    @property
    def done_fraction(self) -> float:
        """Share of its IDs up to the checkpoint (1.0 once completed)."""
        if self.status == Status.COMPLETED:
            return 1.0
        return (self.resume_id - self.min_id) / self.size

    @classmethod
    def from_json(cls, raw: str | bytes, partition_id: Any = "?") -> Partition:
        try:
            d = _expand(json.loads(raw), partition_id)
            opts = d.get("opts") or ""
            return cls(
                partition_id=int(d["id"]),
                min_id=int(d["min"]),
                max_id=int(d["max"]),
                status=Status(d["status"]),
                node_id=d.get("node") or "",
                fence=int(d.get("fence") or 0),
                version=int(d.get("version") or 0),
                attempts=int(d.get("attempts") or 0),
                items_processed=int(d.get("items") or 0),
                error=d.get("error"),
                options=json.loads(opts) if opts else {},
                created_at=_ts(d.get("created")),
                updated_at=_ts(d.get("updated")),
                last_heartbeat=_ts(d.get("hb")),
                lease_expires_at=_ts(d.get("lease")),
                checkpoint=_opt_int(d.get("ckpt")),
                block_end=_opt_int(d.get("blk")),
                progress_items=_opt_int(d.get("prog")),
                parent_id=_opt_int(d.get("parent")),
                splits=int(d.get("splits") or 0),
                run_started_ms=_opt_int(d.get("t0")),
                run_from=_opt_int(d.get("r0")),
                checkpoint_ms=_opt_int(d.get("ckpt_at")),
            )
        # AttributeError: valid JSON that is not an object ('[1, 2]', '"x"')
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            raise CorruptPartition(
                f"partition {partition_id} holds a value that is not an elk partition "
                f"({exc}): {text[:80]!r}; delete it or reset the namespace"
            ) from None


def check_int(value: Any, name: str, lo: int, hi: int, hint: str = "") -> int:
    """``value`` if it is an int within ``lo..hi``, else :class:`InvalidPartition`
    naming ``name``, the bounds and what was given (``hint`` says what to pass)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPartition(f"{name} must be an integer, got {value!r}{hint}")
    if not lo <= value <= hi:
        bounds = f">= 0 and <= {hi}" if lo == 0 else f"between {lo} and {hi}"
        raise InvalidPartition(f"{name} must be {bounds}, got {value}{hint}")
    return value


def check_node(node_id: Any) -> str:
    if not isinstance(node_id, str) or not node_id:
        raise InvalidPartition(f"node_id must be a non-empty string, got {node_id!r}")
    return node_id


def check_fence(fence: Any) -> int:
    return check_int(fence, "fence", 0, MAX_FENCE, " (pass the fence token your claim returned)")


def coerce_partition(item: Partition | Mapping[str, Any]) -> Partition:
    """Accept a Partition or a mapping with partition_id, min_id, max_id."""
    if isinstance(item, Partition):
        p = item
    elif isinstance(item, Mapping):
        missing = [k for k in ("partition_id", "min_id", "max_id") if k not in item]
        if missing:
            raise InvalidPartition(f"partition {dict(item)!r} lacks {', '.join(missing)}")
        p = Partition(partition_id=item["partition_id"], min_id=item["min_id"],
                      max_id=item["max_id"], options=dict(item.get("options") or {}))
    else:
        raise InvalidPartition(f"expected a Partition or a mapping, got {type(item).__name__}")
    for name in ("partition_id", "min_id", "max_id"):
        value = getattr(p, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidPartition(f"partition {name} must be an integer, got {value!r}")
    check_int(p.partition_id, "partition_id", 0, MAX_PARTITION_ID, " (2^63 - 2 is the largest)")
    check_int(p.min_id, "min_id", MIN_ID, MAX_ID, " (IDs are int64)")
    check_int(p.max_id, "max_id", MIN_ID, MAX_ID, " (IDs are int64)")
    if p.min_id > p.max_id:
        raise InvalidPartition(
            f"partition {p.partition_id}: min_id {p.min_id} > max_id {p.max_id} "
            "(ranges are inclusive: min_id <= max_id)")
    if not isinstance(p.options, dict):
        raise InvalidPartition(f"partition {p.partition_id}: options must be a dict")
    return p


@dataclass(frozen=True)
class PartitionStats:
    """Counts per status of one namespace, as kept by the scripts."""

    total_count: int
    pending_count: int
    claimed_count: int
    running_count: int
    completed_count: int
    failed_count: int
    items_processed: int = 0
    stale_writes: int = 0
    preempted: int = 0
    recovered: int = 0
    retried: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    #: partitions whose stored value is not an elk partition (not in the
    #: status counts; ``total_count`` includes them)
    quarantined_count: int = 0

    @property
    def completion_rate(self) -> float:
        return self.completed_count / self.total_count if self.total_count else 0.0

    @property
    def failure_rate(self) -> float:
        return self.failed_count / self.total_count if self.total_count else 0.0

    @property
    def in_flight(self) -> int:
        return self.claimed_count + self.running_count

    @classmethod
    def from_hash(cls, h: Mapping[bytes | str, bytes | str]) -> PartitionStats:
        c: dict[str, int] = {}
        for k, v in h.items():
            key = k.decode() if isinstance(k, bytes) else k
            try:
                c[key] = int(v)
            except ValueError:
                raise CorruptPartition(
                    f"stats field {key!r} holds {v.decode(errors='replace') if isinstance(v, bytes) else v!r}, "
                    "not an integer: someone edited the stats hash; set it to the recount "
                    "(partitions with that status) or reset the namespace") from None
        return cls(
            total_count=c.get("total", 0), pending_count=c.get("pending", 0),
            claimed_count=c.get("claimed", 0), running_count=c.get("running", 0),
            completed_count=c.get("completed", 0), failed_count=c.get("failed", 0),
            items_processed=c.get("items", 0), stale_writes=c.get("stale_writes", 0),
            preempted=c.get("preempted", 0), recovered=c.get("recovered", 0),
            retried=c.get("retried", 0), counters=c, quarantined_count=c.get("corrupt", 0),
        )

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in (
            "total_count", "pending_count", "claimed_count", "running_count",
            "completed_count", "failed_count", "items_processed", "stale_writes",
            "preempted", "recovered", "retried", "quarantined_count")}
        d["completion_rate"] = self.completion_rate
        d["failure_rate"] = self.failure_rate
        return d


@dataclass(frozen=True)
class Renewal:
    """Reply of a lease renewal: what was lost, and until when nobody else
    can take what was renewed (Redis server time, ms)."""

    lost: list[int]
    #: Redis server time when the renewal ran
    now_ms: int
    #: the renewed leases' new expiry
    lease_expires_ms: int
    #: the node's heartbeat expiry; None: the node never heartbeats
    node_expires_ms: int | None

    @property
    def safe_ms(self) -> int:
        """How long after ``now_ms`` the renewed partitions stay this node's
        for sure: recovery and preemption need the lease expired or the
        node's heartbeat expired, whichever comes first."""
        until = self.lease_expires_ms
        if self.node_expires_ms is not None:
            until = min(until, self.node_expires_ms)
        return until - self.now_ms


@dataclass(frozen=True)
class Block:
    """Reply of :meth:`~elk_celery.strategies.base.PartitionStrategy.record_block`:
    the block claimed (``lo..hi``, None when none) and the partition's current end."""

    lo: int | None
    hi: int | None
    #: the partition's last ID as stored now (a leader may shorten a range)
    end: int
    #: the job was paused or cancelled with stop-running: hand it back
    stop: bool


@dataclass(frozen=True)
class Claim:
    """Compact reply of the hot-path claim (no full partition read)."""

    code: str
    partition_id: int
    fence: int
    attempts: int
    version: int
    min_id: int | None
    max_id: int | None
    options_json: str

    @property
    def ok(self) -> bool:
        return self.code in ("ok", "preempted")

    @property
    def options(self) -> dict[str, Any]:
        return json.loads(self.options_json) if self.options_json else {}
