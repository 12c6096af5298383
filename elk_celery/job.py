"""A partitioned job: what ``@partitioned_task`` recorded (:class:`JobSpec`)
and that spec bound to one app (:class:`Job`).

Below ``app.py``: the leader and the worker get their jobs from here and
never import the app module; :class:`ElkHost` is what they may use of the
``Elk`` a job is bound to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from .settings import ElkSettings
from .store.namespace import NamespaceStore
from .strategies import strategy_for

if TYPE_CHECKING:
    from celery import Celery, Task

    from .hooks import HookChain

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
    def settings(self) -> ElkSettings:
        if self._settings is None:
            self._settings = self.elk.settings.replace(**self.spec.overrides)
        return self._settings

    @property
    def store(self) -> NamespaceStore:
        if self._store is None:
            self._store = NamespaceStore(strategy_for(self.elk.redis, self.namespace, self.settings))
        return self._store

    @property
    def task(self) -> Task[Any, Any]:
        return self.elk.app.tasks[self.task_name]
