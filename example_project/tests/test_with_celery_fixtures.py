"""elk_celery's fixtures next to Celery's own (``celery.contrib.pytest``).

Run with ``pytest -p no:celery -p celery.contrib.pytest example_project/tests``
(pytest-celery, loaded as ``celery``, has fixtures of the same names that
start Docker containers). Without that plugin these tests skip.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from example_project.app import NAMESPACE, engine, records


@pytest.fixture(autouse=True)
def _needs_celery_contrib_pytest(request):
    if not request.config.pluginmanager.has_plugin("celery.contrib.pytest"):
        pytest.skip("run with -p no:celery -p celery.contrib.pytest for Celery's fixtures")


@pytest.fixture(scope="session")
def celery_config():
    # Celery's in-memory broker; the elk state lives in elk_redis_url's Redis
    return {"broker_url": "memory://", "result_backend": "cache+memory://",
            "worker_hijack_root_logger": False}


def test_celery_worker_fixture_after_elk(records_table, elk_celery_app, celery_worker):
    # the table first: a worker's leader plans as soon as the worker starts, and
    # rows written into a range it has already processed are not processed again;
    # elk_celery_app before celery_worker: the job is registered before it starts
    from elk_celery import get_elk
    from elk_celery.testing import run_job

    job = get_elk(elk_celery_app).job(NAMESPACE)
    assert job.task_name in celery_worker.app.tasks
    stats = run_job(job)  # uses the running celery_worker, drives the leader
    assert stats.completed_count == stats.total_count and stats.failed_count == 0
    with engine.connect() as conn:
        done = conn.execute(sa.select(sa.func.count()).where(records.c.processed == 1)).scalar()
    assert done == records_table
