"""The example's own tests, written as a user of elk_celery writes them.

elk_celery's pytest plugin (loaded by pytest by itself once elk_celery is
installed) gives the fixtures: a private Redis, an app with Elk configured
for fast ticks, an in-process worker, ``elk_run_job``. Run them with::

    pytest example_project/tests
    pytest -p celery.contrib.pytest example_project/tests   # Celery's fixtures too

The app module reads its database URL when it is imported, so it is set
here first: a SQLite file of this test session.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_DB = Path(tempfile.mkdtemp(prefix="elk-example-tests-")) / "records.db"
os.environ.setdefault("EXAMPLE_DB_URL", f"sqlite:///{_DB}")


@pytest.fixture
def records_table():
    """A fresh ``records`` table of 2,500 rows."""
    from example_project import seed
    from example_project.app import engine

    seed.create_table(engine, 2_500)
    return 2_500
