"""A partitioned job: what ``@partitioned_task`` recorded (:class:`JobSpec`)
and that spec bound to one app (:class:`Job`).

Below ``app.py``: the leader and the worker get their jobs from here and
never import the app module; :class:`ElkHost` is what they may use of the
``Elk`` a job is bound to.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from . import runtime
from .settings import ElkSettings
from .store.namespace import Control, NamespaceStore
from .strategies import strategy_for

if TYPE_CHECKING:
    from celery import Celery, Task

    from .hooks import HookChain

log = logging.getLogger("elk_celery")

#: The leader tick's Celery task name.
LEADER_TICK = "elk_celery.leader_tick"


class ElkHost(Protocol):
    """What the leader and the worker use of an ``Elk`` (app.py)."""

    app: Celery
    hooks: HookChain
    jobs: dict[str, Job]

    @property
    def settings(self) -> ElkSettings: ...

    @property
    def redis(self) -> Any: ...

    def job(self, namespace: str) -> Job: ...

    def validate(self) -> None: ...


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
    elk: ElkHost
    _settings: ElkSettings | None = field(default=None, repr=False)
    _store: NamespaceStore | None = field(default=None, repr=False)
    #: what this process's leader rounds measured (leader/flow.py FlowMeter)
    leader_state: Any = field(default=None, repr=False)
    #: serializes the leader's calls into the planner (its round and upkeep threads)
    planner_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
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
