"""The Celery app of the site: Celery's usual Django setup, plus ``Elk(app)``.

``celery -A mysite worker``, ``celery -A mysite beat`` and
``celery -A mysite elk status`` all load it. The ``CELERY_``-prefixed Django
settings configure Celery and elk alike (``CELERY_ELK_TASK_WINDOW`` is
``elk_task_window``); the jobs live in the apps' ``tasks.py`` modules, found
by ``autodiscover_tasks()``.
"""

import os

from celery import Celery

from elk_celery import Elk

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

app = Celery("mysite")
app.config_from_object("django.conf:settings", namespace="CELERY")
Elk(app)
app.autodiscover_tasks()
