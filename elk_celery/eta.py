"""An honest ETA: the work left (planned and not yet planned) over the
recent completion rate, with a range, or a word when no number is honest.

The leader records ``(Redis time, partitions finished)`` every full round
(:meth:`~elk_celery.store.namespace.NamespaceStore.record_progress`), with
the planner's ``estimated_end()``. The ETA is

    (partitions not finished + IDs not yet planned / IDs per partition)
    / partitions finished per second over the last WINDOW_S seconds

(from the first completion on, when the window starts before it), and
its range comes from the spread of the rates of up to CHUNKS stretches
of that window: the fastest stretch gives the low end, the slowest the high
end. It says ``estimating`` while fewer than MIN_DONE partitions finished
over less than MIN_SPAN_S seconds, and ``stalled`` when nothing finished for
five times the usual gap between completions (at least STALL_MIN_S).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from .store.namespace import NamespaceStore

#: Seconds of recent history the rate is measured over.
WINDOW_S = 300.0
#: Least history (seconds) and completions before a number is given.
MIN_SPAN_S = 20.0
MIN_DONE = 3
#: Stretches of the window whose rates make the range.
CHUNKS = 5
#: Least silence (seconds) that counts as stalled.
STALL_MIN_S = 60.0


@dataclass(frozen=True)
class Eta:
    """``state``: ``ok`` (a number), ``estimating``, ``stalled``, ``done``,
    ``paused``, ``cancelled`` or ``nothing planned``."""

    state: str
    seconds: float | None = None
    #: the range: remaining work at the fastest and at the slowest recent rate
    low_s: float | None = None
    high_s: float | None = None
    #: partitions finished per second over the window
    rate: float | None = None
    #: partitions left: not finished, plus the IDs not yet planned in partitions
    remaining: float = 0.0
    #: of which not planned yet (from the planner's estimated end)
    unplanned: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("seconds", "low_s", "high_s", "rate", "remaining", "unplanned"):
            if d[k] is not None:
                d[k] = round(d[k], 3)
        return d


def fmt_duration(v: float) -> str:
    v = int(round(v))
    d, rem = divmod(v, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    if d:
        return f"{d}d{h:02d}h{m:02d}m"
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def remaining_work(total: int, finished: int, start_id: int | None, cursor: int | None,
                   planner_end: int | None, partition_size: int | None = None) -> tuple[float, float]:
    """(partitions left, of which not planned yet): the IDs from the cursor
    to the planner's estimated end, in partitions of the size planned so far."""
    left = float(max(0, total - finished))
    unplanned = 0.0
    if planner_end is not None and cursor is not None and planner_end >= cursor:
        planned_ids = cursor - start_id if start_id is not None else 0
        size = planned_ids / total if total and planned_ids > 0 else float(partition_size or 0)
        if size > 0:
            unplanned = (planner_end - cursor + 1) / size
    return left + unplanned, unplanned


def _at(samples: Sequence[tuple[int, int]], t: float) -> float:
    """Finished count at time ``t``, read linearly between samples."""
    prev = samples[0]
    for cur in samples[1:]:
        if cur[0] >= t:
            if cur[0] == prev[0]:
                return float(cur[1])
            return prev[1] + (cur[1] - prev[1]) * (t - prev[0]) / (cur[0] - prev[0])
        prev = cur
    return float(samples[-1][1])


