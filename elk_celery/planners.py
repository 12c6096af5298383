"""Planners tell the leader where the data ends (the original's PartitionPlaner).

A planner is any object with

* ``partition_size() -> int``: IDs per partition;
* ``next_max_id(start_id, range_size) -> int``: the largest ID to cover next,
  inclusive, at most ``start_id + range_size - 1``; a value below
  ``start_id`` means "no data there yet" (the leader asks again next tick);

and optionally

* ``estimated_end() -> int | None``: the last ID it expects to plan, as far
  as it knows now (None: unknown). ``elk status`` counts the IDs not yet
  planned into its ETA with it; :class:`RangePlanner` and
  :class:`SQLPlanner` have it.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

from .errors import PlannerError
from .models import MAX_EXACT


@runtime_checkable
class PartitionPlanner(Protocol):
    def partition_size(self) -> int: ...

    def next_max_id(self, start_id: int, range_size: int) -> int: ...


class RangePlanner:
    """IDs ``start..max_id`` in partitions of ``size``.

    ``max_id`` may be a callable returning the current maximum, for data
    that grows (the job keeps tailing it): ``RangePlanner(max_id=lambda:
    db.max_id(), size=1000)``.
    """

    def __init__(self, max_id: int | Callable[[], int], size: int = 1000) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise PlannerError(f"RangePlanner size must be an integer >= 1, got {size!r}")
        if not callable(max_id) and (isinstance(max_id, bool) or not isinstance(max_id, int)):
            raise PlannerError(f"RangePlanner max_id must be an int or a callable, got {max_id!r}")
        self.size = size
        self._max_id = max_id

    def current_max_id(self) -> int:
        return int(self._max_id() if callable(self._max_id) else self._max_id)

    def partition_size(self) -> int:
        return self.size

    def next_max_id(self, start_id: int, range_size: int) -> int:
        return min(start_id + range_size - 1, self.current_max_id())

    def estimated_end(self) -> int | None:
        """The current maximum (for the ETA)."""
        return self.current_max_id()

    def __repr__(self) -> str:
        return f"RangePlanner(max_id={self._max_id!r}, size={self.size})"


class SQLPlanner:
    """Plans over an integer key column of an SQL table (needs SQLAlchemy:
    ``pip install elk-celery[sql]``).

    ``next_max_id`` returns the largest key in ``[start_id, start_id +
    range_size - 1]``, so empty stretches of the key space are skipped and
    rows inserted later are picked up by later ticks.
    """

    def __init__(self, url_or_engine: Any, table: str, column: str = "id",
                 size: int = 1000) -> None:
        try:
            import sqlalchemy as sa
        except ImportError:  # pragma: no cover - depends on the extra
            raise PlannerError("SQLPlanner needs SQLAlchemy: pip install 'elk-celery[sql]'") from None
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise PlannerError(f"SQLPlanner size must be an integer >= 1, got {size!r}")
        self.size = size
        self._sa = sa
        self._engine_arg = url_or_engine
        self._engine: Any = None
        tbl = sa.table(table, sa.column(column))
        col = tbl.c[column]
        self._max_in = sa.select(sa.func.max(col)).where(col >= sa.bindparam("lo"),
                                                          col <= sa.bindparam("hi"))
        self._next = sa.select(sa.func.min(col)).where(col >= sa.bindparam("lo"))
        self._max = sa.select(sa.func.max(col))

    @property
    def engine(self) -> Any:
        # created lazily so a planner built at import time survives a fork
        if self._engine is None:
            arg = self._engine_arg
            self._engine = self._sa.create_engine(arg) if isinstance(arg, str) else arg
        return self._engine

    def partition_size(self) -> int:
        return self.size

    def next_max_id(self, start_id: int, range_size: int) -> int:
        hi = start_id + range_size - 1
        with self.engine.connect() as conn:
            # rows beyond the window: plan it whole (its empty stretches make
            # cheap partitions), so a hole in the keys never stalls the job
            if conn.execute(self._next, {"lo": hi + 1}).scalar() is not None:
                return hi
            found = conn.execute(self._max_in, {"lo": start_id, "hi": hi}).scalar()
        return int(found) if found is not None else start_id - 1

    def estimated_end(self) -> int | None:
        """The table's largest key now (None: empty), for the ETA: one
        ``SELECT max(column)``, an index lookup on a key column."""
        with self.engine.connect() as conn:
            found = conn.execute(self._max).scalar()
        return int(found) if found is not None else None


#: Largest ID a job may plan: create.lua's overlap check compares Redis
#: sorted-set scores, which are doubles, exact only up to here.
MAX_PLANNED_ID = MAX_EXACT


def checked_size(planner: Any) -> int:
    """``planner.partition_size()``, or PlannerError saying what was wrong."""
    try:
        size = planner.partition_size()
    except Exception as exc:  # noqa: BLE001 - a user planner may raise anything
        raise PlannerError(f"{planner!r}.partition_size() raised {exc!r}") from exc
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_PLANNED_ID:
        raise PlannerError(f"{planner!r}.partition_size() returned {size!r}: expected an int "
                           f"from 1 to 2^53-1 ({MAX_PLANNED_ID})")
    return size


def checked_next_max(planner: Any, start_id: int, range_size: int) -> int:
    """``planner.next_max_id(...)``, validated against the planner contract."""
    try:
        nxt = planner.next_max_id(start_id, range_size)
    except Exception as exc:  # noqa: BLE001
        raise PlannerError(f"{planner!r}.next_max_id({start_id}, {range_size}) raised {exc!r}") from exc
    if isinstance(nxt, bool) or not isinstance(nxt, int):
        raise PlannerError(f"{planner!r}.next_max_id({start_id}, {range_size}) returned {nxt!r}: "
                           "expected an int (the largest ID to cover next)")
    if nxt > start_id + range_size - 1:
        raise PlannerError(f"{planner!r}.next_max_id({start_id}, {range_size}) returned {nxt}, "
                           f"beyond start_id + range_size - 1 = {start_id + range_size - 1}")
    if nxt > MAX_PLANNED_ID:
        raise PlannerError(f"{planner!r}.next_max_id({start_id}, {range_size}) returned {nxt}: "
                           f"jobs plan IDs up to 2^53-1 ({MAX_PLANNED_ID}); map larger keys "
                           "(e.g. Snowflake IDs) to a dense sequence or offset them")
    return nxt


def estimated_end(planner: Any) -> int | None:
    """``planner.estimated_end()`` when it has one and it answers an int,
    else None (the ETA then counts the planned IDs only)."""
    method = getattr(planner, "estimated_end", None)
    if method is None:
        return None
    try:
        end = method()
    except Exception:  # noqa: BLE001 - an estimate only: planning reports real errors
        return None
    return end if isinstance(end, int) and not isinstance(end, bool) else None
