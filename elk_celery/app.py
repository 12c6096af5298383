"""``Elk(app)`` and ``@partitioned_task``: how a Celery app gets elk_celery."""

from __future__ import annotations

import functools
import logging
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable, Generic, ParamSpec, TypeVar, cast, overload

from celery import Celery, Task, signals
from celery import _state as celery_state

from .errors import ConfigError
from .hooks import HookChain, Hooks
from .keys import check_namespace
from .planners import PartitionPlanner
from .settings import ElkSettings, reject_unknown, reject_app_only
from .job import LEADER_TICK, Job, JobSpec
from .leader.tick import register_leader_tick
from .store.connection import redis_from_url
from .store.namespace import NamespaceStore
from .strategies import strategy_for
from .worker.bootstep import install_worker_side
from .worker.runner import make_partition_task

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

    from .job_settings import ElkOptions, JobSettings

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger("elk_celery")

BEAT_ENTRY = "elk-leader-tick"

# defined in job.py (below the leader and the worker); importable from here too
__all__ = ["Elk", "PartitionedTask", "get_elk", "partitioned_task", "Job", "JobSpec",
           "LEADER_TICK", "BEAT_ENTRY"]


_SPECS: list[JobSpec] = []
_SPECS_LOCK = threading.Lock()


class Elk:
    """elk_celery on one Celery app.

    ``Elk(app, **settings)`` registers the worker bootstep, the leader tick
    (in ``beat_schedule``), and the partition tasks of every
    ``@partitioned_task``; keyword settings win over ``app.conf.elk_*``.
    """

    def __init__(self, app: Celery, *, hooks: list[Hooks] | None = None,
                 **settings: Unpack[ElkOptions]) -> None:
        reject_unknown(settings)
        if getattr(app, "_elk", None) is not None:
            raise ConfigError(f"Elk(app) was already called for app {app.main!r}: call it once")
        self.app = app
        self._overrides = settings
        self._settings: ElkSettings | None = None
        self._redis: Any = None
        self.hooks = HookChain(hooks)
        self.jobs: dict[str, Job] = {}
        app._elk = self  # type: ignore[attr-defined]
        self._apply_celery_defaults()
        register_leader_tick(self)
        install_worker_side(self)
        with _SPECS_LOCK:
            for spec in _SPECS:
                self._register(spec)
        if app.configured:  # type: ignore[attr-defined]  # not in celery-types' stubs
            self._add_beat_entry()
        else:
            app.on_after_configure.connect(self._on_configured, weak=False)
        signals.beat_init.connect(self._on_beat_init, weak=False)

    # -- settings and connections -------------------------------------------
    @property
    def settings(self) -> ElkSettings:
        """Resolved on first use, so ``app.conf`` can be filled after ``Elk(app)``."""
        if self._settings is None:
            s = ElkSettings.from_celery_conf(self.app.conf, **self._overrides)
            if s.redis_url is None:
                broker = self.app.conf.broker_url or ""
                if not str(broker).startswith(("redis://", "rediss://", "unix://")):
                    raise ConfigError(
                        f"elk_redis_url is not set and the broker ({str(broker).split('@')[-1] or 'unset'}) "
                        "is not Redis: set app.conf.elk_redis_url = 'redis://host:6379/1'")
                s = s.replace(redis_url=str(broker))
            self._settings = s
        return self._settings

    @property
    def redis(self) -> Any:
        if self._redis is None:
            self._redis = redis_from_url(self.settings.redis_url)
        return self._redis

    def store(self, namespace: str) -> NamespaceStore:
        """The store of a job's namespace (or of any namespace, with app settings)."""
        job = self.jobs.get(namespace)
        if job is not None:
            return job.store
        return NamespaceStore(strategy_for(self.redis, namespace, self.settings))

    def job(self, namespace: str) -> Job:
        try:
            return self.jobs[namespace]
        except KeyError:
            known = ", ".join(sorted(self.jobs)) or "none"
            raise ConfigError(f"no partitioned job with namespace {namespace!r} (known: {known})") from None

    def validate(self) -> None:
        """Resolve every job's settings now, so bad ones fail at start."""
        self.settings  # noqa: B018 - raises ConfigError
        for job in self.jobs.values():
            job.settings  # noqa: B018 - raises ConfigError

    # -- registration ---------------------------------------------------------
    def _register(self, spec: JobSpec) -> None:
        if spec.namespace in self.jobs:
            if self.jobs[spec.namespace].spec is spec:
                return
            if self.jobs[spec.namespace].task_name == spec.name:
                # the same task defined again (its module was re-imported)
                self.jobs[spec.namespace].spec = spec
                return
            raise ConfigError(
                f"two partitioned tasks use namespace {spec.namespace!r} "
                f"({self.jobs[spec.namespace].task_name}, {spec.name}): give each its own")
        self.jobs[spec.namespace] = Job(spec, self)
        spec.bound_to.append(self)
        make_partition_task(self, spec)

    def _apply_celery_defaults(self) -> None:
        # defaults, not overrides: whatever the user configures still wins
        self.app.add_defaults({  # type: ignore[arg-type]  # a dict works (stubs say callable)
            # a worker must not hoard partition messages it cannot start
            "worker_prefetch_multiplier": 1,
            "task_serializer": "json", "result_serializer": "json",
            "accept_content": ["json"], "event_serializer": "json",
        })

    def _on_configured(self, **_: Any) -> None:
        try:
            self._add_beat_entry()
        except ConfigError as exc:
            # not said here: beat_init and the worker bootstep refuse to start
            # with this very message, and saying it here too printed it twice
            log.debug("elk: no beat entry yet: %s", exc)

    def _on_beat_init(self, sender: Any = None, **_: Any) -> None:
        if getattr(getattr(sender, "app", None), "_elk", self) is not self:
            return
        try:
            self.validate()
            self._add_beat_entry()
        except ConfigError as exc:
            log.critical("elk: invalid settings, beat not started: %s", exc)
            raise SystemExit(1) from exc  # not an Exception: Celery's signal send lets it through

    def _add_beat_entry(self) -> None:
        schedule = dict(self.app.conf.beat_schedule or {})
        if BEAT_ENTRY not in schedule:
            interval = self.settings.leader_election_interval
            schedule[BEAT_ENTRY] = {
                "task": LEADER_TICK, "schedule": interval,
                # a tick that waited longer than an interval is stale: drop it
                "options": {"expires": max(interval, 1.0), "ignore_result": True,
                            "queue": self.settings.leader_queue},
            }
            self.app.conf.beat_schedule = schedule


