"""The example's database: the ``records`` table and an engine that lets
several worker processes write to one SQLite file (or use PostgreSQL).

No Celery here, so seeding and checks can import it without the app.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

records = sa.Table(
    "records", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("payload", sa.Text, nullable=False),
    # how many times the row was processed: 1 everywhere once the job is done
    sa.Column("processed", sa.Integer, nullable=False, server_default="0"),
    # what the processor computed from the payload
    sa.Column("result", sa.Integer, nullable=True),
    # the elk node (worker start) whose write holds
    sa.Column("processed_by", sa.Text, nullable=True),
    # the fence token of the partition claim that wrote the row (64 bits:
    # fences start from Redis server time in milliseconds)
    sa.Column("fence", sa.BigInteger, nullable=False, server_default="0"),
)


def normalize_db_url(url: str) -> sa.engine.URL:
    """``postgresql://`` with whichever driver is installed (psycopg 3
    preferred; SQLAlchemy's default for the bare scheme differs by version)."""
    u = sa.engine.make_url(url)
    if u.drivername == "postgresql":
        if importlib.util.find_spec("psycopg"):
            u = u.set(drivername="postgresql+psycopg")
        elif importlib.util.find_spec("psycopg2"):
            u = u.set(drivername="postgresql+psycopg2")
    return u


def make_engine(url: str) -> sa.engine.Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and
    ``BEGIN IMMEDIATE`` so several worker processes can write to one file."""
    u = normalize_db_url(url)
    if u.get_backend_name() != "sqlite":
        return sa.create_engine(u, pool_pre_ping=True)
    engine = sa.create_engine(u, connect_args={"timeout": 60})

    @sa.event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Any) -> None:
        # take the write lock at the start: a deferred transaction that
        # upgrades from read to write can fail at once with "database is locked"
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
