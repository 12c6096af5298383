"""Settings of the example Django site. Environment (for the tests):

``ELK_REDIS_URL``            broker and elk state (default ``redis://127.0.0.1:6379/0``)
``DJANGO_DB_PATH``           the SQLite file (default ``db.sqlite3`` here)
``DJANGO_ELK_NAMESPACE``     the job's namespace (default ``inventory-items``)
``DJANGO_ELK_QUEUE``         the Celery queue (default ``celery``)
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "example-only: not a secret"  # noqa: S105 - an example, never deployed
DEBUG = False
ALLOWED_HOSTS: list[str] = []
INSTALLED_APPS = ["inventory"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB_PATH") or BASE_DIR / "db.sqlite3",
        # several worker processes write one file: wait for each other's locks
        "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL;"},
    }
}

REDIS_URL = os.environ.get("ELK_REDIS_URL") or "redis://127.0.0.1:6379/0"
QUEUE = os.environ.get("DJANGO_ELK_QUEUE") or "celery"
ELK_NAMESPACE = os.environ.get("DJANGO_ELK_NAMESPACE") or "inventory-items"

# -- Celery (app.config_from_object("django.conf:settings", namespace="CELERY"))
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = QUEUE
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# -- elk_celery: every elk_<name> setting is CELERY_ELK_<NAME> here
CELERY_ELK_REDIS_URL = REDIS_URL
CELERY_ELK_LEADER_QUEUE = f"{QUEUE}.leader"
CELERY_ELK_HEARTBEAT_INTERVAL = 1
CELERY_ELK_LEADER_ELECTION_INTERVAL = 1
CELERY_ELK_LEADER_LOCK_EXPIRY = 5
CELERY_ELK_PARTITION_LOCK_EXPIRY = 10
CELERY_ELK_DEFER_DELAY = 0.2
CELERY_ELK_TASK_WINDOW = 2
