"""Gap detection: ID ranges of the planned span that no partition covers.

The planned span of a job is ``[start_id, cursor - 1]`` (meta ``start_id``
and ``cursor``, kept by the leader's planning). Every ID in it should belong
to exactly one partition; a *gap* is a range that belongs to none (a
partition was deleted, a create was lost, someone edited Redis). Partitions
that ended ``failed`` for good cover their range but did not process it:
they are reported too.

Detection reads only the ``ids`` index (member ``"id:min:max"``, score =
min id), never the partitions themselves:

* **full** walks the index from the completed-prefix watermark up and
  rebuilds the checkpoint. The walk runs inside Redis (``gaps.lua``, a
  bounded number of entries per call, only the gaps come back); for IDs
  beyond 2^53 it runs here on chunked ``ZRANGEBYSCORE ... LIMIT`` reads. A
  new leader, or an operator, runs it.
* **incremental** reads only what can have changed since the last check:
  the gaps it remembered (each re-checked with one ``ZRANGEBYSCORE`` over its
  own range) and the partitions above the checkpoint. Its cost grows with
  the partitions created since the last check, not with the job.

The checkpoint lives in the meta hash:

``gap_checked``
    every ID up to it is covered, compacted, or inside a remembered gap;
``gaps``
    the remembered gaps, JSON ``[[lo, hi, flag], ...]`` (decimal strings;
    flag 1 = the planner said it holds no data, 0 = it does, -1 = unknown).
    Compaction (``compact.lua``) may carry the watermark over a flag-1 gap;
``gap_sig``
    partitions deleted so far (stats ``created - total``) and the start ID
    when the checkpoint was written. A deletion can open a gap below the
    checkpoint, so a changed signature makes the next incremental check a
    full one.

An incremental check asks the planner only about gaps it has not seen
before; a full check asks again about every gap (data that appeared later
in an old, empty range is found there).

:class:`GapDetector` also fills gaps (through the strategy's atomic,
overlap-checked create path, fenced by the leader epoch) and compacts the
completed prefix (:func:`compact_completed`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ElkError, PartitionConflict, PlannerError
from .models import Partition
from .planners import checked_next_max, checked_size
from .store.codec import int_or_none
from .store.namespace import NamespaceStore
from .compaction import CompactResult, compact_all, compact_completed  # noqa: F401 - re-exported

MODES = ("incremental", "full")

#: Index entries one gaps.lua call reads (bounds how long it blocks Redis:
#: about 5 ms on a 2-core machine).
SCAN_STEP = 2_000
#: Members read per round trip when scanning the ids index in Python.
SCAN_CHUNK = 10_000
#: gaps.lua works on Lua numbers (doubles): used only for IDs below this.
EXACT_IN_LUA = 2 ** 53 - 2
#: Gaps remembered in meta; beyond this the checkpoint stops before the
#: first gap not remembered, so the next check scans from there.
MAX_REMEMBERED = 1_000
#: Partitions created per create call when filling.
FILL_BATCH = 500
#: Failed partitions listed in a report (all are counted).
FAILED_LIMIT = 1_000

_FLAG = {True: 0, False: 1, None: -1}      # has_data -> stored flag
_HAS_DATA = {0: True, 1: False, -1: None}  # stored flag -> has_data


@dataclass(frozen=True)
class Gap:
    """IDs ``min_id..max_id`` (inclusive) of the planned span in no partition."""

    min_id: int
    max_id: int
    #: What the planner said: True = holds data (fill creates partitions),
    #: False = no data, None = not asked (no planner).
    has_data: bool | None = None

    @property
    def size(self) -> int:
        return self.max_id - self.min_id + 1

    def as_dict(self) -> dict[str, Any]:
        return {"min_id": self.min_id, "max_id": self.max_id, "size": self.size,
                "has_data": self.has_data}


@dataclass(frozen=True)
class FailedRange:
    """A partition that ended ``failed`` for good: its range was not processed."""

    partition_id: int
    min_id: int
    max_id: int
    attempts: int
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GapReport:
    namespace: str
    #: the mode asked for, and the one that ran (an incremental check falls
    #: back to a full one when it has no valid checkpoint)
    requested_mode: str
    mode: str
    #: the planned span: [start_id, end_id]; end_id < start_id = nothing planned
    start_id: int
    end_id: int
    #: every ID below it is completed (compacted); None = never compacted
    watermark: int | None
    #: the checkpoint written by this check
    checkpoint: int
    gaps: list[Gap] = field(default_factory=list)
    failed: list[FailedRange] = field(default_factory=list)
    failed_total: int = 0
    #: ids-index members read (the cost of the check)
    scanned: int = 0
    elapsed_ms: float = 0.0
    #: why an incremental check ran as a full one
    fallback_reason: str = ""
    #: the planner raised or broke its contract: gaps left unclassified
    planner_error: str = ""

    @property
    def with_data(self) -> list[Gap]:
        return [g for g in self.gaps if g.has_data is True]

    @property
    def empty(self) -> list[Gap]:
        return [g for g in self.gaps if g.has_data is False]

    @property
    def unknown(self) -> list[Gap]:
        return [g for g in self.gaps if g.has_data is None]

    @property
    def missing_ids(self) -> int:
        return sum(g.size for g in self.gaps)

    @property
    def ok(self) -> bool:
        """No gap and no partition failed for good."""
        return not self.gaps and not self.failed_total

    def as_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace, "requested_mode": self.requested_mode,
            "mode": self.mode, "start_id": self.start_id, "end_id": self.end_id,
            "watermark": self.watermark, "checkpoint": self.checkpoint,
            "gaps": [g.as_dict() for g in self.gaps],
            "gaps_with_data": len(self.with_data), "gaps_empty": len(self.empty),
            "missing_ids": self.missing_ids,
            "failed": [f.as_dict() for f in self.failed], "failed_total": self.failed_total,
            "scanned": self.scanned, "elapsed_ms": round(self.elapsed_ms, 3),
            "fallback_reason": self.fallback_reason, "planner_error": self.planner_error,
        }


def _meta_int(name: str, value: Any) -> int | None:
    """A number kept in the namespace's meta hash, or a clear error."""
    try:
        return int_or_none(value)
    except ValueError:
        raise PlannerError(f"meta {name!r} holds {value!r}, not an integer: someone edited "
                           "it; set it right or `elk reset` the namespace") from None


