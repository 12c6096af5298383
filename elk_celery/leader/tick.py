"""The leader tick: a periodic task (``celery beat`` or ``worker -B``) that any
worker may run. Per job it takes or renews the namespace's leader lease; only
the holder then recovers, plans and dispatches, and every one of its writes
carries its epoch, so a deposed leader's late writes are refused.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from ..compaction import compact_all
from ..errors import InvalidPartition, PlannerError, StaleLeaderError
from ..gaps import GapDetector
from ..hooks import timed
from ..job import LEADER_TICK
from ..planners import checked_next_max, checked_size, estimated_end
from ..worker.node import is_registered, node_id
from .flow import FlowMeter, Targets
from .rebalance import Rebalanced, rebalance
from .sender import PartitionSender

if TYPE_CHECKING:
    from ..job import ElkHost, Job
    from .outbox import Outbox
    from .upkeep import Upkeep

log = logging.getLogger("elk_celery.leader")

#: Partitions one planning call creates at most (bounds how long a script
#: blocks Redis: about 15 ms for 5,000 on a 2-core machine).
PLAN_CHUNK = 5_000
#: Planning stops for the round after this long (seconds); the next round goes on.
PLAN_BUDGET = 3.0


def register_leader_tick(elk: ElkHost) -> None:
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
             full_gaps: bool | None = None, full: bool = True,
             outbox: Outbox | None = None, upkeep: Upkeep | None = None) -> dict[str, Any]:
    """One leader round for one job: take or renew the lease and, when held
    and ``lead``, plan and dispatch; a ``full`` round (always on election)
    also recovers, checks gaps (a full scan when ``full_gaps``, by default on
    election) and compacts. Returns what it did (``role`` is ``elected``,
    ``renewed``, ``held`` (``lead=False`` and this node holds the lease),
    ``follower``, ``dead`` (this node's heartbeat expired) or ``deposed``).
    With an ``outbox`` (leader/outbox.py) the round hands its picks over
    and ends; without one it publishes them itself. With an ``upkeep``
    (leader/upkeep.py) a full round asks it for the gap check and compaction
    instead of doing them."""
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
        elected = state.role == "elected"
        try:
            out.update(lead_round(job, state.epoch, full=full or elected,
                                  full_gaps=elected if full_gaps is None else full_gaps,
                                  outbox=outbox, upkeep=upkeep))
        except StaleLeaderError:
            hooks.on_stale_leader(job.namespace, node, state.epoch)
            out["role"] = "deposed"
    hooks.on_leader_tick(job.namespace, node, role=out["role"], epoch=state.epoch,
                         duration=time.perf_counter() - t0)
    return out


class SerializedPlanner:
    """A job's planner, one call at a time: in a worker's leader loop the round
    plans while the upkeep thread checks gaps (leader/upkeep.py), and a
    user's planner (a database session, a cursor) need not be thread-safe."""

    def __init__(self, planner: Any, lock: threading.RLock) -> None:
        self._planner, self._lock = planner, lock

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._planner, name)
        if not callable(attr):
            return attr

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)
        return locked

    def __repr__(self) -> str:
        return repr(self._planner)


def planner_of(job: Job) -> SerializedPlanner | None:
    """``job.planner`` behind the job's planner lock (None when it has none)."""
    return None if job.planner is None else SerializedPlanner(job.planner, job.planner_lock)


def meter_of(job: Job) -> FlowMeter:
    """The job's flow meter (rates seen by this process's leader rounds)."""
    meter = job.leader_state
    if not isinstance(meter, FlowMeter):
        meter = job.leader_state = FlowMeter()
    return meter


