"""The partition task: claim, process under a lease, complete or fail.

Every outcome is decided by a script on Redis: a duplicate message finds
the partition taken or done and does nothing; a stale owner's completion is
refused. A processor that raises or returns garbage fails its partition
(retried with backoff), never the worker or the job.
"""

from __future__ import annotations

import logging
import os
import random
import time
import traceback
from typing import TYPE_CHECKING, Any, Iterator

from celery import signals

from ..errors import (CorruptPartition, LeaseLost, PartitionStopped, ProcessorError,
                      StaleFenceError)
from ..hooks import timed
from ..models import MAX_ITEMS, Block, check_int
from . import completion
from .lease import Held, keeper
from .node import is_registered, node_id, task_window

if TYPE_CHECKING:
    from celery import Task as _Task

    from ..job import ElkHost, Job, JobSpec

    Task = _Task[Any, Any]  # annotations only (Celery's Task is generic in its stubs)

log = logging.getLogger("elk_celery.worker")


class PartitionFailed(Exception):
    """Raised to Celery after a failure was recorded, so Flower shows it."""


#: progress() writes to Redis at most this often (seconds); blocks() and
#: checkpoint() always do.
PROGRESS_EVERY = 1.0


class PartitionContext:
    """What a bound processor (``bind=True``) gets as its first argument.

    ``min_id`` is where the work resumes: after the checkpoint an earlier
    owner recorded (``blocks()``, ``checkpoint()``), else the partition's
    first ID; ``range_min_id`` is always its first ID. ``max_id`` is the
    range's end as last read: a leader may split the unclaimed tail off a
    range walked with ``blocks()``, which then ends earlier.
    """

    def __init__(self, task: Task, job: Job, partition_id: int, fence: int, attempts: int,
                 min_id: int, max_id: int, held: Held, range_min: int | None = None) -> None:
        self.task = task
        self.namespace = job.namespace
        self.partition_id = partition_id
        #: Grows with every claim of this partition: pass it to your own
        #: writes (e.g. ``WHERE fence < :fence``) to refuse a stale owner's.
        self.fence = fence
        self.attempts = attempts
        self.min_id = min_id
        self.max_id = max_id
        self.range_min_id = min_id if range_min is None else range_min
        self.node_id = held.node_id
        self.items = 0
        self._held = held
        self._strategy = job.store.strategy
        self._progress_sent = 0.0

    @property
    def lost(self) -> bool:
        """True once the lease was lost, or its deadline passed (see
        worker/lease.py): stop and return."""
        return self._held.expired()

    def check(self) -> None:
        """Raise :class:`LeaseLost` if the lease was lost."""
        if self._held.expired():
            raise LeaseLost(f"{self.namespace} partition {self.partition_id}: lease lost")

    def blocks(self, size: int) -> Iterator[tuple[int, int]]:
        """Walk the range in consecutive blocks ``(lo, hi)`` of at most
        ``size`` IDs, from the checkpoint on. Each block is claimed in Redis
        before it is yielded, and asking for the next one records the last
        as done (the checkpoint), so a crash re-does at most the block that
        was running. Ends early when the partition's end moved down; raises
        :class:`PartitionStopped` when the job was paused or cancelled with
        stop-running, :class:`LeaseLost` when the partition is not ours."""
        check_int(size, "block size", 1, self._strategy.MAX_BLOCK)
        done: int | None = None
        while True:
            block = self._record(done, size)
            if block.lo is None or block.hi is None:
                return
            self.check()
            yield block.lo, block.hi
            done = block.hi

    def checkpoint(self, last_done_id: int) -> None:
        """Record every ID up to ``last_done_id`` done (for processors that walk
        their range themselves): a later owner starts after it. Raises like
        :meth:`blocks`."""
        self._record(last_done_id, 0)

    def _record(self, done: int | None, size: int, *, may_stop: bool = True) -> Block:
        self.check()
        try:
            block = self._strategy.record_block(self.partition_id, self.node_id, self.fence,
                                                done_through=done, size=size, items=self.items)
        except StaleFenceError as exc:
            raise LeaseLost(f"{self.namespace} partition {self.partition_id}: {exc}") from None
        self._progress_sent = time.monotonic()
        # a leader may have split the range's tail off (leader/rebalance.py)
        self.max_id = block.end
        if block.stop and may_stop:
            raise PartitionStopped(f"{self.namespace} partition {self.partition_id}: the job was "
                                   "paused or cancelled with stop-running")
        return block

    def progress(self, items: int) -> None:
        """Report items done so far: stored with the partition (at most once a
        second; ``elk partitions`` shows it) and, when results are kept, shown
        in Flower."""
        self.items = int(items)
        self.check()
        if time.monotonic() - self._progress_sent >= PROGRESS_EVERY:
            self._record(None, 0, may_stop=False)  # a stop waits for the next block
        if not self.task.request.called_directly and self.task.request.id:
            try:
                self.task.update_state(state="PROGRESS", meta={
                    "partition": self.partition_id, "items": self.items,
                    "range": [self.min_id, self.max_id]})
            except Exception:  # noqa: BLE001 - no result backend: progress stays local
                pass


