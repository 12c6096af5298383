"""Create and fill the example's ``records`` table.

    python -m example_project.seed                 # 200,000 rows, table recreated
    python -m example_project.seed --rows 1000000
    python -m example_project.seed --append 5000   # add rows after the last ID
    EXAMPLE_DB_URL=postgresql://postgres@127.0.0.1:5432/test python -m example_project.seed

Recreating the table also resets the job's namespace in Redis when
``--reset-job`` is given (so the job starts again on the fresh rows: see
README).
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Iterator

import sqlalchemy as sa

CHUNK = 50_000


def _rows(first: int, last: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for i in range(first, last + 1):
        chunk.append({"id": i, "payload": f"record {i} " + "x" * (i % 37)})
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def create_table(engine: sa.engine.Engine, rows: int, *, reset: bool = True) -> int:
    """(Re)create ``records`` with IDs 1..rows, in one transaction. Returns rows."""
    from .db import metadata, records

    if reset:
        metadata.drop_all(engine, tables=[records])
    metadata.create_all(engine, tables=[records])
    with engine.begin() as conn:
        for chunk in _rows(1, rows):
            conn.execute(records.insert(), chunk)
    return rows


def append_rows(engine: sa.engine.Engine, count: int) -> tuple[int, int]:
    """Add ``count`` rows after the current largest ID: the running job picks
    them up on its next leader tick. Returns the new (first, last) IDs."""
    from .db import records

    with engine.begin() as conn:
        top = conn.execute(sa.select(sa.func.max(records.c.id))).scalar() or 0
        for chunk in _rows(top + 1, top + count):
            conn.execute(records.insert(), chunk)
    return top + 1, top + count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000, help="rows to create (default 200000)")
    p.add_argument("--append", type=int, metavar="N", help="add N rows after the last ID instead")
    p.add_argument("--reset-job", action="store_true",
                   help="also delete the job's state in Redis (its namespace)")
    args = p.parse_args(argv)

    from .app import DB_URL, NAMESPACE, app, engine
    t0 = time.perf_counter()
    if args.append:
        first, last = append_rows(engine, args.append)
        print(f"added IDs {first}..{last} to records ({DB_URL}) in {time.perf_counter() - t0:.1f}s")
        return 0
    create_table(engine, args.rows)
    print(f"created records with {args.rows} rows ({DB_URL}) in {time.perf_counter() - t0:.1f}s")
    if args.reset_job:
        from elk_celery import get_elk
        n = get_elk(app).store(NAMESPACE).reset()
        print(f"reset elk namespace {NAMESPACE!r} ({n} keys deleted)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
