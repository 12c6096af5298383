"""The example Django site (example_project/django_site) with a real
``celery worker`` and the real ``celery -A mysite elk`` CLI: CELERY_ELK_*
settings, a job in an autodiscovered ``tasks.py``, Django's ORM."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cleanup_namespace, unique_namespace

pytest.importorskip("django", reason="Django is in the test extra: pip install -e '.[test]'")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "example_project" / "django_site"
ITEMS = 1_000


@pytest.fixture
def site(tmp_path, redis_url, redis_client):
    ns = unique_namespace("django")
    env = {**os.environ, "ELK_REDIS_URL": redis_url, "DJANGO_DB_PATH": str(tmp_path / "db.sqlite3"),
           "DJANGO_ELK_NAMESPACE": ns, "DJANGO_ELK_QUEUE": ns, "PYTHONPATH": str(SITE)}
    env.pop("DJANGO_SETTINGS_MODULE", None)

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *args], cwd=SITE, env=env, capture_output=True,
                              text=True, timeout=timeout)

    r = run("manage.py", "migrate", "-v", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    r = run("manage.py", "shell", "-c",
            "from inventory.models import Item; "
            f"Item.objects.bulk_create(Item(name=f'item {{i}}') for i in range({ITEMS}))")
    assert r.returncode == 0, r.stdout + r.stderr
    yield ns, env, run, tmp_path
    cleanup_namespace(redis_client, ns)
    redis_client.delete(ns, f"{ns}.leader")


def elk(run, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run("-m", "celery", "-A", "mysite", "elk", *args, timeout=timeout)


def test_the_cli_finds_a_job_of_an_autodiscovered_tasks_module(site):
    ns, _, run, _ = site
    r = elk(run, "status", "--json", "--sample", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    (s,) = json.loads(r.stdout)["namespaces"]  # the app's job, not the registry's list
    assert s["namespace"] == ns and s["task"] == "inventory.tasks.mark_items"
    # --fill needs the job's planner: the CLI has it (nothing planned yet: no gaps)
    r = elk(run, "gaps", "--fill", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["namespaces"][0]["filled"] == []


def test_a_real_worker_processes_every_item_and_the_cli_follows(site):
    ns, env, run, tmp = site
    log = open(tmp / "worker.log", "wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "mysite", "worker", "-B", "-s", str(tmp / "beat"),
         "-c", "2", "-n", "dj1@%h", "-Q", ns, "-l", "INFO", "--without-gossip", "--without-mingle"],
        cwd=SITE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # the real `elk watch`, plain lines (no terminal), until the job is done
        r = elk(run, "watch", "--interval", "0.5", "--every", "2", "--timeout", "120", timeout=180)
        logs = (tmp / "worker.log").read_text(errors="replace")
        assert r.returncode == 0, r.stdout + r.stderr + logs[-3000:]
        assert f"{ns}: 10/10 completed, 0 failed, 0 remaining" in r.stdout
        r = elk(run, "status", "--json", "--sample", "0")
        (s,) = json.loads(r.stdout)["namespaces"]
        assert s["counts"]["completed"] == 10 and s["items_processed"] == ITEMS
        assert [n["hostname"].startswith("dj1@") for n in s["nodes"]] == [True]
        assert s["nodes"][0]["info"]["pool"] == "prefork"
        with sqlite3.connect(tmp / "db.sqlite3") as db:
            counts = dict(db.execute(
                "SELECT processed, count(*) FROM inventory_item GROUP BY processed"))
        assert counts == {1: ITEMS}
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)
        log.close()
    assert worker.returncode == 0, (tmp / "worker.log").read_text(errors="replace")[-3000:]