def _merge(gaps: list[Gap]) -> list[Gap]:
    """Sorted, with touching gaps joined (a remembered tail gap and the new
    gap that continues it are one gap, as a full scan sees it)."""
    out: list[Gap] = []
    for g in sorted(gaps, key=lambda g: g.min_id):
        if out and g.min_id <= out[-1].max_id + 1:
            prev = out[-1]
            known = prev.has_data is not None and g.has_data is not None
            out[-1] = Gap(prev.min_id, max(prev.max_id, g.max_id),
                          (prev.has_data or g.has_data) if known else None)
        else:
            out.append(g)
    return out


class GapDetector:
    """Finds, classifies and fills the gaps of one namespace.

    ``planner`` (any object with ``partition_size()`` and
    ``next_max_id(start_id, range_size)``) tells whether a gap holds data;
    without one, gaps are reported with ``has_data=None`` and cannot be
    filled.
    """

    def __init__(self, store: NamespaceStore, planner: Any = None) -> None:
        self.store = store
        self.planner = planner
        #: gaps that fill() skipped because something else covered part of
        #: them meanwhile (the create was refused as a whole, nothing written)
        self.conflicts: list[Gap] = []

    # -- detection --------------------------------------------------------------
    def detect(self, mode: str = "incremental") -> GapReport:
        """Find the gaps of the planned span and the partitions failed for good."""
        if mode not in MODES:
            raise ValueError(f"gap detection mode {mode!r}: use one of {', '.join(MODES)}")
        t0 = time.perf_counter()
        m = self.store.gap_meta()
        cursor, start, watermark, checked = m["cursor"], m["start_id"], m["watermark"], m["gap_checked"]
        sig_stored, remembered_raw, top = m["gap_sig"], m["gaps"], m["top"]

        start_id = _meta_int("start_id", start)
        if start_id is None:
            start_id = int(self.store.settings.start_id)
        watermark_i = _meta_int("watermark", watermark)
        cursor_i = _meta_int("cursor", cursor)
        if cursor_i is not None:
            end_id = cursor_i - 1
        elif top:  # no planning cursor (partitions made through the strategy API)
            end_id = top[2]
        else:
            end_id = start_id - 1
        sig = f"{m['created'] - m['total']}:{start_id}"
        # IDs below `low` are done: before the job's start, or compacted
        low = max(start_id, watermark_i) if watermark_i is not None else start_id

        report = GapReport(self.store.namespace, mode, mode, start_id, end_id, watermark_i,
                           checkpoint=low - 1, failed_total=m["failed_total"])
        remembered: list[tuple[int, int, int]] | None = None
        if mode == "incremental":
            reason = ""
            if checked is None:
                reason = "no checkpoint yet"
            elif sig_stored != sig:
                reason = "partitions were deleted (or the start ID changed) since the last check"
            else:
                try:
                    remembered = [(int(g[0]), int(g[1]), int(g[2]))
                                  for g in json.loads(remembered_raw or "[]")]
                except (ValueError, TypeError, IndexError):
                    reason = "the remembered gaps are unreadable"
            if reason:
                report.mode, report.fallback_reason = "full", reason

        if report.mode == "full":
            gaps, through, scanned = self._scan(low, end_id)
            found = [Gap(lo, hi) for lo, hi in gaps]
        else:
            assert remembered is not None and checked is not None
            found, through, scanned = self._incremental(low, end_id, int(checked), remembered)
        report.scanned = scanned

        # compaction may have moved the watermark while we scanned: whatever is
        # below it now is completed, not missing
        new_wm = self.store.watermark()
        if new_wm is not None and new_wm != watermark_i:
            report.watermark = new_wm
            found = [Gap(max(g.min_id, new_wm), g.max_id, g.has_data)
                     for g in found if g.max_id >= new_wm]
            through = max(through, new_wm - 1)

        report.gaps = self._classify(found, fresh=report.mode == "full", report=report)
        if end_id >= start_id or checked is not None:  # nothing planned: write nothing
            report.checkpoint = self._save(report.gaps, through, sig)
        report.failed = self._failed()
        report.elapsed_ms = (time.perf_counter() - t0) * 1000
        return report

    def _scan(self, expected: int, end: int) -> tuple[list[tuple[int, int]], int, int]:
        """Gaps of [expected, end] from the ids index.

        Returns (gaps, covered through, members read): every ID up to
        "covered through" is covered or in one of the gaps. The walk runs
        inside Redis (gaps.lua, at most SCAN_STEP entries per call) when the
        IDs fit Lua's numbers; otherwise here, in chunks of SCAN_CHUNK.
        """
        if end < expected:
            return [], max(end, expected - 1), 0
        if max(abs(expected), abs(end)) < EXACT_IN_LUA:
            return self._scan_in_redis(expected, end)
        return self._scan_here(expected, end)

    def _scan_in_redis(self, expected: int, end: int) -> tuple[list[tuple[int, int]], int, int]:
        gaps: list[tuple[int, int]] = []
        scanned, first = 0, True
        while True:
            expected, finished, read, found = self.store.scan_gaps(expected, end, SCAN_STEP, first)
            first = False
            scanned += read
            gaps += found
            if finished:
                return gaps, max(end, expected - 1), scanned

    def _scan_here(self, expected: int, end: int) -> tuple[list[tuple[int, int]], int, int]:
        gaps: list[tuple[int, int]] = []
        scanned = 0
        # a partition starting below `expected` may reach into the span
        below = self.store.member_below(expected)
        if below:
            expected = max(expected, below[2] + 1)
        lower: int | str = expected
        while expected <= end:
            chunk = self.store.members_between(lower, end, SCAN_CHUNK)
            scanned += len(chunk)
            last_lo = None
            for _, lo, hi in chunk:
                if lo > expected:
                    gaps.append((expected, lo - 1))
                if hi + 1 > expected:
                    expected = hi + 1
                last_lo = lo
            if len(chunk) < SCAN_CHUNK or last_lo is None:
                break
            lower = f"({last_lo}"
        if expected <= end:
            gaps.append((expected, end))
        return gaps, max(end, expected - 1), scanned

    def _incremental(self, low: int, end: int, checked: int,
                     remembered: list[tuple[int, int, int]]) -> tuple[list[Gap], int, int]:
        keep = [(max(lo, low), hi, flag) for lo, hi, flag in remembered if hi >= low]
        found: list[Gap] = []
        scanned = 0
        through = max(checked, low - 1)
        if keep:
            found_in = self.store.members_in([(lo, hi) for lo, hi, _ in keep])
            for (lo, hi, flag), members in zip(keep, found_in):
                scanned += len(members)
                if not members:  # unchanged: keep what the planner said
                    found.append(Gap(lo, hi, _HAS_DATA.get(flag)))
                    continue
                expected = lo
                for _, mlo, mhi in members:
                    if mlo > expected:
                        found.append(Gap(expected, mlo - 1))
                    expected = max(expected, mhi + 1)
                if expected <= hi:
                    found.append(Gap(expected, hi))
                through = max(through, expected - 1)
        gaps, through, n = self._scan(through + 1, end) if end > through else ([], through, 0)
        found += [Gap(lo, hi) for lo, hi in gaps]
        return _merge(found), through, scanned + n

    def _classify(self, gaps: list[Gap], fresh: bool, report: GapReport) -> list[Gap]:
        """Ask the planner whether each gap holds data (remembered answers are
        kept in an incremental check; a full check asks again). A planner
        error leaves the remaining gaps unclassified and is reported."""
        if self.planner is None:
            return gaps
        out = []
        for g in gaps:
            if (g.has_data is None or fresh) and not report.planner_error:
                try:
                    g = Gap(g.min_id, g.max_id, self.has_data(g.min_id, g.max_id))
                except PlannerError as exc:
                    report.planner_error = str(exc)
                    g = Gap(g.min_id, g.max_id, None)
            elif fresh:
                g = Gap(g.min_id, g.max_id, None)
            out.append(g)
        return out

    def has_data(self, lo: int, hi: int) -> bool:
        """Does the planner report data in [lo, hi]? Data exactly at ``lo`` counts."""
        if self.planner is None:
            raise ElkError("no planner: cannot tell whether a gap holds data")
        return checked_next_max(self.planner, lo, hi - lo + 1) >= lo

    def _save(self, gaps: list[Gap], through: int, sig: str) -> int:
        if len(gaps) > MAX_REMEMBERED:
            # remember the first ones; the rest is scanned again next time
            through = gaps[MAX_REMEMBERED].min_id - 1
            gaps = gaps[:MAX_REMEMBERED]
        self.store.set_meta(
            gap_checked=through, gap_sig=sig,
            gaps=json.dumps([[str(g.min_id), str(g.max_id), _FLAG[g.has_data]] for g in gaps],
                            separators=(",", ":")))
        return through

    def _failed(self) -> list[FailedRange]:
        parts = self.store.strategy.get_partitions(self.store.failed_ids(FAILED_LIMIT))
        return [FailedRange(p.partition_id, p.min_id, p.max_id, p.attempts, p.error)
                for p in sorted(parts, key=lambda p: p.min_id)]

    def forget(self) -> None:
        """Drop the checkpoint: the next incremental check runs as a full one."""
        self.store.forget_gap_checkpoint()

    # -- filling ------------------------------------------------------------------
    def plan_gap(self, gap: Gap) -> list[tuple[int, int]]:
        """The partition ranges that cover the data of ``gap``.

        Walks the gap in windows of the partition size (the job's
        ``partition_size`` setting, else the planner's); the planner's answer
        bounds each partition (never beyond the gap, whose neighbours are
        covered). Windows without data are left out.
        """
        if self.planner is None:
            raise ElkError("no planner: cannot fill gaps")
        size = self.store.settings.partition_size or checked_size(self.planner)
        out: list[tuple[int, int]] = []
        a = gap.min_id
        while a <= gap.max_id:
            n = min(size, gap.max_id - a + 1)
            m = checked_next_max(self.planner, a, n)
            if m < a:
                a += n
                continue
            out.append((a, m))
            a = m + 1
        return out

    def fill(self, report: GapReport, epoch: int | str = "") -> list[Partition]:
        """Create pending partitions for the gaps of ``report`` that hold data.

        Each batch goes through :meth:`NamespaceStore.create_ranges` (new
        ids, the create script), which refuses (as a whole) a range that
        overlaps a partition created meanwhile - such gaps land in
        :attr:`conflicts` - and, with ``epoch``, any write from a deposed
        leader (:class:`~elk_celery.errors.StaleLeaderError`).
        """
        if self.planner is None:
            raise ElkError("no planner: cannot fill gaps (give GapDetector a planner)")
        self.conflicts = []
        created: list[Partition] = []
        for gap in report.gaps:
            if gap.has_data is False:
                continue
            if gap.has_data is None and not self.has_data(gap.min_id, gap.max_id):
                continue
            ranges = self.plan_gap(gap)
            for i in range(0, len(ranges), FILL_BATCH):
                try:
                    created += self.store.create_ranges(ranges[i:i + FILL_BATCH], epoch)
                except PartitionConflict:
                    self.conflicts.append(gap)
                    break
        return created

    # -- compaction -----------------------------------------------------------------
    def compact(self, limit: int = 500, epoch: int | str = "") -> CompactResult:
        return compact_completed(self.store, limit, epoch)


__all__ = ["Gap", "GapReport", "FailedRange", "GapDetector", "CompactResult",
           "compact_completed", "compact_all", "MODES"]
