"""``Elk(app)`` and ``@partitioned_task``: how a Celery app gets elk_celery."""

from __future__ import annotations

import functools
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Generic, ParamSpec, TypeVar, cast, overload

from celery import Celery, Task, signals
from celery import _state as celery_state

from .errors import ConfigError
from .hooks import HookChain, Hooks
from .planners import PartitionPlanner
from .settings import ElkSettings, _reject_unknown, reject_app_only
from .store.connection import redis_from_url
from . import runtime
from .store.namespace import Control, NamespaceStore
from .strategies import strategy_for

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

    from .job_settings import ElkOptions, JobSettings

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger("elk_celery")

LEADER_TICK = "elk_celery.leader_tick"
BEAT_ENTRY = "elk-leader-tick"


@dataclass
class JobSpec:
    """What ``@partitioned_task`` recorded, before it is bound to an app."""

    fn: Callable[..., Any]
    namespace: str
    planner: Any
    name: str
    bind: bool
    options: dict[str, Any]
    overrides: dict[str, Any]
    task_options: dict[str, Any]
    bound_to: list[Any] = field(default_factory=list)


@dataclass
class Job:
    """A partitioned job bound to an app: its settings, planner and store."""

    spec: JobSpec
    elk: Elk
    _settings: ElkSettings | None = field(default=None, repr=False)
    _store: NamespaceStore | None = field(default=None, repr=False)
    #: what this process's leader rounds measured (leader/flow.py FlowMeter)
    leader_state: Any = field(default=None, repr=False)
    _base: ElkSettings | None = field(default=None, repr=False)
    #: the runtime overrides last read from Redis, and when (monotonic)
    _runtime: dict[str, str] = field(default_factory=dict, repr=False)
    _runtime_read: float = field(default=float("-inf"), repr=False)

    @property
    def namespace(self) -> str:
        return self.spec.namespace

    @property
    def planner(self) -> Any:
        return self.spec.planner

    @property
    def task_name(self) -> str:
        return self.spec.name

    @property
    def base_settings(self) -> ElkSettings:
        """The app's settings with the job's own (``@partitioned_task``)."""
        if self._base is None:
            self._base = self.elk.settings.replace(**self.spec.overrides)
        return self._base

    @property
    def settings(self) -> ElkSettings:
        """:attr:`base_settings` with the runtime overrides last read
        (:meth:`refresh_settings`)."""
        if self._settings is None:
            self._settings = runtime.effective(self.base_settings, self._runtime)
        return self._settings

    def refresh_settings(self, *, force: bool = False) -> bool:
        """Read the runtime overrides from Redis (at most once per heartbeat
        interval unless ``force``) and apply them; True when they changed.
        Redis away: the settings stay as they were."""
        now = time.monotonic()
        if not force and now - self._runtime_read < self.base_settings.heartbeat_interval:
            return False
        self._runtime_read = now
        try:
            raw = self.store.runtime_settings()
        except Exception as exc:  # noqa: BLE001 - the next refresh tries again
            log.debug("elk: %s: runtime settings not read: %r", self.namespace, exc)
            return False
        if raw == self._runtime:
            return False
        self._runtime = raw
        self._settings = runtime.effective(self.base_settings, raw)
        self.store.strategy.use_settings(self._settings)
        return True

    def set(self, **values: Any) -> dict[str, str]:
        """Store runtime overrides (``job.set(task_window=8)``; None drops
        one), checked as at start: :class:`ConfigError` says why a value is
        refused. Workers and the leader apply them within one heartbeat.
        Returns the overrides stored now."""
        unset = [k for k, v in values.items() if v is None]
        given = {k: v for k, v in values.items() if v is not None}
        stored = runtime.validated(self.base_settings, self.store.runtime_settings(), given, unset)
        self.store.set_runtime_settings(stored, unset)
        self.refresh_settings(force=True)
        return dict(self._runtime)

    # -- control: pause, resume, cancel (store/lua/control.lua) ---------------
    def pause(self, *, stop_running: bool = False) -> Control:
        """Stop planning, sending and claiming; running partitions finish, or
        with ``stop_running`` stop at their next block and are handed back."""
        return self.store.set_control("pause", stop_running=stop_running)

    def resume(self) -> Control:
        """Go on after :meth:`pause` (refused for a cancelled job)."""
        return self.store.set_control("resume")

    def cancel(self, *, stop_running: bool = False) -> Control:
        """Like :meth:`pause`, for good: the state stays until ``elk reset``."""
        return self.store.set_control("cancel", stop_running=stop_running)

    def control(self) -> Control:
        return self.store.control()

    @property
    def store(self) -> NamespaceStore:
        if self._store is None:
            self._store = NamespaceStore(strategy_for(self.elk.redis, self.namespace, self.settings))
        return self._store

    @property
    def task(self) -> Task[Any, Any]:
        return self.elk.app.tasks[self.task_name]


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
        _reject_unknown(settings)
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
        from .leader.tick import register_leader_tick
        from .worker.bootstep import install_worker_side
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
        from .worker.runner import make_partition_task
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
    _reject_unknown(settings)
    reject_app_only(settings)
    if planner is None or not (hasattr(planner, "partition_size") and hasattr(planner, "next_max_id")):
        raise ConfigError(f"planner {planner!r} must have partition_size() and next_max_id(start_id, range_size)")

    def decorate(f: Callable[P, R]) -> PartitionedTask[P, R]:
        from .keys import check_namespace
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
