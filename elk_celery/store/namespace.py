"""Namespace-wide state: the leader lease, the node registry, dispatch,
recovery, planning, gap scans, compaction, the breaker's record, job
metadata and reset, with one public method per script and per read the
rest of the package needs. Partition-level operations live in
store/partitions.py (the strategy); this object wraps one strategy and adds
the rest. Nothing outside store/ touches a key or a Redis command."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..keys import registry_key
from ..models import MAX_EXACT, MAX_ID, MAX_PARTITION_ID, MIN_ID, Partition, check_fence, check_int
from .codec import expect_leader, flag, int_or_none, ints, member_id, parse_member, text
from .partitions import PartitionStrategy
from .connection import is_cluster, server_time, socket_timeout


@dataclass(frozen=True)
class LeaderState:
    is_leader: bool
    epoch: int
    holder: str
    role: str  # 'elected' | 'renewed' | 'follower' | 'released'


@dataclass(frozen=True)
class Flow:
    """What the leader sizes a round by (store/lua/flow.lua), at ``now_ms``."""

    now_ms: int
    pending: int
    completed: int
    failed: int
    #: partitions whose task message was sent and not yet taken by a claim
    queued: int
    live_nodes: int
    #: partitions the live nodes run at once (sum of their task windows)
    slots: int
    breaker: str
    breaker_opened_ms: int
    #: the planning cursor; a str when meta holds something that is not an integer
    cursor: int | str | None
    #: partitions claimed or running
    held: int = 0
    #: IDs walked by completed runs and their time, summed (complete.lua)
    run_ids: int = 0
    run_ms: int = 0
    #: meta ``control``: '' (running), 'paused' or 'cancelled'
    control: str = ""

    @property
    def idle_slots(self) -> int:
        """Live slots with nothing pending or sent to take."""
        return max(0, self.slots - self.held - self.pending - self.queued)


@dataclass(frozen=True)
class Split:
    """Reply of :meth:`NamespaceStore.split_partition`: ``code`` 'ok' (then the
    tail's id and range, and the parent's new last ID) or why not:
    'missing' | 'not_running' | 'fence' | 'no_blocks' | 'paused' | 'small'."""

    code: str
    tail_id: int | None = None
    parent_max_id: int | None = None
    tail_min_id: int | None = None
    tail_max_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.code == "ok"


@dataclass(frozen=True)
class Dispatched:
    """What :meth:`NamespaceStore.dispatch` picked: ``(id, min_id, max_id)``
    per message to send, and when the next re-sent partition falls due."""

    due: list[tuple[int, int, int]]
    #: Redis time (ms) the earliest re-sent partition is due; None = none is
    next_due_ms: int | None
    now_ms: int


@dataclass(frozen=True)
class Control:
    """A job's control state (store/lua/control.lua)."""

    #: 'running', 'paused' or 'cancelled'
    state: str
    #: running partitions stop at their next block and are handed back
    stop_running: bool
    #: Redis time (ms) of the last pause, resume or cancel; None: never
    changed_ms: int | None


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    alive: bool
    expires_in: float
    held: int
    info: dict[str, Any]


