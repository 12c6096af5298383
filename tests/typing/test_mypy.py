"""``mypy --strict`` on the package and on a user's job module (README: Typing)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def mypy(*args: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("mypy", reason="mypy is in the test extra: pip install -e '.[test]'")
    # from the checkout, so mypy reads elk_celery's sources (and pyproject's [tool.mypy])
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
                           "--hide-error-context", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_the_package_passes_mypy_strict():
    r = mypy("elk_celery")
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_users_job_module_passes_mypy_strict():
    r = mypy("example_project/typed_job.py")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_catches_bad_settings_and_bad_calls(tmp_path):
    bad = tmp_path / "bad_jobs.py"
    bad.write_text(textwrap.dedent('''\
        from typing import Any
        from elk_celery import Elk, RangePlanner, partitioned_task
        from celery import Celery

        P = RangePlanner(max_id=10)

        @partitioned_task(namespace="a", planner=P, task_widow=2)
        def misspelt(min_id: int, max_id: int, options: dict[str, Any]) -> int:
            return 0

        @partitioned_task(namespace="b", planner=P, task_window="4")
        def mistyped(min_id: int, max_id: int, options: dict[str, Any]) -> int:
            return 0

        @partitioned_task(namespace="c", planner=P, metrics_port=9100)
        def app_wide(min_id: int, max_id: int, options: dict[str, Any]) -> int:
            return 0

        @partitioned_task(namespace="d", planner=P)
        def good(min_id: int, max_id: int, options: dict[str, Any]) -> int:
            return 0

        reveal_type(good)
        good("1", 2, {})
        Elk(Celery("x"), heartbeat_intervall=1)
        '''))
    r = mypy(str(bad))
    out = r.stdout
    assert r.returncode == 1, out + r.stderr
    lines = {int(m.group(1)) for m in re.finditer(r"bad_jobs\.py:(\d+): error", out)}
    # the misspelt, mistyped and app-wide settings; the bad call; Elk's misspelt keyword
    assert {7, 11, 15, 24, 25} <= lines, out
    assert 'Unexpected keyword argument "task_widow"' in out
    assert ('Revealed type is "elk_celery.app.PartitionedTask[[min_id: int, max_id: int, '
            'options: dict[str, Any]], int]"') in out
    assert not {n for n in lines if 19 <= n <= 23}, out  # the good job is clean
