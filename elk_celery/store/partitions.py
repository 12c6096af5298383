"""Partition-level state: one public method per operation script (claim,
complete, fail, renew, release, create, update, delete, retry_failed,
quarantine), owning its argument order, flag encoding, reply decoding and
error translation, as redis-py's ``lock.py`` keeps each script beside the
method that calls it. This is the partition strategy API (the Go
original's PartitionStrategy, in snake_case); both strategies run the same
scripts and differ only in their storage layout (store/layouts.py).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis

from ..errors import CorruptPartition, InvalidPartition, StaleFenceError, VersionConflict
from ..keys import Keys
from ..models import (MAX_EXACT_VERSION, MAX_ID, MAX_ITEMS, MAX_PARTITION_ID, MIN_ID, Block,
                      Claim, Partition, PartitionStats, Renewal, Status, StrategyType,
                      check_fence, check_int, check_node, coerce_partition)
from ..settings import ElkSettings
from .codec import expect_leader, flag, ints, member_id, script_error, text
from .connection import redis_from_url
from .line import Line, Owed, bulk
from .scripts import Scripts


@dataclass(frozen=True)
class ClaimOptions:
    """How a claim is decided: ARGV[2..12] of claim.lua, by name. Frozen and
    hashable: the worker's hot path packs the arguments once per options."""

    #: 'claimed' (strategy API) or 'running' (the worker)
    target: str
    lease_ms: int
    #: take a partition whose lease expired or whose owner is dead
    preempt: bool
    #: take it whatever holds it (an operator's force)
    force: bool
    #: max partitions the node may hold, 0 = no cap
    window: int
    #: on a window/breaker refusal, resend the task after this long (0 = leave it)
    defer_ms: int
    breaker: bool
    breaker_open_ms: int
    breaker_probes: int
    #: refuse when the claimer's own heartbeat expired
    require_live_node: bool
    #: cluster-wide rate limit, claims per 1000 s (0 = none; max_partitions_per_second)
    rate_per_1000s: int = 0

    @classmethod
    def of(cls, settings: ElkSettings, *, target: str = "running", window: int = 0,
           allow_preemption: bool | None = None, force: bool = False, defer: bool = True,
           require_live_node: bool = False) -> ClaimOptions:
        check_int(window, "window", 0, MAX_ITEMS, " (0 = no cap)")
        s = settings
        return cls(target, s.ms("partition_lock_expiry"),
                   s.allow_preemption if allow_preemption is None else allow_preemption,
                   force, window, s.ms("defer_delay") if defer else 0,
                   s.circuit_breaker_enabled, s.ms("circuit_breaker_open_timeout"),
                   s.circuit_breaker_half_open_max_requests, require_live_node,
                   int(round(s.max_partitions_per_second * 1000)))

    def args(self, node_id: str) -> list[Any]:
        """ARGV[1..12] of claim.lua (the claim token and ids follow)."""
        return [check_node(node_id), self.target, self.lease_ms, flag(self.preempt),
                flag(self.force), self.window, self.defer_ms, flag(self.breaker),
                self.breaker_open_ms, self.breaker_probes, flag(self.require_live_node),
                self.rate_per_1000s]


#: Items per partition in claim.lua's reply.
CLAIM_REPLY = 7


def claim_of(partition_id: int, r: Any, at: int = 0) -> Claim:
    """The :class:`Claim` in claim.lua's reply ``r`` at item ``at``: code,
    fence, attempts, version, min, max, options."""
    lo, hi = text(r[at + 4]), text(r[at + 5])
    return Claim(text(r[at]), int(partition_id), int(r[at + 1]), int(r[at + 2]),
                 int(r[at + 3]), int(lo) if lo else None, int(hi) if hi else None,
                 text(r[at + 6]))


def _pid(partition_id: Any) -> int:
    return check_int(partition_id, "partition_id", 0, MAX_PARTITION_ID)


def _token(token: Any) -> str:
    if not isinstance(token, str) or len(token) > 200:
        raise InvalidPartition(f"a claim token must be a string of at most 200 characters, got {token!r}")
    return token


def _items(items: Any) -> int:
    return check_int(items, "items_processed", 0, MAX_ITEMS,
                     " (return the number of items the partition processed)")


