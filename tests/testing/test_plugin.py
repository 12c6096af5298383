"""elk_celery.testing: the pytest plugin users test their jobs with."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import elk_celery.testing as plugin
from elk_celery import RangePlanner, partitioned_task
from elk_celery.testing import run_job
from elk_celery.worker.bootstep import running_step
from tests import conftest
from tests.conftest import unique_namespace

ROOT = Path(__file__).resolve().parents[2]


def fixture_names(module) -> set[str]:
    from _pytest.fixtures import FixtureFunctionDefinition
    return {name for name, v in vars(module).items() if isinstance(v, FixtureFunctionDefinition)}


def test_pytest_loads_the_plugin_by_its_entry_point(pytestconfig):
    assert pytestconfig.pluginmanager.get_plugin("elk_celery") is plugin


def test_its_fixtures_cannot_shadow_the_suites(request):
    ours, suite = fixture_names(plugin), fixture_names(conftest)
    assert {"elk_redis_url", "elk_app", "elk_worker", "elk_run_job", "elk_celery_app"} <= ours
    assert all(name.startswith("elk_") for name in ours)
    assert not ours & suite
    # and the suite's own fixtures still come from its conftest
    (redis_url,) = request._fixturemanager.getfixturedefs("redis_url", request.node)
    assert redis_url.func.__module__ == "tests.conftest"
    # nothing loaded here (pytest-celery's plugin among them) defines ours too,
    # nor does celery.contrib.pytest
    import celery.contrib.pytest
    assert request.config.pluginmanager.has_plugin("celery")  # pytest-celery's
    for name in ours:
        defs = request._fixturemanager.getfixturedefs(name, request.node)
        assert [d.func.__module__ for d in defs] == ["elk_celery.testing"], name
    assert not ours & fixture_names(celery.contrib.pytest)


def test_run_job_defined_in_the_test(elk_app, elk_run_job, elk_redis_url):
    ns = unique_namespace("plugin")
    seen = []

    @partitioned_task(namespace=ns, planner=RangePlanner(max_id=1_000, size=100), task_window=2)
    def collect(min_id: int, max_id: int, options: dict) -> int:
        seen.append((min_id, max_id))
        return max_id - min_id + 1

    assert running_step(elk_app) is None  # no worker yet: elk_run_job starts one after the job
    stats = elk_run_job(collect)
    assert stats.completed_count == stats.total_count == 10 and stats.items_processed == 1_000
    assert sorted(seen) == [(lo, lo + 99) for lo in range(1, 1001, 100)]
    assert running_step(elk_app) is None  # the run's worker stopped with it
    assert elk_app.conf.broker_url == elk_redis_url != conftest.redis_url_from_env()
    # the decorated function is still the function
    assert collect(5, 9, {}) == 5 and collect.__name__ == "collect"


def test_a_run_heartbeats_and_leads_its_job_alone(elk_app, elk_run_job):
    from elk_celery import get_elk
    elk = get_elk(elk_app)
    ns, other = unique_namespace("plugin"), unique_namespace("plugin")
    during: list[set[str]] = []

    @partitioned_task(namespace=ns, planner=RangePlanner(max_id=200, size=100))
    def mine(min_id: int, max_id: int, options: dict) -> int:
        during.append(set(elk.jobs))
        return 1

    @partitioned_task(namespace=other, planner=RangePlanner(max_id=200, size=100))
    def theirs(min_id: int, max_id: int, options: dict) -> int:
        return 1

    assert {ns, other} <= set(elk.jobs)
    assert elk_run_job(mine).completed_count == 2
    assert during == [{ns}, {ns}]  # the run's worker saw this job only
    assert {ns, other} <= set(elk.jobs)  # and the app has both again
    assert elk.job(other).store.strategy.get_partition_stats().total_count == 0
    assert elk.redis.zcard(elk.job(other).store.keys.nodes) == 0  # not even a heartbeat


class TestAppWithChosenJobs:
    @pytest.fixture
    def chosen(self):
        ns = unique_namespace("plugin")

        @partitioned_task(namespace=ns, planner=RangePlanner(max_id=100, size=100))
        def chosen_job(min_id: int, max_id: int, options: dict) -> int:
            return 7
        return chosen_job

    @pytest.fixture
    def elk_jobs(self, chosen):  # overrides the plugin's: elk_app keeps this job only
        return [chosen]

    def test_elk_jobs_chooses_the_apps_jobs(self, chosen, elk_app, elk_worker, elk_run_job):
        from elk_celery import get_elk
        assert set(get_elk(elk_app).jobs) == {chosen.namespace}
        assert elk_run_job(chosen).items_processed == 7


@pytest.fixture
def failing_job():
    ns = unique_namespace("plugin")

    @partitioned_task(namespace=ns, planner=RangePlanner(max_id=300, size=100), max_retries=1)
    def flaky(min_id: int, max_id: int, options: dict) -> int:
        if min_id == 101:
            raise RuntimeError("boom")
        return max_id - min_id + 1
    return ns


def test_elk_worker_started_after_a_job_of_a_fixture(failing_job, elk_worker, elk_app, elk_run_job):
    assert running_step(elk_app) is not None  # elk_worker runs; elk_run_job uses it
    stats = elk_run_job(failing_job)
    assert (stats.completed_count, stats.failed_count, stats.total_count) == (2, 1, 3)
    assert stats.items_processed == 200


def test_run_job_times_out_with_the_stats(elk_app):
    ns = unique_namespace("plugin")

    @partitioned_task(namespace=ns, planner=RangePlanner(max_id=100, size=100))
    def slow(min_id: int, max_id: int, options: dict) -> int:
        time.sleep(1.5)
        return 0

    with pytest.raises(TimeoutError, match=rf"{ns}: not done after 0.5s: .*'total_count': 1"):
        run_job(ns, app=elk_app, timeout=0.5)


@pytest.mark.slow
@pytest.mark.parametrize("plugins", [[], ["-p", "no:celery", "-p", "celery.contrib.pytest"]],
                         ids=["alone", "with-celery.contrib.pytest"])
def test_the_example_projects_tests_pass(plugins, tmp_path):
    # a user's suite: only the entry point loads the plugin
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugins,
                        "example_project/tests"], cwd=ROOT, capture_output=True, text=True,
                       timeout=240, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                         "EXAMPLE_DB_URL": f"sqlite:///{tmp_path / 'r.db'}"})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert ("3 passed" if plugins else "2 passed, 1 skipped") in out, out
