"""Where the CLI's stores come from: the Celery app (and its ``Elk``), or
plain Redis state when there is no app.

Precedence of the Redis URL: ``--redis-url``; the app's ``Elk`` settings
(what its workers use); ``app.conf.elk_redis_url``; the app's broker URL when
it is Redis; ``$ELK_REDIS_URL``; ``redis://127.0.0.1:6379/0``.

Namespaces: ``--namespace`` (repeatable); else the app's partitioned jobs;
else ``app.conf.elk_namespaces``; else the namespaces listed in the registry
set ``<prefix>:namespaces`` (workers and newly elected leaders add theirs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import redis

from ..errors import ConfigError
from ..settings import ElkSettings
from ..store.codec import text
from ..store.connection import DEFAULT_URL, redis_from_url
from ..store.namespace import NamespaceStore
from ..strategies import strategy_for

#: Seconds to wait for Redis before saying it cannot be reached.
CONNECT_TIMEOUT = 5.0
#: Upper bound on namespaces listed from the registry.
MAX_DISCOVERED = 200


def redact(url: str) -> str:
    """The URL without its password (``redis://user:***@host:6379/0``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def _is_redis(url: Any) -> bool:
    return isinstance(url, str) and url.startswith(("redis://", "rediss://", "unix://"))


@dataclass
class Target:
    """One namespace the command works on."""

    namespace: str
    store: NamespaceStore
    planner: Any = None
    task_name: str | None = None
    settings: ElkSettings | None = None
    #: the app's job of this namespace, when the app has it
    job: Any = None


@dataclass
class CLIState:
    """What the ``elk`` group resolved; shared by its sub-commands."""

    app: Any = None
    redis_url_option: str | None = None
    no_color: bool = False
    _elk: Any = None
    _elk_checked: bool = False
    _settings: ElkSettings | None = None
    _client: redis.Redis | None = None
    _url: str | None = None
    notes: list[str] = field(default_factory=list)

    # -- the app's Elk, if it has one -------------------------------------------
    @property
    def elk(self) -> Any:
        if not self._elk_checked:
            self._elk_checked = True
            if self.app is not None:
                import_task_modules(self.app)
                try:
                    from ..app import get_elk
                    self._elk = get_elk(self.app)
                except Exception:  # noqa: BLE001 - no Elk(app), or an older build
                    self._elk = None
        return self._elk

    @property
    def settings(self) -> ElkSettings:
        if self._settings is None:
            if self.elk is not None:
                self._settings = self.elk.settings
            elif self.app is not None:
                self._settings = ElkSettings.from_celery_conf(self.app.conf)
            else:
                self._settings = ElkSettings()
        return self._settings

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = self._resolve_url()
        return self._url

    def _resolve_url(self) -> str:
        if self.redis_url_option:
            return self.redis_url_option
        if self.elk is not None:
            try:
                url = self.elk.settings.redis_url
                if url:
                    return str(url)
            except ConfigError:
                pass
        conf = getattr(self.app, "conf", None)
        if conf is not None:
            url = conf.get("elk_redis_url")
            if url:
                return str(url)
            broker = conf.get("broker_url")
            if _is_redis(broker):
                return str(broker)
        return os.environ.get("ELK_REDIS_URL") or DEFAULT_URL

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            try:
                self._client = redis_from_url(self.url, socket_connect_timeout=CONNECT_TIMEOUT,
                                              socket_timeout=30)
            except (ConfigError, ValueError) as exc:
                raise click.ClickException(f"bad Redis URL {redact(self.url)}: {exc}") from None
        return self._client

    # -- namespaces -------------------------------------------------------------
    def jobs(self) -> dict[str, Any]:
        elk = self.elk
        return dict(getattr(elk, "jobs", {}) or {}) if elk is not None else {}

    def namespaces(self, given: tuple[str, ...] | list[str] = ()) -> list[str]:
        if given:
            return list(dict.fromkeys(given))
        jobs = self.jobs()
        if jobs:
            return sorted(jobs)
        conf = getattr(self.app, "conf", None)
        listed = conf.get("elk_namespaces") if conf is not None else None
        if listed:
            return [listed] if isinstance(listed, str) else list(listed)
        found = self.discover()
        if found:
            self.notes.append("namespaces from the registry in Redis; pass --namespace to choose")
            return found
        raise click.ClickException(
            f"no namespace to show: pass --namespace NAME, or load an app with partitioned "
            f"jobs (-A proj); nothing elk-like was found in Redis at {redact(self.url)}")

    def discover(self) -> list[str]:
        """Namespaces listed in the prefix's registry (workers and leaders add
        theirs; no scan of Redis)."""
        from ..keys import registry_key
        members = self.client.smembers(registry_key(self.settings.key_prefix))
        return sorted(text(m) for m in members)[:MAX_DISCOVERED]

    def targets(self, given: tuple[str, ...] | list[str] = ()) -> list[Target]:
        out = []
        jobs = self.jobs()
        for ns in self.namespaces(given):
            job = jobs.get(ns)
            try:
                settings = job.settings if job is not None else self.settings
                store = NamespaceStore(strategy_for(self.client, ns, settings))
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
            out.append(Target(ns, store, getattr(job, "planner", None),
                              getattr(job, "task_name", None), settings, job))
        return out


def import_task_modules(app: Any) -> None:
    """Import the app's task modules, as a worker does at start, so jobs in
    them register with its Elk: ``include``/``imports`` and what
    ``app.autodiscover_tasks()`` finds (Django apps' ``tasks.py``; Celery's
    Django fix-up runs ``django.setup()`` first)."""
    loader = getattr(app, "loader", None)
    if loader is None or not hasattr(loader, "import_default_modules"):
        return
    try:
        loader.import_default_modules()
    except Exception as exc:  # noqa: BLE001 - the worker would fail the same way
        raise click.ClickException(
            f"cannot import the task modules of the Celery app {getattr(app, 'main', app)!r}: "
            f"{type(exc).__name__}: {exc}") from None


def load_app(name: str) -> Any:
    """A Celery app from ``-A`` (as ``celery -A`` finds it)."""
    from celery.app.utils import find_app
    try:
        return find_app(name)
    except Exception as exc:  # noqa: BLE001
        raise click.ClickException(f"cannot load the Celery app {name!r}: {exc!r}") from None


def state_of(ctx: click.Context) -> CLIState:
    obj = ctx.find_object(CLIState)
    if obj is None:  # pragma: no cover - the group always sets it
        raise click.ClickException("internal error: the elk group did not run")
    return obj