class NamespaceStore:
    """Everything elk keeps for one namespace, around its partition strategy."""

    def __init__(self, strategy: PartitionStrategy) -> None:
        self.strategy = strategy
        self.keys = strategy.keys
        self.redis = strategy.redis
        self.namespace = strategy.namespace

    @property
    def settings(self) -> Any:
        """The strategy's settings (runtime overrides replace them: Job.refresh_settings)."""
        return self.strategy.settings

    def _run(self, op: str, args: list[Any], ids: Sequence[int | str] | None = None) -> Any:
        return self.strategy._run(op, ids or [], args)

    def register(self) -> None:
        """List the namespace in the prefix's registry (for operators' tools)."""
        self.redis.sadd(registry_key(self.keys.prefix), self.namespace)

    def server_time_ms(self) -> int:
        sec, usec = server_time(self.redis, self.keys.stats)
        return int(sec) * 1000 + int(usec) // 1000

    # -- leader lease ---------------------------------------------------------
    def leader_acquire(self, node_id: str, *, renew: bool = True) -> LeaderState:
        """Take the lease when free or its holder is dead; renew it when ours
        (unless ``renew`` is False: then role 'held' and the expiry stays)."""
        r = self._run("leader", ["acquire" if renew else "elect", node_id,
                                 self.settings.ms("leader_lock_expiry")])
        return LeaderState(bool(int(r[0])), int(r[1]), text(r[2]), text(r[3]))

    def leader_release(self, node_id: str) -> LeaderState:
        r = self._run("leader", ["release", node_id, 1])
        return LeaderState(bool(int(r[0])), int(r[1]), text(r[2]), text(r[3]))

    def leader(self) -> tuple[str, int] | None:
        """(holder node, epoch) of the current lease, or None (also when the
        key holds something else: the next election overwrites it)."""
        cur = self.redis.get(self.keys.leader)
        if not cur:
            return None
        holder, _, epoch = text(cur).rpartition("|")
        if not holder or not epoch.isdigit():
            return None
        return holder, int(epoch)

    # -- nodes ----------------------------------------------------------------
    def heartbeat(self, node_id: str, info: dict[str, Any] | None = None) -> tuple[int, int]:
        """Refresh the node's heartbeat; returns (server time ms, partitions it holds)."""
        r = self._run("heartbeat", [node_id, self.settings.ms("node_expiry"),
                                    json.dumps(info or {}, separators=(",", ":"))])
        return int(r[0]), int(r[1])

    def live_node_ids(self) -> list[str]:
        now = self.server_time_ms()
        return [text(n) for n in self.redis.zrangebyscore(self.keys.nodes, f"({now}", "+inf")]

    def nodes(self) -> list[NodeInfo]:
        now = self.server_time_ms()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrange(self.keys.nodes, 0, -1, withscores=True)
        pipe.hgetall(self.keys.nodes_info)
        pipe.hgetall(self.keys.inflight)
        entries, infos, held = pipe.execute()
        infos = {text(k): v for k, v in infos.items()}
        held = {text(k): int(v) for k, v in held.items()}
        out = []
        for node, exp in entries:
            node = text(node)
            try:
                info = json.loads(infos.get(node) or "{}")
            except ValueError:
                info = {}
            out.append(NodeInfo(node, exp > now, (exp - now) / 1000, held.get(node, 0), info))
        return out

    def held_by(self, node_id: str) -> list[int]:
        """Ids of partitions ``node_id`` holds (read from the lease index)."""
        return [p.partition_id for p in self.strategy.get_partitions(self.leased_ids())
                if p.node_id == node_id]

    def leased_ids(self, limit: int | None = None) -> list[int]:
        """Ids of the partitions with a lease (claimed or running), oldest
        lease expiry first."""
        return ints(self.redis.zrange(self.keys.leases, 0, -1 if limit is None else limit - 1))

    def holds_live_lease(self, node_id: str) -> bool:
        """Does ``node_id`` hold a partition whose lease has not expired?"""
        if not self.redis.hget(self.keys.inflight, node_id):
            return False
        now = self.server_time_ms() / 1000
        return any(p.node_id == node_id and p.lease_expires_at is not None
                   and p.lease_expires_at.timestamp() > now
                   for p in self.strategy.get_partitions(self.leased_ids()))

    def unregister(self, node_id: str) -> list[int]:
        """Release everything the node holds (pending at once) and forget it."""
        held = [(pid, None) for pid in self.held_by(node_id)]
        return self.strategy.release_partitions(node_id, held, unregister=True)

    def forget_dead_nodes(self, older_than_s: float = 3600.0) -> int:
        """Drop registry entries of nodes dead for longer than ``older_than_s``."""
        cutoff = self.server_time_ms() - int(older_than_s * 1000)
        dead = [text(n) for n in self.redis.zrangebyscore(self.keys.nodes, "-inf", cutoff)]
        if dead:
            pipe = self.redis.pipeline()
            pipe.zrem(self.keys.nodes, *dead)
            pipe.hdel(self.keys.nodes_info, *dead)
            pipe.execute()
        return len(dead)

    # -- leader work ------------------------------------------------------------
    def recover(self, epoch: int | str = "", limit: int = 1000,
                ) -> tuple[list[int], list[int], list[int]]:
        """Take back partitions whose lease expired or whose owner died:
        (ids back to pending, ids failed for good, ids newly quarantined
        because their stored value is not an elk partition)."""
        ids = self.leased_ids(limit)
        if not ids:
            return [], [], []
        r = expect_leader(self._run("recover", [epoch, self.settings.max_retries, *ids], ids),
                          self.namespace, epoch)
        return ints(r[1]), ints(r[2]), ints(r[3])

    def dispatch(self, epoch: int | str = "", limit: int = 1000,
                 resend_after_ms: int | None = None, *, refill_below: int | None = None,
                 plan_below: int = 0) -> Dispatched:
        """Pick up to ``limit`` pending partitions to send task messages for:
        re-sent ones that are due first, then fresh ones in planning order
        (store/lua/dispatch.lua). With ``refill_below``, claims wake the
        leader once at most that many sent messages are left unclaimed, or
        at most ``plan_below`` partitions are pending."""
        resend = resend_after_ms if resend_after_ms is not None else self.settings.ms("allocation_interval")
        r = expect_leader(self._run("dispatch", [epoch, max(0, int(limit)), resend,
                                                 "" if refill_below is None else int(refill_below),
                                                 int(plan_below)]),
                          self.namespace, epoch)
        due = [parse_member(m) for m in r[1]]
        nxt = int(r[2])
        return Dispatched(due, None if nxt < 0 else nxt, int(r[3]))

    def flow(self, with_slots: bool = True, queued_within_ms: int | None = None) -> Flow:
        """One read of what the leader sizes its round by (store/lua/flow.lua);
        with ``queued_within_ms``, only messages sent that recently count as
        queued."""
        r = self._run("flow", [flag(with_slots),
                               "" if queued_within_ms is None else max(1, int(queued_within_ms))])
        raw = text(r[9])
        try:
            cursor: int | str | None = int(raw) if raw else None
        except ValueError:
            cursor = raw  # edited by hand: planning reports it (leader/tick.py)
        return Flow(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]),
                    int(r[6]), text(r[7]), int(r[8]), cursor, held=int(r[10]),
                    run_ids=int(text(r[11])), run_ms=int(text(r[12])), control=text(r[13]))

    def split_partition(self, epoch: int | str, partition_id: int, fence: int, at: int, *,
                        margin: int = 0, min_tail: int = 1) -> Split:
        """Split running partition ``partition_id`` (held with ``fence``, as
        read): it keeps IDs up to ``at`` - or up to its owner's claimed position
        plus ``margin`` if that is higher - and a new pending partition takes
        the rest, if that holds at least ``min_tail`` IDs (store/lua/split.lua,
        where the correctness argument is written down). Raises
        :class:`StaleLeaderError` for a deposed epoch."""
        check_int(partition_id, "partition_id", 0, MAX_PARTITION_ID)
        check_fence(fence)
        check_int(at, "split at", MIN_ID, MAX_ID)
        check_int(margin, "margin", 0, MAX_EXACT)
        check_int(min_tail, "least tail IDs", 1, MAX_EXACT)
        for _ in range(3):  # next_pid moves only when partitions are created meanwhile
            tail = int(self.redis.hget(self.keys.meta, "next_pid") or 0)
            r = expect_leader(
                self._run("split", [epoch, partition_id, fence, tail, at, margin, min_tail],
                          [partition_id, tail]), self.namespace, epoch)
            code = text(r[0])
            if code == "ok":
                return Split("ok", int(text(r[1])), int(text(r[2])), int(text(r[3])),
                             int(text(r[4])))
            if code == "refused":
                return Split(text(r[1]))
        return Split("next_pid")

    def plan_range(self, epoch: int | str, cursor: int, last: int, size: int) -> tuple[int, int]:
        """Create pending partitions of ``size`` IDs for ``cursor..last`` in one
        script call (store/lua/plan.lua) and move the planning cursor to
        ``last + 1``. Returns (partitions created, first id); (0, -1) when the
        cursor moved meanwhile (another leader planned). Raises
        :class:`StaleLeaderError` for a deposed epoch and
        :class:`~elk_celery.errors.PartitionConflict` when the range overlaps
        a stored partition (nothing is written)."""
        n = (last - cursor) // size + 1
        for _ in range(3):  # next_pid moves only when partitions are created elsewhere
            first = int(self.redis.hget(self.keys.meta, "next_pid") or 0)
            r = expect_leader(self._run("plan", [epoch, cursor, last, size, first],
                                        list(range(first, first + n))), self.namespace, epoch)
            code = text(r[0])
            if code == "ok":
                return int(r[1]), int(r[2])
            if code == "cursor":
                return 0, -1
        return 0, -1

    def wait_for_wake(self, timeout: float) -> bool:
        """Block until a script wakes the leader or ``timeout`` seconds pass;
        True when woken. The wake-ups that came meanwhile are consumed too: a
        burst costs one round."""
        # a blocking call must end before the client's own socket timeout
        limit = (socket_timeout(self.redis) or 0) - 1
        if limit > 0:
            timeout = min(timeout, limit)
        if timeout < 0.01:
            return False
        got = self.redis.blpop([self.keys.wake], timeout=timeout)
        return got is not None

    def wake(self, why: str = "operator") -> None:
        """Wake this namespace's leader loop now (e.g. to stop it promptly)."""
        self.redis.rpush(self.keys.wake, why)

    # -- job control (pause, resume, cancel) ----------------------------------
    def set_control(self, action: str, *, stop_running: bool = False) -> Control:
        """``action`` 'pause', 'resume' or 'cancel' (store/lua/control.lua);
        wakes the leader. Raises :class:`~elk_celery.errors.JobCancelled` for
        a resume or pause of a cancelled job."""
        from ..errors import JobCancelled
        r = self._run("control", [action, "1" if stop_running else "0"])
        if text(r[0]) == "cancelled":
            raise JobCancelled(f"{self.namespace} was cancelled for good: its state stays for "
                               "inspection; `elk reset` it to run it again")
        return self.control()

    def control(self) -> Control:
        state, stop, at = self.redis.hmget(self.keys.meta, "control", "stop_running", "control_at")
        return Control(text(state) if state else "running", text(stop or "") == "1",
                       int(at) if at else None)

    # -- runtime settings (`elk set`, elk_celery/runtime.py) --------------------
    def runtime_settings(self) -> dict[str, str]:
        """The job's runtime overrides: setting name -> value as stored."""
        return {text(k): text(v) for k, v in self.redis.hgetall(self.keys.runtime).items()}

    def set_runtime_settings(self, values: dict[str, str], unset: list[str] | tuple[str, ...] = ()
                             ) -> None:
        """Store overrides (already validated) and drop those in ``unset``, in
        one transaction; wakes the leader so it applies them at once."""
        pipe = self.redis.pipeline(transaction=True)
        if values:
            pipe.hset(self.keys.runtime, mapping={k: v for k, v in values.items()})
        if unset:
            pipe.hdel(self.keys.runtime, *unset)
        pipe.rpush(self.keys.wake, "settings")
        pipe.execute()

    # -- progress samples for the ETA (elk_celery/eta.py) ------------------------
    #: Samples kept (the leader records one per full round).
    PROGRESS_KEEP = 400

    def record_progress(self, now_ms: int, finished: int, planner_end: int | None) -> None:
        """Append a (Redis time, partitions finished) sample and keep the
        planner's estimated end in meta (``planner_end``)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(self.keys.progress, f"{int(now_ms)}:{int(finished)}")
        pipe.ltrim(self.keys.progress, -self.PROGRESS_KEEP, -1)
        if planner_end is None:
            pipe.hdel(self.keys.meta, "planner_end")
        else:
            pipe.hset(self.keys.meta, "planner_end", int(planner_end))
        pipe.execute()

    def progress_samples(self) -> list[tuple[int, int]]:
        """The samples, oldest first (entries that don't parse are skipped)."""
        return parse_samples(self.redis.lrange(self.keys.progress, 0, -1))

    # -- metadata ---------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        return {text(k): text(v) for k, v in self.redis.hgetall(self.keys.meta).items()}

    def init_plan(self, start_id: int) -> None:
        """Set the planning cursor and the job's first ID, unless set."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hsetnx(self.keys.meta, "cursor", start_id)
        pipe.hsetnx(self.keys.meta, "start_id", start_id)
        pipe.execute()

    def clear_planner_error(self) -> None:
        self.redis.hdel(self.keys.meta, "planner_error")

    def set_meta(self, **fields: Any) -> None:
        self.redis.hset(self.keys.meta, mapping={k: str(v) for k, v in fields.items()})

    def reset(self) -> int:
        """Delete every key of the namespace (partitions, indexes, nodes, leader)."""
        ids = [member_id(m) for m in self.redis.zrange(self.keys.ids, 0, -1)]
        keys = self.keys.all_fixed()
        self.redis.srem(registry_key(self.keys.prefix), self.namespace)
        n = 0
        for start in range(0, len(ids), 500):
            n += self.redis.delete(*self.keys.storage(ids[start:start + 500]))
        return n + self.redis.delete(*keys)

    # -- reads for operators' tools and metrics ----------------------------------
    def _timed_pipeline(self) -> Any:
        """A pipeline that starts with TIME, so its reads share one instant;
        on a Redis Cluster without it (a cluster pipeline can't carry a
        command without a key): :meth:`_execute_timed` reads TIME apart."""
        pipe = self.redis.pipeline(transaction=False)
        if not is_cluster(self.redis):
            pipe.time()
        return pipe

    def _execute_timed(self, pipe: Any) -> tuple[int, list[Any]]:
        """(Redis time ms, the other replies) of a :meth:`_timed_pipeline`."""
        if is_cluster(self.redis):
            now = self.server_time_ms()
            return now, list(pipe.execute())
        (sec, usec), *rest = pipe.execute()
        return int(sec) * 1000 + int(usec) // 1000, rest

    def stats_now(self) -> tuple[dict[str, int], int]:
        """(every stats counter, Redis time ms), read at one instant."""
        pipe = self._timed_pipeline()
        pipe.hgetall(self.keys.stats)
        now, (raw,) = self._execute_timed(pipe)
        return {text(k): int(v) for k, v in raw.items()}, now

    def overview(self, lease_ids: int = 50) -> dict[str, Any]:
        """What a metrics scrape shows of the namespace, in one round trip:
        Redis time, stats, the leader key and its TTL, nodes (with expiry),
        in-flight counts, breaker, meta, the oldest pending partition and
        lease (with their scores), the ids of up to ``lease_ids`` held
        partitions (first by lease expiry) and the ETA's samples."""
        k = self.keys
        pipe = self._timed_pipeline()
        pipe.hgetall(k.stats)
        pipe.get(k.leader)
        pipe.pttl(k.leader)
        pipe.zrange(k.nodes, 0, -1, withscores=True)
        pipe.hgetall(k.inflight)
        pipe.hgetall(k.breaker)
        pipe.hgetall(k.meta)
        pipe.zrange(k.pending, 0, 0, withscores=True)
        pipe.zrange(k.leases, 0, max(1, lease_ids) - 1, withscores=True)
        pipe.lrange(k.progress, 0, -1)
        now, (stats, leader, pttl, nodes, inflight, breaker, meta, pending, leases, samples) = \
            self._execute_timed(pipe)
        return {"now": now, "stats": stats, "leader": leader,
                "pttl": pttl, "nodes": nodes, "inflight": inflight,
                "breaker": {text(a): text(b) for a, b in breaker.items()},
                "meta": {text(a): text(b) for a, b in meta.items()},
                "pending": pending, "leases": leases[:1],
                "lease_ids": sorted(int(text(m)) for m, _ in leases[:lease_ids]),
                "samples": parse_samples(samples)}

    # -- the circuit breaker's record (its changes happen in the scripts) ------
    def breaker_record(self) -> tuple[int, dict[str, str], int, int]:
        """(Redis time ms, the breaker hash, failures within the failure
        window, claims refused while open)."""
        now = self.server_time_ms()
        window = self.settings.ms("circuit_breaker_failure_window")
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.breaker)
        pipe.zcount(self.keys.breaker_fails, now - window, "+inf")
        pipe.hget(self.keys.stats, "deferred_breaker")
        h, in_window, refused = pipe.execute()
        return now, {text(k): text(v) for k, v in h.items()}, int(in_window), int(refused or 0)

    def reset_breaker(self, reason: str = "reset by operator") -> None:
        """Close the breaker and forget recent failures."""
        pipe = self.redis.pipeline()
        pipe.hset(self.keys.breaker, mapping={"state": "closed", "consecutive": 0, "probes": 0,
                                              "reason": reason})
        pipe.delete(self.keys.breaker_fails)
        pipe.execute()

    # -- compaction ----------------------------------------------------------------
    def partition_count(self) -> int:
        """Partitions in the ``ids`` index (every one not compacted)."""
        return int(self.redis.zcard(self.keys.ids))

    def watermark(self) -> int | None:
        """Every ID below it is completed (compacted); None = never compacted."""
        return int_or_none(self.redis.hget(self.keys.meta, "watermark"))

    def compact(self, limit: int = 500, epoch: int | str = "") -> tuple[int, int | None]:
        """compact.lua over the ``limit`` lowest partitions: (partitions
        compacted, watermark after)."""
        members = [text(m) for m in self.redis.zrange(self.keys.ids, 0, max(1, limit) - 1)]
        if not members:
            return 0, self.watermark()
        ids = [member_id(m) for m in members]
        reply = expect_leader(self._run("compact", [epoch, self.settings.start_id, *members], ids),
                              self.namespace, epoch)
        done = int(reply[1])
        return done, (int(text(reply[2])) if done else self.watermark())

    # -- gap detection (gaps.py decides; these read the ``ids`` index) -------------
    def gap_meta(self) -> dict[str, Any]:
        """One read of what a gap check starts from: meta cursor, start_id,
        watermark, gap_checked, gap_sig, gaps (str or None each), stats
        created and total, the highest ``ids`` member as (id, min, max) or
        None, and the count
        of partitions failed for good."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(k.meta, "cursor", "start_id", "watermark", "gap_checked", "gap_sig", "gaps")
        pipe.hmget(k.stats, "created", "total")
        pipe.zrevrange(k.ids, 0, 0)
        pipe.zcard(k.failed)
        meta, (created, total), top, failed = pipe.execute()
        names = ("cursor", "start_id", "watermark", "gap_checked", "gap_sig", "gaps")
        out: dict[str, Any] = {n: None if v is None else text(v) for n, v in zip(names, meta)}
        out.update(created=int_or_none(created) or 0, total=int_or_none(total) or 0,
                   top=parse_member(top[0]) if top else None, failed_total=int(failed))
        return out

    def scan_gaps(self, expected: int, end: int, step: int,
                  first: bool) -> tuple[int, bool, int, list[tuple[int, int]]]:
        """gaps.lua: walk at most ``step`` ``ids`` entries from ``expected``
        (``first``: also look at the entry below it). Returns (next expected
        ID, finished, entries read, gaps found as (lo, hi))."""
        nxt, finished, read, flat = self._run(
            "gaps", [str(expected), str(end), step, flag(first)])
        nums = ints(flat)
        return int(text(nxt)), text(finished) == "1", int(read), list(zip(nums[0::2], nums[1::2]))

    def members_between(self, lo: int | str, hi: int | str,
                        limit: int | None = None) -> list[tuple[int, int, int]]:
        """(id, min, max) of the partitions whose min ID is in ``lo..hi``
        (``"(x"``: above x), by min ID; at most ``limit``."""
        if limit is None:
            found = self.redis.zrangebyscore(self.keys.ids, lo, hi)
        else:
            found = self.redis.zrangebyscore(self.keys.ids, lo, hi, start=0, num=limit)
        return [parse_member(m) for m in found]

    def members_in(self, ranges: list[tuple[int, int]]) -> list[list[tuple[int, int, int]]]:
        """:meth:`members_between` of each range, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for lo, hi in ranges:
            pipe.zrangebyscore(self.keys.ids, lo, hi)
        return [[parse_member(m) for m in found] for found in pipe.execute()]

    def member_below(self, min_id: int) -> tuple[int, int, int] | None:
        """(id, min, max) of the partition with the highest min ID below ``min_id``."""
        found = self.redis.zrevrangebyscore(self.keys.ids, f"({min_id}", "-inf", start=0, num=1)
        return parse_member(found[0]) if found else None

    def failed_ids(self, limit: int) -> list[int]:
        """Ids of (at most ``limit``) partitions failed for good."""
        return ints(self.redis.zrange(self.keys.failed, 0, limit - 1))

    def forget_gap_checkpoint(self) -> None:
        self.redis.hdel(self.keys.meta, "gap_checked", "gap_sig", "gaps")

    def create_ranges(self, ranges: list[tuple[int, int]],
                      epoch: int | str = "") -> list[Partition]:
        """Pending partitions for ``ranges`` (disjoint, checked by create.lua
        as a whole): new ids from meta ``next_pid``, one create.lua call (per
        :attr:`PartitionStrategy.BATCH`), as leader ``epoch``. Raises
        :class:`~elk_celery.errors.PartitionConflict` (nothing of that call
        written) or :class:`StaleLeaderError`."""
        out: list[Partition] = []
        step = self.strategy.BATCH
        for start in range(0, len(ranges), step):
            chunk = ranges[start:start + step]
            first = int(self.redis.hincrby(self.keys.meta, "next_pid", len(chunk))) - len(chunk)
            batch = [Partition(partition_id=first + j, min_id=lo, max_id=hi)
                     for j, (lo, hi) in enumerate(chunk)]
            self.strategy.create_batch(batch, epoch)
            out += self.strategy.get_partitions(p.partition_id for p in batch)
        return out

def parse_samples(entries: list[Any]) -> list[tuple[int, int]]:
    """Progress samples ("ms:finished") as (ms, finished); others are skipped."""
    out = []
    for raw in entries:
        t, _, f = text(raw).partition(":")
        if t.isdigit() and f.isdigit():
            out.append((int(t), int(f)))
    return out