def estimate(samples: Sequence[tuple[int, int]], remaining: float, *, unplanned: float = 0.0,
             state: str = "") -> Eta:
    """The ETA from ``samples`` ((time ms, partitions finished), oldest
    first) and the ``remaining`` work (partitions). ``state``: the job's
    control state (``paused`` or ``cancelled`` say so instead of a number)."""
    if state in ("paused", "cancelled"):
        return Eta(state, remaining=remaining, unplanned=unplanned)
    if remaining <= 0:
        return Eta("done", seconds=0.0, low_s=0.0, high_s=0.0)
    pts = sorted(samples)
    if pts:
        newest = pts[-1][0]
        pts = [p for p in pts if p[0] >= newest - WINDOW_S * 1000]
    if len(pts) < 2:
        return Eta("estimating", remaining=remaining, unplanned=unplanned)
    (t0, f0), (t1, f1) = pts[0], pts[-1]
    span, done = (t1 - t0) / 1000, max(0, f1 - f0)
    # silence: nothing finished since the last sample that moved
    last_move = t0
    for (ta, fa), (tb, fb) in zip(pts, pts[1:]):
        if fb > fa:
            last_move = tb
    silent = (t1 - last_move) / 1000
    if done == 0:
        stalled = span >= STALL_MIN_S
    else:  # five of the usual gaps between completions
        stalled = silent >= max(STALL_MIN_S, 5 * (last_move - t0) / 1000 / done)
    if stalled:
        return Eta("stalled", rate=done / span if span else None, remaining=remaining,
                   unplanned=unplanned)
    if span < MIN_SPAN_S or done < MIN_DONE:
        return Eta("estimating", remaining=remaining, unplanned=unplanned)
    # a start that finished nothing yet (workers starting, the first
    # partitions running) says little about the pace: count from the first
    # completion seen, when the window begins before it
    first = next(i for i in range(1, len(pts)) if pts[i][1] > pts[i - 1][1])
    # (only while the window from there still holds completions to go by)
    if (first > 1 and (t1 - pts[first][0]) / 1000 >= MIN_SPAN_S / 2
            and f1 - pts[first][1] >= MIN_DONE):
        pts = pts[first:]
        (t0, f0) = pts[0]
        span, done = (t1 - t0) / 1000, max(0, f1 - f0)
    rate = done / span
    n = max(1, min(CHUNKS, int(span // 10)))  # stretches of 10 s at least
    rates = []
    for k in range(n):
        a, b = t0 + (t1 - t0) * k / n, t0 + (t1 - t0) * (k + 1) / n
        rates.append((_at(pts, b) - _at(pts, a)) / ((b - a) / 1000))
    fast, slow = max(rates), min(rates)
    return Eta("ok", seconds=remaining / rate, low_s=remaining / fast if fast > 0 else None,
               high_s=remaining / slow if slow > 0 else None, rate=rate,
               remaining=remaining, unplanned=unplanned)


def describe(e: dict[str, Any]) -> str:
    """What ``elk status`` and ``elk watch`` print for an :meth:`Eta.as_dict`."""
    state = str(e["state"])
    if state == "nothing_planned":
        return "nothing planned yet"
    if state != "ok" or e["seconds"] is None:
        left = e.get("remaining") or 0
        return state + (f" ({left:,.0f} partitions left)"
                        if state in ("stalled", "estimating", "paused") and left else "")
    rng = ""
    if e["low_s"] is not None:
        rng = f" (range {fmt_duration(e['low_s'])}-" + (
            f"{fmt_duration(e['high_s'])})" if e["high_s"] is not None else "?)")
    unplanned = f" ({e['unplanned']:,.0f} not planned yet)" if e["unplanned"] else ""
    return f"{fmt_duration(e['seconds'])}{rng}, {e['remaining']:,.0f} partitions left{unplanned}"


def eta_of(store: NamespaceStore, total: int, finished: int, now_ms: int, *,
           partition_size: int | None = None, meta: dict[str, str] | None = None,
           state: str | None = None, samples: list[tuple[int, int]] | None = None) -> Eta:
    """A job's ETA: the leader's timeline, then this reading of the counters
    (``total`` partitions, ``finished`` = completed + failed, at Redis time
    ``now_ms``). ``partition_size`` sizes the IDs not planned yet when the
    job has planned none (default: the ``partition_size`` setting). ``meta``,
    ``state`` and ``samples``: when the caller has read them already."""
    meta = store.meta() if meta is None else meta
    state = store.control().state if state is None else state

    def num(k: str) -> int | None:
        v = meta.get(k, "")
        return int(v) if v.lstrip("-").isdigit() else None
    size = store.settings.partition_size or partition_size
    left, unplanned = remaining_work(total, finished, num("start_id"), num("cursor"),
                                     num("planner_end"), size)
    if total == 0 and not unplanned:
        return Eta("nothing_planned")
    if samples is None:
        samples = store.progress_samples()
    samples = [*samples, (now_ms, finished)]
    return estimate(samples, left, unplanned=unplanned, state=state)
