"""The example app: mark every row of a ``records`` table as processed, in
parallel over any number of Celery workers, with elk_celery.

Run it (after ``python -m example_project.seed``)::

    celery -A example_project.app worker -c 2 -n w1@%h
    celery -A example_project.app worker -c 2 -n w2@%h
    celery -A example_project.app beat

Configuration comes from the environment:

``ELK_REDIS_URL``            broker and elk state (default ``redis://127.0.0.1:6379/0``)
``EXAMPLE_DB_URL``           SQLAlchemy URL of the database (default: the SQLite
                             file ``example_project/records.db``); e.g.
                             ``postgresql://postgres@127.0.0.1:5432/test``
``EXAMPLE_NAMESPACE``        elk namespace of the job (default ``records``)
``EXAMPLE_PARTITION_SIZE``   IDs per partition (default 1000)
``EXAMPLE_BATCH_SIZE``       IDs per UPDATE statement inside a partition (default 250)
``EXAMPLE_TASK_WINDOW``      partitions one worker runs in parallel (default 2)
``EXAMPLE_QUEUE``            Celery queue of the leader tick and the partitions
                             (default ``celery``)
``EXAMPLE_BEAT_SCHEDULE``    file of ``celery beat``'s schedule (default: Celery's)
``ELK_METRICS_PORT``         serve Prometheus ``/metrics`` from every worker on this port
                             (``ELK_METRICS_ADDRESS``, default ``127.0.0.1``)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from celery import Celery, signals

from elk_celery import Elk, SQLPlanner, partitioned_task

from .db import make_engine, metadata, records  # noqa: F401 - re-exported

HERE = Path(__file__).resolve().parent

REDIS_URL = os.environ.get("ELK_REDIS_URL") or "redis://127.0.0.1:6379/0"
DB_URL = os.environ.get("EXAMPLE_DB_URL") or f"sqlite:///{HERE / 'records.db'}"
NAMESPACE = os.environ.get("EXAMPLE_NAMESPACE") or "records"
PARTITION_SIZE = int(os.environ.get("EXAMPLE_PARTITION_SIZE") or 1000)
BATCH_SIZE = int(os.environ.get("EXAMPLE_BATCH_SIZE") or 250)
TASK_WINDOW = int(os.environ.get("EXAMPLE_TASK_WINDOW") or 2)

# --------------------------------------------------------------------- database

# No connection is opened at import: each worker process opens its own.
engine = make_engine(DB_URL)


@signals.worker_process_init.connect
def _fresh_pool_after_fork(**_: Any) -> None:
    engine.dispose(close=False)


# ------------------------------------------------------------------------ Celery

app = Celery("example_project", broker=REDIS_URL)
app.conf.update(
    task_default_queue=os.environ.get("EXAMPLE_QUEUE") or "celery",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    # a short leader tick and short leases: the job reacts within seconds
    elk_heartbeat_interval=1,
    elk_leader_election_interval=1,
    elk_leader_lock_expiry=3,
    elk_partition_lock_expiry=10,
    elk_defer_delay=0.5,
    elk_retry_backoff=0.5,
    # plan and send far enough ahead that workers never wait for the leader;
    # a partition still unclaimed this long after its message was sent is
    # sent again, so keep it above the time the backlog takes to drain
    elk_max_pending_partitions=500,
    elk_dispatch_batch=500,
    elk_allocation_interval=60,
)
if os.environ.get("EXAMPLE_BEAT_SCHEDULE"):
    app.conf.beat_schedule_filename = os.environ["EXAMPLE_BEAT_SCHEDULE"]
if os.environ.get("ELK_METRICS_PORT"):  # /metrics in every worker (docker-compose.yml sets it)
    app.conf.elk_metrics_port = int(os.environ["ELK_METRICS_PORT"])
    app.conf.elk_metrics_address = os.environ.get("ELK_METRICS_ADDRESS", "127.0.0.1")
Elk(app)

planner = SQLPlanner(engine, "records", "id", size=PARTITION_SIZE)

_UPDATE = sa.text(
    "UPDATE records SET processed = processed + 1, result = length(payload),"
    " processed_by = :node, fence = :fence"
    " WHERE id BETWEEN :lo AND :hi AND fence < :fence")


@partitioned_task(namespace=NAMESPACE, planner=planner, bind=True, task_window=TASK_WINDOW,
                  name="example_project.process_records")
def process_records(partition: Any, min_id: int, max_id: int, options: dict) -> int:
    """Process IDs ``min_id..max_id``: one transaction, ``BATCH_SIZE`` IDs per
    statement. Each row records the fence token of this claim, and a row that
    a later claim of the same partition already wrote (a higher fence) is left
    alone: a stale owner can't overwrite its successor's work."""
    done = 0
    with engine.begin() as conn:
        for lo in range(min_id, max_id + 1, BATCH_SIZE):
            partition.check()  # lease lost: stop and roll back
            hi = min(lo + BATCH_SIZE - 1, max_id)
            done += conn.execute(_UPDATE, {"lo": lo, "hi": hi, "fence": partition.fence,
                                           "node": partition.node_id}).rowcount
        partition.check()  # don't commit after the lease was lost
    return done