def throttle_wait(job: Job) -> float:
    """How long a throttled claim waits before it tries again: about one
    token's time at the current rate (jittered so the pool's processes
    don't retry in step), at most a second; the settings are read again
    meanwhile, so `elk set max_partitions_per_second=0` frees them."""
    job.refresh_settings()
    rate = job.settings.max_partitions_per_second
    return min(1.0, 1.0 / rate if rate > 0 else 0.05) * random.uniform(0.5, 1.0)


def _validate_items(result: Any, lo: int, hi: int) -> int:
    if result is None:
        whole = hi - lo + 1
        if whole > MAX_ITEMS:
            raise ProcessorError(
                f"processor returned None for a range of {whole} IDs, more than the "
                f"{MAX_ITEMS} items a partition may report: return the number of items processed")
        return whole
    if isinstance(result, bool) or not isinstance(result, int) or not 0 <= result <= MAX_ITEMS:
        raise ProcessorError(
            f"processor returned {result!r}: expected the number of items processed "
            f"(an int from 0 to {MAX_ITEMS}, or None to count the whole range)")
    return result


def run_partition(task: Task, job: Job, partition_id: int, min_id: int, max_id: int,
                  dispatched_at: int | None = None) -> str:
    job.refresh_settings()  # runtime overrides (`elk set`): read once per heartbeat interval
    store, hooks, s = job.store, job.elk.hooks, job.settings
    node = node_id()
    ns, name = job.namespace, task.name
    # this process's last completion must have landed before the window is checked
    completion.settle_all()
    # names this claim, so a retry after a lost reply finds it; not the task
    # id alone: a message redelivered while its first delivery still runs
    # (visibility timeout) must find the partition held, even on this node
    token = f"{task.request.id or 'direct'}/{os.urandom(6).hex()}"
    t0 = time.perf_counter()
    claimed_at = time.monotonic()  # the lease's deadline counts from the claim's sending
    try:
        while True:
            with timed(hooks, "claim"):
                c = store.strategy.worker_claim(partition_id, node, window=task_window(s),
                                                require_live_node=is_registered(), token=token)
            if c.code != "throttled":
                break
            # the cluster-wide rate limit (max_partitions_per_second): wait for
            # a token, holding the message, and claim again
            time.sleep(throttle_wait(job))
            claimed_at = time.monotonic()
            s = job.settings
    except CorruptPartition as exc:
        # its stored value is not an elk partition: out of the way, once
        if store.strategy.quarantine(partition_id, min_id, max_id):
            log.error("elk: %s: quarantined partition %s: %s", ns, partition_id, exc)
        hooks.on_claim(ns, node, name, "corrupt", duration=time.perf_counter() - t0, queued=None)
        return "skipped: corrupt"
    queued = (time.time() * 1000 - dispatched_at) / 1000 if dispatched_at else None
    hooks.on_claim(ns, node, name, c.code, duration=time.perf_counter() - t0, queued=queued)
    if not c.ok:
        if c.code == "breaker":
            hooks.on_breaker_refused(ns, node)
        # a short string: Celery reprs every result for its log line
        return f"skipped: {c.code}"

    lo, hi = c.min_id if c.min_id is not None else min_id, c.max_id if c.max_id is not None else max_id
    keeper.adopt_hooks(hooks)  # the bootstep gave them already, in a worker
    options = {**job.spec.options, **c.options}
    started = time.perf_counter()
    outcome, items, error = "completed", 0, None
    held = None
    ctx: PartitionContext | None = None
    try:
        held = keeper.hold(store, partition_id, c.fence, node, claimed_at=claimed_at,
                           heartbeats=is_registered())
        try:
            if job.spec.bind:
                ctx = PartitionContext(task, job, partition_id, c.fence, c.attempts, lo, hi, held,
                                       range_min=min_id)
                result = job.spec.fn(ctx, lo, hi, options)
            else:
                result = job.spec.fn(lo, hi, options)
        finally:
            held.stop_interrupts()
        if ctx is not None:
            hi = ctx.max_id  # the range's end now: its tail may have been split off
        items = _validate_items(result, lo, hi)
    except LeaseLost:
        outcome = "lost"
    except PartitionStopped:
        outcome = "stopped"
    except Exception as exc:  # noqa: BLE001 - the processor's failure is the partition's
        outcome = "lost" if held is not None and held.lost else "failed"
        error = exc
    finally:
        if held is not None:
            keeper.drop(held)
    duration = time.perf_counter() - started

    if outcome == "completed":
        # elk's own write: a Redis hiccup here is not the processor's failure
        def report(result: str) -> None:
            hooks.on_partition_done(ns, node, name, outcome=result, items=items,
                                    duration=duration, min_id=lo, max_id=hi)
        req = task.request
        done = completion.record(store, hooks, partition_id, node, c.fence, items, report,
                                 defer=not (req.called_directly or req.is_eager))
        if done is None:
            # recorded by Redis now; its reply is read later (worker/completion.py)
            return f"done: {items} items, fence {c.fence}"
        outcome = done
    elif outcome in ("lost", "stopped"):
        # hand it back now if still ours (a node whose heartbeat only lapsed
        # still owns it; a paused job's is sent again after resume) rather
        # than leave it to a lease expiry
        try:
            store.strategy.release_partition(partition_id, node, c.fence)
        except Exception:  # noqa: BLE001 - the leader recovers it anyway
            pass
    elif error is not None:
        retryable = not isinstance(error, ProcessorError)
        text = f"{type(error).__name__}: {error}\n" + "".join(
            traceback.format_exception(type(error), error, error.__traceback__, limit=-8))
        try:
            with timed(hooks, "fail"):
                outcome, delay = store.strategy.fail_partition(
                    partition_id, node, c.fence, text, retryable=retryable)
        except StaleFenceError:
            outcome = "stale"
        else:
            hooks.on_partition_done(ns, node, name, outcome=outcome, items=0, duration=duration,
                                    min_id=lo, max_id=hi)
            raise PartitionFailed(
                f"{ns}[{lo}..{hi}] failed ({'retry in %.1fs' % delay if outcome == 'retry' else 'no retries left'}): "
                f"{type(error).__name__}: {error}") from error
    hooks.on_partition_done(ns, node, name, outcome=outcome, items=items, duration=duration,
                            min_id=lo, max_id=hi)
    return f"{outcome}: {items} items, fence {c.fence}"


@signals.worker_process_shutdown.connect(weak=False)
def _settle_on_exit(**_: Any) -> None:
    completion.settle_all()


def make_partition_task(elk: ElkHost, spec: JobSpec) -> Task:
    """Register the Celery task that runs ``spec``'s partitions on ``elk.app``."""
    opts: dict[str, Any] = {
        "name": spec.name, "bind": True,
        # bound to this app only: its closure holds this app's Elk
        "shared": False,
        # at-least-once delivery; Redis decides who actually runs a partition
        "acks_late": True, "reject_on_worker_lost": True,
        "ignore_result": True, "serializer": "json",
        **spec.task_options,
    }

    def partition_task(self: Task, partition_id: int, min_id: int, max_id: int,
                       dispatched_at: int | None = None) -> str:
        return run_partition(self, elk.job(spec.namespace), partition_id, min_id, max_id,
                             dispatched_at)

    partition_task.__name__ = spec.fn.__name__
    partition_task.__doc__ = spec.fn.__doc__
    partition_task.__module__ = spec.fn.__module__
    task: Task = elk.app.task(**opts)(partition_task)
    return task
