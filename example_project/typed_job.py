"""A user's job module as ``mypy --strict`` sees it (tests/typing checks it).

``@partitioned_task`` keeps the function's own type, so a call of the job
is checked like a call of the function, and the settings keywords are
typed (``elk_celery.JobSettings``): a misspelt or mistyped setting is a
mypy error, not only a ``ConfigError`` at import. Celery's own types come
from the ``celery-types`` stubs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import Celery

from elk_celery import Elk, PartitionContext, PartitionedTask, RangePlanner, partitioned_task

app = Celery("typed_job", broker="redis://127.0.0.1:6379/0")
Elk(app, partition_lock_expiry=timedelta(minutes=10), metrics_port=None)


@partitioned_task(namespace="typed-orders", planner=RangePlanner(max_id=10_000, size=500),
                  task_window=4, allow_preemption=True, max_retries=5, queue="orders")
def process_orders(min_id: int, max_id: int, options: dict[str, Any]) -> int:
    return max_id - min_id + 1


@partitioned_task(namespace="typed-reindex", planner=RangePlanner(max_id=1_000, size=100),
                  bind=True, retry_backoff=0.5, strategy="simple")
def reindex(partition: PartitionContext, min_id: int, max_id: int,
            options: dict[str, Any]) -> int:
    done = 0
    for start in range(min_id, max_id + 1, 50):
        partition.check()
        done += min(start + 49, max_id) - start + 1
        partition.progress(done)
    return done


def total_of_a_direct_call() -> int:
    job: PartitionedTask[[int, int, dict[str, Any]], int] = process_orders
    return job(1, 500, {}) + process_orders(501, 1000, {"dry_run": True})


def task_name() -> str:
    return process_orders.name