def lead_round(job: Job, epoch: int, *, full: bool = True, full_gaps: bool = False,
               outbox: Outbox | None = None, upkeep: Upkeep | None = None) -> dict[str, Any]:
    """What the leader does each round: size the backlog from demand
    (leader/flow.py), plan and send what it lacks. A ``full`` round (each
    election interval, and on election) also recovers partitions of dead
    owners, checks for gaps and compacts; a round the job's own progress
    woke up does only the flow."""
    job.refresh_settings(force=True)  # runtime overrides (`elk set`): one HGETALL a round
    store, s = job.store, job.settings
    meter = meter_of(job)
    t0 = time.perf_counter()
    back = failed = 0
    if full:
        back, failed = recover(job, epoch)
    with timed(job.elk.hooks, "flow"):
        flow = store.flow(with_slots=True,
                          queued_within_ms=meter.queued_horizon_ms(meter.last_queued))
    meter.observe(flow.now_ms, flow.completed + flow.failed, busy=flow.pending > 0 or flow.queued > 0)
    meter.sizer.observe(flow.run_ids, flow.run_ms)
    if full:
        # the ETA's timeline (eta.py): one sample per full round
        store.record_progress(flow.now_ms, flow.completed + flow.failed,
                              estimated_end(planner_of(job)))
    control = store.control()
    if control.state != "running":
        # paused or cancelled: no planning, no messages; recovery goes on so a
        # dead owner's partition is pending (and sent) again after resume
        meter.round_took(time.perf_counter() - t0)
        return {"live_nodes": flow.live_nodes, "slots": flow.slots, "recovered": back,
                "failed": failed, "created": 0, "planned_max_id": None, "planner_error": None,
                "gaps": None, "compacted": None, "dispatched": 0, "targets": None,
                "control": control.state, "next_due_in": None}
    targets = meter.targets(s, flow)
    meter.last_queued = targets.queued
    sent = [0]
    next_due: list[int | None] = [None]

    def send() -> int:
        # the breaker refuses every claim while open: send nothing until it
        # admits probes, and look again then
        reopens = None
        if flow.breaker == "open" and s.circuit_breaker_enabled:
            reopens = flow.breaker_opened_ms + s.ms("circuit_breaker_open_timeout")
        limit = 0 if reopens is not None and reopens > flow.now_ms else \
            min(s.dispatch_batch - sent[0], targets.queued - flow.queued - sent[0])
        if outbox is not None and outbox.pending >= targets.queued:
            # the broker is slow or away: picks already wait to be published; a
            # pick that waited past the queued horizon must not make us pick more
            limit = 0
        n, due = dispatch(job, epoch, limit, targets, outbox)
        sent[0] += n
        if reopens is not None and reopens > flow.now_ms:
            due = reopens if due is None else min(due, reopens)
        next_due[0] = due
        return n

    created, planned_max, error = 0, None, None
    if flow.pending < targets.pending:
        # the first chunk's messages go out before the rest is planned (with an
        # outbox: while it is planned, so the round lets it publish meanwhile)
        if outbox is not None:
            outbox.release()
        try:
            created, planned_max, error = plan(job, epoch, targets.pending - flow.pending,
                                               flow.cursor, after_first=send)
        finally:
            if outbox is not None:
                outbox.hold()
    split = Rebalanced()
    if created:
        meter.tail.planned()
    elif s.split_partitions:
        # idle slots and nothing new to plan: split stragglers (leader/rebalance.py)
        with timed(job.elk.hooks, "split"):
            split = rebalance(store, epoch, flow)
        if split.splits:
            job.elk.hooks.on_split(job.namespace, splits=split.splits)
    tail = meter.tail.observe(flow, split.splits)
    if tail is not None:
        job.elk.hooks.on_tail(job.namespace, seconds=tail)
    if not created:
        send()
    elif targets.queued - flow.queued - sent[0] > 0:
        send()
    gaps = compacted = None
    if full and upkeep is not None:
        upkeep.request(epoch, full_gaps)
    elif full:
        out = upkeep_pass(job, epoch, full_gaps=full_gaps)
        gaps, compacted = out["gaps"], out["compacted"]
    # the refill latency counts until messages are out: with an outbox, its
    # last batch's time from pick to published (leader/flow.py)
    meter.round_took(time.perf_counter() - t0 + (outbox.lag() if outbox is not None else 0.0))
    if split.recheck_in is not None:
        next_due[0] = min(next_due[0] or 2**62, flow.now_ms + int(split.recheck_in * 1000))
    return {"live_nodes": flow.live_nodes, "slots": targets.slots, "recovered": back,
            "failed": failed, "created": created, "planned_max_id": planned_max,
            "planner_error": error, "gaps": gaps, "compacted": compacted,
            "dispatched": sent[0], "targets": targets, "split": split.splits, "tail": tail,
            "next_due_in": None if next_due[0] is None else max(0.0, (next_due[0] - flow.now_ms) / 1000)}


