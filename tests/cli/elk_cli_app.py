"""A tiny Celery app with one partitioned job, for the CLI subprocess tests:
``celery -A tests.cli.elk_cli_app elk status --json``.

Only ever imported in a child process: ``@partitioned_task`` registers its
job with every Elk app of the process, so importing this module inside the
pytest process would leak the job into other tests' apps.

Environment: ``ELK_REDIS_URL`` (the test Redis), ``ELK_CLI_TEST_NAMESPACE``
(the job's namespace), ``ELK_CLI_TEST_MAX_ID`` (the planner's last ID).
"""

from __future__ import annotations

import os

from celery import Celery

from elk_celery.app import Elk, partitioned_task
from elk_celery.planners import RangePlanner

REDIS_URL = os.environ.get("ELK_REDIS_URL") or "redis://127.0.0.1:6379/0"
NAMESPACE = os.environ.get("ELK_CLI_TEST_NAMESPACE", "elk-cli-test")
MAX_ID = int(os.environ.get("ELK_CLI_TEST_MAX_ID", "1000"))

app = Celery("elk_cli_test", broker=REDIS_URL)
app.conf.elk_redis_url = REDIS_URL
Elk(app)


@partitioned_task(namespace=NAMESPACE, planner=RangePlanner(max_id=MAX_ID, size=100))
def process(min_id: int, max_id: int, options: dict) -> int:
    return max_id - min_id + 1