def get_elk(app: Celery | None = None) -> Elk:
    """The Elk of ``app`` (default: the current app), or a clear error."""
    app = app or celery_state.get_current_app()
    elk = getattr(app, "_elk", None)
    if elk is None:
        raise ConfigError(f"app {app.main!r} has no elk_celery: call Elk(app) in its module")
    return cast(Elk, elk)


class PartitionedTask(Generic[P, R]):
    """What ``@partitioned_task`` returns: the processor, with its own type.

    Calling it calls the function itself, in this process (a unit test of the
    processor needs no Redis and no Celery). Every other attribute is the
    Celery task that runs one partition on the current app (``name``,
    ``apply_async``, ...; like ``shared_task``, the last app that registered
    the job when the current one has none); :attr:`task` is that task.
    """

    fn: Callable[P, R]

    def __init__(self, spec: JobSpec, fn: Callable[P, R]) -> None:
        self._spec = spec
        self.fn = fn
        functools.update_wrapper(self, fn)

    @property
    def namespace(self) -> str:
        return self._spec.namespace

    @property
    def name(self) -> str:
        """The Celery task name (default ``module.function``)."""
        return self._spec.name

    @property
    def task(self) -> Task[Any, Any]:
        spec = self._spec
        app = celery_state.get_current_app()
        elk = getattr(app, "_elk", None)
        if elk is not None and spec.namespace in elk.jobs:
            return app.tasks[spec.name]
        if spec.bound_to:
            return cast("Task[Any, Any]", spec.bound_to[-1].app.tasks[spec.name])
        return get_elk().app.tasks[spec.name]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __getattr__(self, item: str) -> Any:
        if item.startswith("_"):  # copy/pickle probes, half-built instances
            raise AttributeError(item)
        return getattr(self.task, item)

    def __repr__(self) -> str:
        return f"<partitioned task {self._spec.name} (namespace {self._spec.namespace!r})>"


