"""A Celery app without ``Elk(app)``: the CLI falls back to the app's
``elk_redis_url`` and ``elk_namespaces`` (safe to import in-process)."""

from __future__ import annotations

import os

from celery import Celery

REDIS_URL = os.environ.get("ELK_REDIS_URL") or "redis://127.0.0.1:6379/0"

app = Celery("elk_cli_plain", broker="memory://")
app.conf.elk_redis_url = REDIS_URL
app.conf.elk_namespaces = [n for n in os.environ.get("ELK_CLI_TEST_NAMESPACES", "").split(",") if n]
