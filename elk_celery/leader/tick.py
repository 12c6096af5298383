"""The leader tick: a periodic task (``celery beat`` or ``worker -B``) that any
worker may run. Per job it takes or renews the namespace's leader lease; only
the holder then recovers, plans and dispatches, and every one of its writes
carries its epoch, so a deposed leader's late writes are refused.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable

from ..errors import InvalidPartition, PlannerError, StaleLeaderError
from ..store.connection import text
from ..planners import checked_next_max, checked_size
from ..worker.node import is_registered, node_id
from ..hooks import timed
from .sender import PartitionSender

if TYPE_CHECKING:
    from ..app import Elk, Job

log = logging.getLogger("elk_celery.leader")

#: Bound on planning rounds per tick (each round asks the planner once).
MAX_PLAN_ROUNDS = 200


def register_leader_tick(elk: Elk) -> None:
    from ..app import LEADER_TICK

    @elk.app.task(name=LEADER_TICK, ignore_result=True, acks_late=False, serializer="json",
                  shared=False)
    def leader_tick() -> dict[str, Any]:
        """Elect; then recover, plan and dispatch for every partitioned job.

        In a worker with the elk bootstep the lease holder's main process
        does the leading (leader/loop.py), so a pool process running this
        tick only elects and goes back to partitions."""
        lead_here = not is_registered()
        return {ns: tick_job(job, lead=lead_here) for ns, job in list(elk.jobs.items())}


def tick_job(job: Job, node: str | None = None, *, lead: bool = True,
             full_gaps: bool | None = None) -> dict[str, Any]:
    """One leader round for one job: take or renew the lease and, when held
    and ``lead``, recover, plan, check gaps (a full scan when ``full_gaps``,
    by default on election) and dispatch. Returns what it did."""
    node = node or node_id()
    store, hooks = job.store, job.elk.hooks
    t0 = time.perf_counter()
    with timed(hooks, "leader"):
        # a tick that won't lead must not keep a (possibly hung) leader's lease alive
        state = store.leader_acquire(node, renew=lead)
    out: dict[str, Any] = {"role": state.role, "epoch": state.epoch, "holder": state.holder}
    if state.role == "elected":
        store.register()
    if state.is_leader and lead:
        full = state.role == "elected" if full_gaps is None else full_gaps
        try:
            out.update(lead_round(job, state.epoch, full_gaps=full))
        except StaleLeaderError:
            hooks.on_stale_leader(job.namespace, node, state.epoch)
            out["role"] = "deposed"
    hooks.on_leader_tick(job.namespace, node, role=out["role"], epoch=state.epoch,
                         duration=time.perf_counter() - t0)
    return out


def lead_round(job: Job, epoch: int, full_gaps: bool = False) -> dict[str, Any]:
    store = job.store
    live = store.live_node_ids()
    back, failed = recover(job, epoch)
    budget = [job.settings.dispatch_batch]

    def send(limit: int | None = None) -> int:
        n = dispatch(job, epoch, budget[0] if limit is None else min(limit, budget[0]))
        budget[0] -= n
        return n

    # each planning round's partitions are sent at once: workers start on
    # them while the rest is planned; then re-sends; housekeeping last
    created, planned_max, error, sent = plan(job, epoch, max(1, len(live)), after_round=send)
    sent += send()
    gaps = check_gaps(job, epoch, full=full_gaps) if job.settings.gap_detection else None
    compacted = compact(job, epoch)
    return {"live_nodes": len(live), "recovered": back, "failed": failed,
            "created": created, "planned_max_id": planned_max, "planner_error": error,
            "gaps": gaps, "compacted": compacted, "dispatched": sent}


def check_gaps(job: Job, epoch: int, full: bool) -> dict[str, int]:
    """Find ID ranges no partition covers (a full scan when newly elected)
    and give those holding data partitions again."""
    from ..gaps import GapDetector
    mode = "full" if full else "incremental"
    detector = GapDetector(job.store, job.planner)
    try:
        with timed(job.elk.hooks, "gaps"):
            report = detector.detect(mode)
        filled = detector.fill(report, epoch) if report.with_data else []
    except PlannerError as exc:
        log.error("elk: %s: gap check stopped: %s", job.namespace, exc)
        return {"found": 0, "filled": 0}
    if report.gaps:
        log.warning("elk: %s: %d gap(s) in the planned IDs, %d partition(s) created for them",
                    job.namespace, len(report.gaps), len(filled))
    job.elk.hooks.on_gaps(job.namespace, found=len(report.gaps), filled=len(filled), mode=mode)
    return {"found": len(report.gaps), "filled": len(filled)}


def compact(job: Job, epoch: int, budget_s: float = 0.05) -> int:
    """Fold the oldest completed partitions into the watermark, keeping the
    newest ``keep_completed`` readable."""
    from ..compaction import compact_completed
    store, keep = job.store, job.settings.keep_completed
    done = 0
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        excess = int(store.redis.zcard(store.keys.ids)) - keep
        if excess <= 0:
            break
        with timed(job.elk.hooks, "compact"):
            n = compact_completed(store, min(500, excess), epoch).compacted
        done += n
        if n == 0:
            break
    return done


def recover(job: Job, epoch: int) -> tuple[int, int]:
    store = job.store
    # store.recover reads the lease index itself and skips the script when empty
    with timed(job.elk.hooks, "recover"):
        back, failed, quarantined = store.recover(epoch)
    if quarantined:  # once: the script reports only partitions it just quarantined
        log.error("elk: %s: quarantined partition(s) %s: their stored values are not elk "
                  "partitions; the job carries on without them (see `elk status`; delete "
                  "them to have their ranges planned again)", job.namespace, quarantined)
    if back or failed:
        log.warning("elk: %s: recovered partitions %s%s", job.namespace, back,
                    f", failed for good {failed}" if failed else "")
        job.elk.hooks.on_recovered(job.namespace, recovered=len(back), failed=len(failed))
    return len(back), len(failed)


def plan(job: Job, epoch: int, live: int,
         after_round: Callable[[], int] | None = None) -> tuple[int, int | None, str | None, int]:
    """Create partitions for new IDs until the pending backlog is full;
    ``after_round`` (which sends messages) runs after each round that
    created some. Returns (created, planned max ID, error, sent)."""
    store, s, planner = job.store, job.settings, job.planner
    t0 = time.perf_counter()
    created, planned_max, error, sent = 0, None, None, 0
    try:
        size = checked_size(planner)
        multiple = s.worker_partition_multiple
        # the seed's backlog: enough for every live node's window, a few rounds deep
        cap = s.max_pending_partitions or live * s.task_window * multiple
        store.redis.hsetnx(store.keys.meta, "cursor", s.start_id)
        store.redis.hsetnx(store.keys.meta, "start_id", s.start_id)
        for _ in range(MAX_PLAN_ROUNDS):
            pipe = store.redis.pipeline(transaction=False)
            pipe.hget(store.keys.stats, "pending")
            pipe.hget(store.keys.meta, "cursor")
            pending_raw, cursor_raw = pipe.execute()  # one round trip per round
            if int(pending_raw or 0) >= cap:
                break
            try:
                cursor = int(cursor_raw)
            except (TypeError, ValueError):
                raise PlannerError(
                    f"the planning cursor {text(cursor_raw)!r} (meta 'cursor') is not an integer: "
                    "someone edited it; set it to the first ID not yet planned, or `elk reset` "
                    "the namespace") from None
            range_size = size * live * multiple
            nxt = checked_next_max(planner, cursor, range_size)
            if nxt < cursor:
                break  # no new data yet
            n = (nxt - cursor) // size + 1
            first = int(store.redis.hincrby(store.keys.meta, "next_pid", n)) - n
            from ..models import Partition
            batch = [Partition(partition_id=first + i, min_id=cursor + i * size,
                               max_id=min(cursor + (i + 1) * size - 1, nxt)) for i in range(n)]
            with timed(job.elk.hooks, "create"):
                reply = store.strategy._create(batch, epoch, str(cursor), str(nxt + 1))
            if reply[0] == "stale_leader":
                raise StaleLeaderError(f"{job.namespace}: epoch {epoch} deposed")
            if reply[0] != "ok":
                break  # the cursor moved under us: another leader planned; stop
            created += int(reply[1])
            planned_max = nxt
            if after_round is not None:
                t1 = time.perf_counter()
                sent += after_round()
                t0 += time.perf_counter() - t1  # sending is not planning time
        store.redis.hdel(store.keys.meta, "planner_error")
    except (PlannerError, InvalidPartition) as exc:  # PartitionConflict is one too
        # planning stops for this round; recovery and dispatch still run
        error = str(exc)
        log.error("elk: %s: planning stopped: %s", job.namespace, exc)
        store.set_meta(planner_error=error[:2000])
    job.elk.hooks.on_planned(job.namespace, created=created, planned_max_id=planned_max,
                             duration=time.perf_counter() - t0, error=error)
    return created, planned_max, error, sent


def dispatch(job: Job, epoch: int, limit: int | None = None) -> int:
    """Send one task message per due pending partition (at most ``limit``,
    default ``dispatch_batch``)."""
    store, s = job.store, job.settings
    limit = s.dispatch_batch if limit is None else limit
    if limit <= 0:
        return 0
    t0 = time.perf_counter()
    with timed(job.elk.hooks, "dispatch"):
        due = store.dispatch(epoch, limit)
    if not due:
        return 0
    sender = PartitionSender(job.elk.app, job.task, job.namespace, s.queue)
    sender.send(due, {"dispatched_at": int(time.time() * 1000)})
    job.elk.hooks.on_dispatched(job.namespace, sent=len(due), duration=time.perf_counter() - t0)
    return len(due)