@overload
def partitioned_task(fn: Callable[P, R], *, planner: PartitionPlanner,
                     namespace: str | None = ..., name: str | None = ..., bind: bool = ...,
                     options: dict[str, Any] | None = ...,
                     task_options: dict[str, Any] | None = ...,
                     **settings: Unpack[JobSettings]) -> PartitionedTask[P, R]: ...


@overload
def partitioned_task(fn: None = ..., *, planner: PartitionPlanner,
                     namespace: str | None = ..., name: str | None = ..., bind: bool = ...,
                     options: dict[str, Any] | None = ...,
                     task_options: dict[str, Any] | None = ...,
                     **settings: Unpack[JobSettings]
                     ) -> Callable[[Callable[P, R]], PartitionedTask[P, R]]: ...


def partitioned_task(fn: Callable[P, R] | None = None, *, planner: PartitionPlanner,
                     namespace: str | None = None, name: str | None = None, bind: bool = False,
                     options: dict[str, Any] | None = None,
                     task_options: dict[str, Any] | None = None,
                     **settings: Unpack[JobSettings]
                     ) -> PartitionedTask[P, R] | Callable[[Callable[P, R]], PartitionedTask[P, R]]:
    """Turn ``fn(min_id, max_id, options) -> int`` into a partitioned job.

    With ``bind=True`` the function is ``fn(partition, min_id, max_id, options)``
    where ``partition`` is a :class:`~elk_celery.worker.runner.PartitionContext`
    (fence token, ``progress()``, ``check()``). Other keyword arguments are
    per-job settings (``task_window=4``, ``allow_preemption=True``, ...; typed
    by :class:`~elk_celery.job_settings.JobSettings`). Like ``shared_task``,
    it works before or after ``Elk(app)``. Returns a :class:`PartitionedTask`.
    """
    reject_unknown(settings)
    reject_app_only(settings)
    if planner is None or not (hasattr(planner, "partition_size") and hasattr(planner, "next_max_id")):
        raise ConfigError(f"planner {planner!r} must have partition_size() and next_max_id(start_id, range_size)")

    def decorate(f: Callable[P, R]) -> PartitionedTask[P, R]:
        spec = JobSpec(fn=f, namespace=check_namespace(namespace or f.__name__), planner=planner,
                       name=name or f"{f.__module__}.{f.__name__}", bind=bind,
                       options=dict(options or {}), overrides=dict(settings),
                       task_options=dict(task_options or {}))
        with _SPECS_LOCK:
            # refused before it is kept: a spec that can't be registered would
            # make every later Elk(app) fail too
            for other in _SPECS:
                if other.namespace == spec.namespace and other.name != spec.name:
                    raise ConfigError(
                        f"two partitioned tasks use namespace {spec.namespace!r} "
                        f"({other.name}, {spec.name}): give each its own")
            _SPECS.append(spec)
            for app in list(celery_state._get_active_apps()):  # type: ignore[attr-defined]
                elk = getattr(app, "_elk", None)
                if elk is not None:
                    elk._register(spec)
        return PartitionedTask(spec, f)

    return decorate(fn) if fn is not None else decorate