def upkeep_pass(job: Job, epoch: int, *, full_gaps: bool,
                compact_budget: float = 0.05) -> dict[str, Any]:
    """A full round's housekeeping: the gap check (when enabled) and
    compaction, for up to ``compact_budget`` seconds (a round's share; the
    upkeep thread gives it more, see leader/upkeep.py)."""
    gaps = check_gaps(job, epoch, full=full_gaps) if job.settings.gap_detection else None
    return {"gaps": gaps, "compacted": compact(job, epoch, budget_s=compact_budget)}


def check_gaps(job: Job, epoch: int, full: bool) -> dict[str, int]:
    """Find ID ranges no partition covers (a full scan when newly elected)
    and give those holding data partitions again."""
    mode = "full" if full else "incremental"
    detector = GapDetector(job.store, planner_of(job))
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
    return compact_all(job.store, 500, epoch, budget_s, keep=job.settings.keep_completed,
                       each=lambda: timed(job.elk.hooks, "compact")).compacted


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


def plan(job: Job, epoch: int, want: int, cursor: int | str | None,
         after_first: Callable[[], int] | None = None) -> tuple[int, int | None, str | None]:
    """Create up to ``want`` partitions for new IDs from the planning cursor
    on, in calls of up to :data:`PLAN_CHUNK`; ``after_first`` (which sends
    messages) runs after the first call that created some. Returns
    (created, planned max ID, error)."""
    store, s, planner = job.store, job.settings, planner_of(job)
    t0 = time.perf_counter()
    created, planned_max, error = 0, None, None
    spent_sending = 0.0
    try:
        # `partition_size` (a setting, or `elk set` at runtime) wins over the planner's
        size = s.partition_size or checked_size(planner)
        if s.target_partition_seconds is not None:
            size = meter_of(job).sizer.size_for(size, s.target_partition_seconds)
        if cursor is None:
            store.init_plan(s.start_id)
            cursor = s.start_id
        elif not isinstance(cursor, int):
            raise PlannerError(
                f"the planning cursor {cursor!r} (meta 'cursor') is not an integer: "
                "someone edited it; set it to the first ID not yet planned, or `elk reset` "
                "the namespace")
        while created < want and time.perf_counter() - t0 - spent_sending < PLAN_BUDGET:
            n_max = min(want - created, PLAN_CHUNK)
            nxt = checked_next_max(planner, cursor, size * n_max)
            if nxt < cursor:
                break  # no new data yet
            with timed(job.elk.hooks, "create"):
                n, _ = store.plan_range(epoch, cursor, nxt, size)
            if n == 0:
                break  # the cursor moved under us: another leader planned; stop
            created += n
            planned_max = nxt
            cursor = nxt + 1
            if after_first is not None:
                t1 = time.perf_counter()
                after_first()
                after_first = None
                spent_sending += time.perf_counter() - t1  # sending is not planning time
        store.clear_planner_error()
    except (PlannerError, InvalidPartition) as exc:  # PartitionConflict is one too
        # planning stops for this round; recovery and dispatch still run
        error = str(exc)
        log.error("elk: %s: planning stopped: %s", job.namespace, exc)
        store.set_meta(planner_error=error[:2000])
    job.elk.hooks.on_planned(job.namespace, created=created, planned_max_id=planned_max,
                             duration=time.perf_counter() - t0 - spent_sending, error=error)
    return created, planned_max, error


def dispatch(job: Job, epoch: int, limit: int | None = None,
             targets: Targets | None = None, outbox: Outbox | None = None) -> tuple[int, int | None]:
    """Send one task message per pending partition picked (at most ``limit``,
    default ``dispatch_batch``; re-sent ones first), or hand them to
    ``outbox``. Returns (sent, Redis time ms when the next re-sent partition
    falls due, or None)."""
    store, s = job.store, job.settings
    limit = s.dispatch_batch if limit is None else max(0, limit)
    t0 = time.perf_counter()
    with timed(job.elk.hooks, "dispatch"):
        picked = store.dispatch(epoch, limit,
                                refill_below=None if targets is None else targets.refill_below,
                                plan_below=0 if targets is None else targets.plan_below)
    kwargs = {"dispatched_at": int(time.time() * 1000)}
    if picked.due and outbox is not None:
        outbox.put(picked.due, kwargs, t0)
    elif picked.due:
        sender = PartitionSender(job.elk.app, job.task, job.namespace, s.queue)
        sender.send(picked.due, kwargs)
        job.elk.hooks.on_dispatched(job.namespace, sent=len(picked.due),
                                    duration=time.perf_counter() - t0)
    return len(picked.due), picked.next_due_ms