class PartitionStrategy(ABC):
    """Partitions of one namespace in Redis."""

    kind: StrategyType

    def __init__(self, client: redis.Redis, namespace: str,
                 settings: ElkSettings | None = None, *, key_prefix: str | None = None) -> None:
        self.redis = client
        self.settings = settings or ElkSettings()
        self.namespace = namespace
        self.keys = Keys(namespace, key_prefix or self.settings.key_prefix)
        self.scripts = Scripts(client, self.kind.value)
        self._line: Line | None = None
        self._claim_options: dict[tuple[Any, ...], ClaimOptions] = {}
        #: packed pieces of hot-path commands (see :meth:`_hot_command`)
        self._hot: dict[tuple[Any, ...], tuple[bytes, bytes, bytes, int]] = {}

    @classmethod
    def from_url(cls, redis_url: str | None = None, namespace: str = "default",
                 settings: ElkSettings | None = None, **kwargs: Any) -> PartitionStrategy:
        """Build the strategy on its own client for ``redis_url``."""
        return cls(redis_from_url(redis_url), namespace, settings, **kwargs)

    # -- where partitions live (the only difference between strategies) ----
    @abstractmethod
    def _storage(self, ids: Sequence[int | str]) -> list[str]:
        """The KEYS that follow the common ones for a call about ``ids``."""

    @abstractmethod
    def _raw_many(self, ids: Sequence[int | str], client: Any = None) -> list[Any]:
        """Stored JSON of each id (None where missing), in order; on
        ``client`` (a pipeline: queued there) instead of :attr:`redis`."""

    @abstractmethod
    def _raw_all(self) -> list[tuple[str, Any]]:
        """(id, JSON) of every partition."""

    def _run(self, op: str, ids: Sequence[int | str], args: Sequence[Any], client: Any = None) -> Any:
        try:
            return self.scripts(op, self.keys.common + self._storage(ids), list(args), client)
        except redis.ResponseError as exc:
            raise script_error(exc) from None

    def use_settings(self, settings: ElkSettings) -> None:
        """Run with ``settings`` from now on (runtime overrides, ``elk set``);
        the hot path's packed arguments and the claim options are made again."""
        self.settings = settings
        self._hot.clear()
        self._claim_options.clear()

    def strategy_type(self) -> StrategyType:
        return self.kind

    # -- reading -------------------------------------------------------------
    def get_partition(self, partition_id: int) -> Partition | None:
        """The partition, or None; :class:`CorruptPartition` if its stored
        value is not an elk partition (quarantined or not)."""
        raw = self._raw_many([partition_id])[0]
        if raw is None:
            return None
        try:
            return Partition.from_json(raw, partition_id)
        except CorruptPartition as exc:
            if self._quarantined_ids([partition_id]):
                raise CorruptPartition(
                    f"{exc} (quarantined: out of every status index; delete it with "
                    "delete_partitions() and gap detection plans its range again)") from None
            raise

    def get_partitions(self, ids: Iterable[int]) -> list[Partition]:
        """The partitions of ``ids`` that exist, leaving out quarantined ones."""
        ids = list(ids)
        return self._decode([(pid, raw) for pid, raw in zip(ids, self._raw_many(ids))
                             if raw is not None])

    def get_all_partitions(self) -> list[Partition]:
        """Every partition by id, leaving out quarantined ones (:meth:`quarantined`)."""
        return sorted(self._decode(self._raw_all()), key=lambda p: p.partition_id)

    def _decode(self, pairs: Iterable[tuple[Any, Any]]) -> list[Partition]:
        """Partitions from (id, JSON); a corrupt value raises
        :class:`CorruptPartition` unless it is quarantined (then it is left out)."""
        out: list[Partition] = []
        bad: list[tuple[Any, CorruptPartition]] = []
        for pid, raw in pairs:
            try:
                out.append(Partition.from_json(raw, pid))
            except CorruptPartition as exc:
                bad.append((pid, exc))
        if bad:
            known = self._quarantined_ids([pid for pid, _ in bad])
            for pid, error in bad:
                if str(pid) not in known:
                    raise error
        return out

    def _quarantined_ids(self, ids: Sequence[Any]) -> set[str]:
        pipe = self.redis.pipeline(transaction=False)
        for pid in ids:
            pipe.zscore(self.keys.corrupt, str(pid))
        return {str(pid) for pid, score in zip(ids, pipe.execute()) if score is not None}

    # -- quarantine (a stored value that is not an elk partition) -----------
    def quarantined(self, limit: int | None = None) -> list[tuple[int, float]]:
        """(partition id, when it was found, Unix seconds) of every quarantined
        partition, oldest first."""
        end = -1 if limit is None else max(1, limit) - 1
        entries: Any = self.redis.zrange(self.keys.corrupt, 0, end, withscores=True)
        return [(int(text(m)), float(score) / 1000) for m, score in entries]

    def quarantine(self, partition_id: int, min_id: int | None = None,
                   max_id: int | None = None) -> bool:
        """Quarantine ``partition_id`` if its stored value is not an elk
        partition (``min_id..max_id``: its range, when known from elsewhere,
        e.g. a task message). True when newly quarantined; a readable
        partition is left alone."""
        rng = "" if min_id is None or max_id is None else f"{int(min_id)}:{int(max_id)}"
        return text(self._run("quarantine", [_pid(partition_id)], [partition_id, rng])) == "quarantined"

    def get_filtered_partitions(self, status: str | Status | Iterable[str | Status] | None = None,
                                node_id: str | None = None, limit: int | None = None,
                                ) -> list[Partition]:
        """Partitions with one of ``status`` (and held by ``node_id``), by id.

        Pending, claimed, running and failed partitions are found through
        their status indexes; only ``completed`` reads every partition.
        """
        if status is None:
            wanted: set[Status] = set(Status)
        elif isinstance(status, (str, Status)):
            wanted = {Status.parse(status)}
        else:
            wanted = {Status.parse(s) for s in status}
        if Status.COMPLETED in wanted:
            parts = self.get_all_partitions()
        else:
            ids: set[int] = set()
            pipe = self.redis.pipeline(transaction=False)
            if Status.PENDING in wanted:
                pipe.zrange(self.keys.pending, 0, -1)
            if wanted & {Status.CLAIMED, Status.RUNNING}:
                pipe.zrange(self.keys.leases, 0, -1)
            if Status.FAILED in wanted:
                pipe.zrange(self.keys.failed, 0, -1)
            for members in pipe.execute():
                ids.update(int(member_id(m)) for m in members)
            parts = self.get_partitions(sorted(ids))
        out = [p for p in parts if p.status in wanted and (node_id is None or p.node_id == node_id)]
        return out[:limit] if limit is not None else out

    def get_partition_stats(self) -> PartitionStats:
        return PartitionStats.from_hash(self.redis.hgetall(self.keys.stats))

    # -- creating, changing, deleting ----------------------------------------
    def create_partitions_if_not_exist(
            self, partitions: Iterable[Partition | Mapping[str, Any]]) -> list[Partition]:
        """Create the partitions that don't exist; all or nothing.

        An existing id with the same range is left as it is (idempotent); an
        existing id with another range, or a range overlapping another
        partition, raises :class:`PartitionConflict` and writes nothing.
        Returns the partitions as stored.
        """
        batch = validate_batch(partitions)
        if batch:
            self.create_batch(batch)
        return self.get_partitions(p.partition_id for p in batch)

    def create_batch(self, batch: Sequence[Partition], epoch: int | str = "",
                     expected_cursor: str = "", new_cursor: str = "") -> list[Any]:
        """create.lua: create ``batch`` (checked by :func:`validate_batch`)
        all or nothing; with ``epoch``, as that leader
        (:class:`StaleLeaderError` when deposed); with ``expected_cursor``,
        only if the planning cursor is still there (then it moves to
        ``new_cursor``). Returns the reply: ``['ok', created]`` or
        ``['cursor', current]``; :class:`PartitionConflict` on an overlap."""
        payload = json.dumps([
            {"id": str(p.partition_id), "min": str(p.min_id), "max": str(p.max_id),
             "opts": json.dumps(p.options, separators=(",", ":")) if p.options else ""}
            for p in batch], separators=(",", ":"))
        reply = self._run("create", [p.partition_id for p in batch],
                          [epoch, expected_cursor, new_cursor, payload])
        expect_leader(reply, self.namespace, epoch)
        return [text(reply[0]), *reply[1:]]

    def update_partition(self, partition: Partition, *, expected_version: int | None = None,
                         ) -> Partition:
        """Compare-and-set: write status, node, error, options and items of
        ``partition`` if the stored version is still ``expected_version``
        (default: ``partition.version``, the version it was read at)."""
        _pid(partition.partition_id)
        if not isinstance(partition.node_id, str):
            raise InvalidPartition(f"node_id must be a string, got {partition.node_id!r}")
        fields: dict[str, Any] = {
            "status": Status.parse(partition.status).value,
            "node": partition.node_id,
            "error": partition.error if partition.error is not None else None,
            "opts": json.dumps(partition.options, separators=(",", ":")) if partition.options else "",
            "items": str(_items(partition.items_processed)),
        }
        version = partition.version if expected_version is None else expected_version
        check_int(version, "expected_version", 0, MAX_EXACT_VERSION,
                  " (the version the partition was read at)")
        reply = self._run("update", [partition.partition_id], [
            partition.partition_id, version, json.dumps(fields),
            self.settings.ms("partition_lock_expiry")])
        code = text(reply[0])
        if code == "conflict":
            raise VersionConflict(
                f"partition {partition.partition_id} is at version {reply[1]}, not {version}: "
                "read it again and retry", current_version=int(reply[1]))
        if code == "missing":
            raise InvalidPartition(f"partition {partition.partition_id} does not exist")
        if code == "transition":
            raise InvalidPartition(
                f"partition {partition.partition_id}: status {text(reply[1])} -> "
                f"{text(reply[2])} is not an allowed transition")
        stored = self.get_partition(partition.partition_id)
        assert stored is not None
        return stored

    def delete_partition(self, partition_id: int) -> bool:
        return self.delete_partitions([partition_id]) == 1

    def delete_partitions(self, partition_ids: Iterable[int]) -> int:
        """Delete partitions whatever their status (missing ones are skipped).
        A quarantined one goes with its entry in the ``ids`` index, found by
        reading that index when its value no longer says its range."""
        ids = [_pid(i) for i in partition_ids]
        if not ids:
            return 0
        args: list[Any] = list(ids)
        quarantined = self._quarantined_ids(ids)
        if quarantined:
            members = self._members_of(quarantined)
            args = [members.get(str(pid), pid) for pid in ids]
        return int(self._run("delete", ids, args))

    def _members_of(self, ids: set[str]) -> dict[str, str]:
        """The ``ids`` index entries ("id:min:max") of ``ids``: reads the index
        (an operator's path, for partitions whose value lost its range)."""
        found: dict[str, str] = {}
        start, step = 0, 10_000
        while len(found) < len(ids):
            chunk = [text(m) for m in self.redis.zrange(self.keys.ids, start, start + step - 1)]
            for m in chunk:
                if member_id(m) in ids:
                    found[member_id(m)] = m
            if len(chunk) < step:
                break
            start += step
        return found

    def retry_failed(self, partition_ids: Iterable[int] | None = None) -> list[int]:
        """Re-queue failed partitions (all of them by default) with fresh attempts."""
        if partition_ids is None:
            partition_ids = [int(text(m)) for m in self.redis.zrange(self.keys.failed, 0, -1)]
        ids = [_pid(i) for i in partition_ids]
        return ints(self._run("retry_failed", ids, ids)) if ids else []

    # -- ownership ------------------------------------------------------------
    #: Max partitions one claim/complete script call handles (bounds its run time).
    BATCH = 500

    def claim(self, partition_id: int, node_id: str, *, target: str = "running",
              window: int = 0, allow_preemption: bool | None = None, force: bool = False,
              defer: bool = True, require_live_node: bool = False, token: str = "") -> Claim:
        """The hot path: one script call, a compact :class:`Claim`.

        ``token`` names this claim: a retry with the same token (after a
        lost reply) gets the partition back, unchanged, if this node still
        holds it under that token. Use a new token for every claim you mean
        to make (a duplicate message must not share one)."""
        opts = self.claim_options(target, window, allow_preemption, force, defer,
                                  require_live_node)
        return self.claim_with(opts, [partition_id], node_id, token)[0]

    def claim_many(self, partition_ids: Iterable[int], node_id: str, *, target: str = "running",
                   window: int = 0, allow_preemption: bool | None = None, force: bool = False,
                   defer: bool = True, require_live_node: bool = False,
                   token: str = "") -> list[Claim]:
        """:meth:`claim` for several partitions in one script call (per
        :attr:`BATCH` ids), decided in order exactly as separate claims would
        be (so a task ``window`` admits the first ones). A corrupt partition
        fails its whole call with nothing claimed."""
        opts = self.claim_options(target, window, allow_preemption, force, defer,
                                  require_live_node)
        return self.claim_with(opts, partition_ids, node_id, token)

    def claim_options(self, target: str = "running", window: int = 0,
                      allow_preemption: bool | None = None, force: bool = False,
                      defer: bool = True, require_live_node: bool = False) -> ClaimOptions:
        """:meth:`ClaimOptions.of` these settings, made once per combination
        (the settings are frozen; a claim is the hot path)."""
        key = (target, window, allow_preemption, force, defer, require_live_node)
        opts = self._claim_options.get(key)
        if opts is None:
            opts = self._claim_options[key] = ClaimOptions.of(
                self.settings, target=target, window=window, allow_preemption=allow_preemption,
                force=force, defer=defer, require_live_node=require_live_node)
        return opts

    def claim_with(self, opts: ClaimOptions, partition_ids: Iterable[int], node_id: str,
                   token: str = "") -> list[Claim]:
        """claim.lua: the one call of it, per :attr:`BATCH` ids."""
        ids = [_pid(i) for i in partition_ids]
        head = [*opts.args(node_id), _token(token)]  # args() validates node_id
        out: list[Claim] = []
        for start in range(0, len(ids), self.BATCH):
            chunk = ids[start:start + self.BATCH]
            r = self._run("claim", chunk, [*head, *chunk])
            out += [claim_of(pid, r, CLAIM_REPLY * k) for k, pid in enumerate(chunk)]
        return out

    def acquire_partition(self, partition_id: int, node_id: str, *,
                          allow_preemption: bool = False, force: bool = False,
                          ) -> Partition | None:
        """Claim a partition for ``node_id``; None when it can't be taken now.

        One round trip: the claim and the read of what it wrote go out in
        one pipeline (the read runs after the claim on the same connection)."""
        pid = _pid(partition_id)
        opts = self.claim_options("claimed", 0, allow_preemption, force, defer=False)
        keys = self.keys.common + self._storage([pid])
        for _ in range(2):
            pipe = self.redis.pipeline(transaction=False)
            pipe.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", self.scripts.sha("claim"), len(keys), *keys,
                                 *opts.args(node_id), "", pid)
            self._raw_many([pid], pipe)
            r, raw = pipe.execute(raise_on_error=False)
            if isinstance(r, redis.exceptions.NoScriptError):
                self.scripts.load("claim")  # Redis restarted since: load it, try again
                continue
            if isinstance(r, redis.ResponseError):
                raise script_error(r) from None
            if isinstance(raw, Exception):
                raise raw
            if not claim_of(pid, r).ok:
                return None
            return Partition.from_json(raw[0], pid)
        c = self.claim(pid, node_id, target="claimed", window=0,
                       allow_preemption=allow_preemption, force=force, defer=False)
        return self.get_partition(pid) if c.ok else None

    def renew_leases(self, node_id: str, held: Iterable[tuple[int, int]], *,
                     start: bool = False) -> list[int]:
        """Extend the leases of (partition id, fence) pairs; returns the ids lost."""
        held = list(held)
        return self.renew_leases_timed(node_id, held, start=start).lost if held else []

    def renew_leases_timed(self, node_id: str, held: Iterable[tuple[int, int]], *,
                           start: bool = False) -> Renewal:
        """:meth:`renew_leases`, also telling until when the renewed ones are
        safe (the lease keeper's self-fence deadline, see worker/lease.py)."""
        held = list(held)
        lease_ms = self.settings.ms("partition_lock_expiry")
        args: list[Any] = [check_node(node_id), lease_ms, flag(start)]
        for pid, fence in held:
            args += [_pid(pid), check_fence(fence)]
        r = self._run("renew", [p for p, _ in held], args)
        now, node_exp = int(r[0]), int(r[1])
        return Renewal(ints(r[2]), now, now + lease_ms,
                       None if node_exp < 0 else node_exp)

    def start_partition(self, partition_id: int, node_id: str, fence: int) -> None:
        """Mark a claimed partition running (renews its lease too)."""
        if self.renew_leases(node_id, [(partition_id, fence)], start=True):
            raise self._stale(partition_id, node_id, fence)

    def release_partition(self, partition_id: int, node_id: str, fence: int | None = None) -> bool:
        """Give a held partition back (pending, sent again at once)."""
        return bool(self.release_partitions(node_id, [(partition_id, fence)]))

    def release_partitions(self, node_id: str, held: Iterable[tuple[int, int | None]], *,
                           unregister: bool = False) -> list[int]:
        held = list(held)
        args: list[Any] = [check_node(node_id), flag(unregister)]
        for pid, fence in held:
            args += [_pid(pid), "" if fence is None else check_fence(fence)]
        return ints(self._run("release", [p for p, _ in held], args))

    def complete_partition(self, partition_id: int, node_id: str, fence: int,
                           items_processed: int = 0) -> int:
        """Mark done; raises :class:`StaleFenceError` unless ``node_id`` holds it with
        ``fence``. Completing again what this node completed with this fence
        (a retry after a lost reply) returns its version, not an error."""
        result = self.complete_many(node_id, [(partition_id, fence, items_processed)])[0]
        if isinstance(result, StaleFenceError):
            raise result
        return result

    def complete_many(self, node_id: str, done: Iterable[tuple[int, int, int]],
                      ) -> list[int | StaleFenceError]:
        """Complete several ``(partition_id, fence, items_processed)`` of
        ``node_id`` in one script call (per :attr:`BATCH`). Returns, in order,
        each partition's new version, or the :class:`StaleFenceError` its
        write got (returned, not raised: the other completions stand)."""
        done = list(done)
        check_node(node_id)
        for pid, fence, items in done:
            _pid(pid), check_fence(fence), _items(items)
        breaker = flag(self.settings.circuit_breaker_enabled)
        out: list[int | StaleFenceError] = []
        for start in range(0, len(done), self.BATCH):
            chunk = done[start:start + self.BATCH]
            args: list[Any] = [node_id, breaker]
            for pid, fence, items in chunk:
                args += [pid, fence, items]
            r = self._run("complete", [pid for pid, _, _ in chunk], args)
            for k, (pid, fence, _) in enumerate(chunk):
                at = 4 * k
                out.append(int(r[at + 1]) if text(r[at]) == "ok"
                           else self._stale(pid, node_id, fence, r[at:at + 4]))
        return out

    # -- the worker's hot path, on a process's own connection (store/line.py) --
    @property
    def line(self) -> Line:
        """This strategy's :class:`~elk_celery.store.line.Line` (one per process)."""
        if self._line is None:
            self.scripts.load("claim", "complete")  # its EVALSHAs find them
            self._line = Line(self.redis)
        return self._line

    def _hot_command(self, op: str, key: tuple[Any, ...], head: Any, ids: Sequence[int],
                     tail: Sequence[Any]) -> bytes:
        """EVALSHA of ``op`` on ``ids`` with args ``head() + tail``, packed;
        the pieces that only depend on ``key`` are packed once."""
        pieces = self._hot.get(key)
        if pieces is None:
            args = head()
            pieces = self._hot[key] = (bulk("EVALSHA", self.scripts.sha(op)),
                                       bulk(*self.keys.common), bulk(*args), len(args))
        evalsha, common, head_b, n_head = pieces
        storage = self._storage(ids)
        nkeys = len(self.keys.common) + len(storage)
        return b"".join((b"*%d\r\n" % (3 + nkeys + n_head + len(tail)), evalsha, bulk(nkeys),
                         common, bulk(*storage), head_b, bulk(*tail)))

    def worker_claim(self, partition_id: int, node_id: str, *, window: int = 0,
                     require_live_node: bool = False, token: str = "") -> Claim:
        """:meth:`claim` of one partition to run, on this process's :attr:`line`
        (the worker's hot path). Falls back to the ordinary client when the
        line can't answer (a lost connection, or a script Redis forgot),
        with the same ``token``: if the lost try had claimed it, the retry
        gets that claim back."""
        _pid(partition_id)
        cmd = self._hot_command(
            "claim", ("claim", node_id, window, require_live_node),
            lambda: self.claim_options(window=window,
                                       require_live_node=require_live_node).args(node_id),
            [partition_id], [_token(token), partition_id])
        try:
            r = self.line.call(cmd)
        except redis.ResponseError as exc:
            if not isinstance(exc, redis.exceptions.NoScriptError):
                raise script_error(exc) from None
            r = None
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            r = None
        if r is None:
            return self.claim(partition_id, node_id, window=window,
                              require_live_node=require_live_node, token=token)
        return claim_of(partition_id, r)

    def complete_send(self, owed: Owed, partition_id: int, node_id: str, fence: int,
                      items_processed: int) -> None:
        """Send one completion on this process's :attr:`line` without waiting
        for its reply, which goes to ``owed``; :meth:`complete_reply` reads it
        (worker/completion.py)."""
        _pid(partition_id), check_fence(fence), _items(items_processed)
        cmd = self._hot_command(
            "complete", ("complete", node_id),
            lambda: [node_id, flag(self.settings.circuit_breaker_enabled)],
            [partition_id], [partition_id, fence, items_processed])
        self.line.send(cmd, owed)

    def complete_reply(self, reply: Any, partition_id: int, node_id: str, fence: int) -> int:
        """What the reply of :meth:`complete_send` means: the new version, or
        raises :class:`StaleFenceError`."""
        if text(reply[0]) == "ok":
            return int(reply[1])
        raise self._stale(partition_id, node_id, fence, reply[:4])

    #: Most IDs one block may hold (block.lua checks the same bound).
    MAX_BLOCK = 2**31 - 1

    def record_block(self, partition_id: int, node_id: str, fence: int, *,
                     done_through: int | None = None, size: int = 0,
                     items: int | None = None) -> Block:
        """The owner's checkpoint and next block (store/lua/block.lua): record
        ``done_through`` (the last ID done) and ``items`` so far, then claim the
        next block of at most ``size`` IDs after the checkpoint (``size`` 0:
        claim none). Raises :class:`StaleFenceError` unless ``node_id`` holds
        the partition with ``fence``."""
        _pid(partition_id), check_node(node_id), check_fence(fence)
        check_int(size, "block size", 0, self.MAX_BLOCK)
        if done_through is not None:
            check_int(done_through, "last ID done", MIN_ID, MAX_ID, " (IDs are int64)")
        r = self._run("block", [partition_id], [
            partition_id, node_id, fence, "" if done_through is None else done_through, size,
            "" if items is None else _items(items)])
        if text(r[0]) != "ok":
            raise self._stale(partition_id, node_id, fence, r)
        lo, hi = text(r[1]), text(r[2])
        return Block(int(lo) if lo else None, int(hi) if hi else None, int(text(r[3])),
                     text(r[4]) == "1")

    def fail_partition(self, partition_id: int, node_id: str, fence: int, error: str, *,
                       retryable: bool = True) -> tuple[str, float]:
        """Record a failure: ('retry', delay seconds) or ('failed', 0)."""
        s = self.settings
        _pid(partition_id), check_node(node_id), check_fence(fence)
        r = self._run("fail", [partition_id], [
            partition_id, node_id, fence, str(error), s.max_retries, s.ms("retry_backoff"),
            s.ms("retry_backoff_max"), flag(retryable),
            flag(s.circuit_breaker_enabled), s.circuit_breaker_consecutive_failures,
            s.circuit_breaker_total_failures, s.ms("circuit_breaker_failure_window")])
        code = text(r[0])
        if code not in ("retry", "failed"):
            raise self._stale(partition_id, node_id, fence, r)
        return code, int(r[2]) / 1000

    def _stale(self, partition_id: int, node_id: str, fence: int,
               reply: Any = None) -> StaleFenceError:
        if reply is not None and text(reply[0]) == "missing":
            return StaleFenceError(f"partition {partition_id} does not exist (deleted or reset)",
                                   partition_id=partition_id, fence=fence)
        cur = self.get_partition(partition_id)
        if cur is None:
            return StaleFenceError(f"partition {partition_id} does not exist (deleted or reset)",
                                   partition_id=partition_id, fence=fence)
        return StaleFenceError(
            f"partition {partition_id}: node {node_id!r} with fence {fence} no longer owns it "
            f"(now {cur.status}, node {cur.node_id!r}, fence {cur.fence}); the write was refused",
            partition_id=partition_id, fence=fence, current_fence=cur.fence,
            current_status=str(cur.status), current_node=cur.node_id)


def validate_batch(partitions: Iterable[Partition | Mapping[str, Any]]) -> list[Partition]:
    """Check a batch on its own: valid fields, unique ids, no overlaps."""
    batch = [coerce_partition(p) for p in partitions]
    seen: set[int] = set()
    for p in batch:
        if p.partition_id in seen:
            raise InvalidPartition(f"partition id {p.partition_id} appears twice in the batch")
        seen.add(p.partition_id)
    ordered = sorted(batch, key=lambda p: p.min_id)
    for a, b in zip(ordered, ordered[1:]):
        if b.min_id <= a.max_id:
            raise InvalidPartition(
                f"partitions {a.partition_id} ({a.min_id}..{a.max_id}) and {b.partition_id} "
                f"({b.min_id}..{b.max_id}) overlap")
    return batch
