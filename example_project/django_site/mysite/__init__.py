# Django loads the Celery app with the project, so @shared_task and
# @partitioned_task in the apps' tasks.py bind to it.
from .celery import app as celery_app

__all__ = ("celery_app",)
