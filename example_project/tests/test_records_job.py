"""Run the example's job end to end with elk_celery's pytest fixtures."""

from __future__ import annotations

import sqlalchemy as sa

from example_project.app import NAMESPACE, engine, process_records, records


def test_every_record_is_processed_once(elk_run_job, records_table):
    # elk_app (behind elk_run_job) is a fresh app on a private Redis that got
    # process_records like a shared_task; elk_run_job drives the leader and
    # starts an in-process worker for the run
    stats = elk_run_job(process_records)
    assert stats.completed_count == stats.total_count == 3  # 1,000 IDs per partition
    assert stats.failed_count == 0
    assert stats.items_processed == records_table
    with engine.connect() as conn:
        counts = conn.execute(sa.select(records.c.processed, sa.func.count())
                              .group_by(records.c.processed)).all()
    assert dict(counts) == {1: records_table}


def test_rows_added_later_are_planned_by_the_next_run(elk_app, elk_run_job, records_table):
    from example_project import seed

    elk_run_job(NAMESPACE)
    seed.append_rows(engine, 1_200)
    stats = elk_run_job(NAMESPACE)  # the planner tails the table
    assert stats.items_processed == records_table + 1_200
    with engine.connect() as conn:
        done = conn.execute(sa.select(sa.func.count()).where(records.c.processed == 1)).scalar()
    assert done == records_table + 1_200
