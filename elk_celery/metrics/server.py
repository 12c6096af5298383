"""The /metrics endpoint of a worker, and Celery's prefork pool.

Single process (``--pool=solo`` or ``threads``, or any pool without
``PROMETHEUS_MULTIPROC_DIR``): the families live in prometheus_client's
default registry and are served from it, plus the cluster collector and
``elk_build_info``.

Prefork (``--pool=prefork``, Celery's default): partitions run in pool child
processes, and each child's counters live in that child. prometheus_client's
multiprocess mode makes every process write its values to an mmap'ed file in
``PROMETHEUS_MULTIPROC_DIR``; the worker's main process serves the sum
(:class:`~prometheus_client.multiprocess.MultiProcessCollector`). Rules:

* **The variable must be in the environment before ``celery`` starts.**
  prometheus_client chooses, once, when ``prometheus_client.values`` is first
  imported, whether values are in-memory or file-backed; ``celery``'s CLI
  loads plugins (Flower's, for one) that import prometheus_client before the
  app module is read, so setting ``os.environ`` in your app module is too
  late. Start workers as ``PROMETHEUS_MULTIPROC_DIR=/var/run/elk-metrics
  celery -A proj worker``. :func:`setup_multiprocess` detects the too-late
  case and says so instead of silently serving only the main process.
* **One folder per worker, wiped at start** (in the main process, before
  the pool forks): files left by an earlier run would add old counts, and in
  containers the same pids come back. :func:`prepare_worker` wipes it.
* **Dead children are marked** (``mark_process_dead``) so their ``live*``
  gauges vanish: on ``worker_process_shutdown``, when a new child reuses a
  pid (``worker_process_init``), and at each scrape for children that were
  killed without running either.
* Run Flower *without* the variable: it has its own metrics, in memory.
"""

from __future__ import annotations

import glob
import logging
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from ..worker.node import is_prefork

from ..errors import ConfigError
from ..settings import ElkSettings
from .cluster import ClusterCollector, StoresArg
from .families import BuildInfoCollector, NodeInfoCollector

log = logging.getLogger("elk_celery.metrics")

ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Set once the folder was wiped; inherited by forked children, so they never wipe.
_wiped = False


def multiprocess_dir() -> str | None:
    """The multiprocess folder from the environment, or None (single process)."""
    return os.environ.get(ENV) or os.environ.get(ENV.lower()) or None


def multiprocess_active() -> bool:
    """True when prometheus_client writes values to files (it chose at import)."""
    return values.ValueClass is not values.MutexValue


def setup_multiprocess(*, wipe: bool = True) -> str | None:
    """Check the multiprocess folder and, the first time (``wipe``), empty it.

    Call it in the worker's main process before the pool forks. Returns the
    folder, or None when the variable is not set (single-process metrics).
    Raises :class:`ConfigError` when the variable was set too late, or the
    folder cannot be created or written.
    """
    global _wiped
    path = multiprocess_dir()
    if path is None:
        if multiprocess_active():
            raise ConfigError(
                f"{ENV} was removed from the environment after prometheus_client started in "
                "multiprocess mode: keep it set for the worker's whole life")
        return None
    if not multiprocess_active():
        raise ConfigError(
            f"{ENV}={path} was set after prometheus_client was imported, so this process keeps "
            "its metrics in memory and pool processes' counts would be lost. Set it in the "
            f"environment before `celery` starts: `{ENV}={path} celery -A proj worker ...`")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".elk-write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{ENV}={path} is not a writable folder ({exc.strerror or exc}): create it and give "
            "the worker's user write access, or point the variable elsewhere") from None
    if wipe and not _wiped:
        removed = 0
        for name in glob.glob(os.path.join(path, "*.db")):
            try:
                os.remove(name)
                removed += 1
            except FileNotFoundError:
                pass
        _wiped = True
        log.info("elk metrics: multiprocess mode in %s (removed %d old files)", path, removed)
    return path


def reap_dead_processes(path: str) -> list[int]:
    """``mark_process_dead`` for every pid with live-gauge files that no longer runs."""
    pids: set[int] = set()
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        pid = os.path.basename(name)[:-3].rpartition("_")[2]
        if pid.isdigit():
            pids.add(int(pid))
    dead = [p for p in sorted(pids) if not _alive(p)]
    for p in dead:
        _mark_dead(p, path)
    return dead


def _mark_dead(pid: int, path: str) -> None:
    mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _LiveMultiProcessCollector(MultiProcessCollector):
    """Sums every process's files, after dropping the live gauges of dead ones."""

    def collect(self) -> Any:
        reap_dead_processes(self._path)
        return super().collect()  # type: ignore[no-untyped-call]


class _DefaultRegistry:
    """The default registry as one collector of the served registry."""

    def collect(self) -> Iterator[Metric]:
        return iter(REGISTRY.collect())


# -- the worker's life --------------------------------------------------------
_signals_connected = False


def prepare_worker(elk: Any, worker: Any = None) -> str | None:
    """Get a worker ready for metrics; call it in the main process before the
    pool forks (the worker bootstep's ``__init__``), when metrics are on.

    Registers :class:`PrometheusHooks` (children inherit it), checks and wipes
    the multiprocess folder, and connects ``worker_process_init`` (a new child
    drops live gauges a dead process with the same pid left) and
    ``worker_process_shutdown`` (an exiting child is marked dead). Warns when
    a prefork ``worker`` runs without ``PROMETHEUS_MULTIPROC_DIR``. Returns
    the folder, or None in single-process mode.
    """
    global _signals_connected
    ensure_hooks(elk)
    path = setup_multiprocess(wipe=True)
    if path is None and worker is not None and is_prefork(worker):
        log.warning(
            "elk metrics: the prefork pool runs partitions in child processes, but %s is not "
            "set, so /metrics will not count their work. Start the worker with %s=<empty "
            "folder> in its environment, or use --pool=threads or solo.", ENV, ENV)
    if path is not None and not _signals_connected:
        from celery import signals

        signals.worker_process_init.connect(process_started, weak=False)
        signals.worker_process_shutdown.connect(process_exiting, weak=False)
        _signals_connected = True
    return path


def process_started(**_: Any) -> None:
    """In a new child (pool or leader process): drop the live gauges a dead
    process with the same pid left behind."""
    path = multiprocess_dir()
    if path:
        _mark_dead(os.getpid(), path)


def process_exiting(pid: int | None = None, **_: Any) -> None:
    """An exiting child: mark it dead so its live gauges stop counting."""
    path = multiprocess_dir()
    if path:
        _mark_dead(pid or os.getpid(), path)


def ensure_hooks(elk: Any) -> None:
    """Register one :class:`PrometheusHooks` on ``elk`` (idempotent)."""
    from .hooks import PrometheusHooks

    if not any(isinstance(h, PrometheusHooks) for h in elk.hooks.hooks):
        elk.hooks.add(PrometheusHooks())


# -- the HTTP server --------------------------------------------------------
class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class MetricsServer:
    """A running /metrics endpoint; ``stop()`` shuts it down."""

    def __init__(self, httpd: WSGIServer, registry: CollectorRegistry,
                 multiprocess_path: str | None) -> None:
        self.httpd = httpd
        self.registry = registry
        self.multiprocess_path = multiprocess_path
        host, port = httpd.server_address[:2]
        self.address: str = host.decode() if isinstance(host, bytes) else str(host)
        self.port: int = int(port)
        self._thread = threading.Thread(target=httpd.serve_forever, name="elk-metrics", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in str(self.address) else self.address
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


def build_registry(stores: StoresArg) -> tuple[CollectorRegistry, str | None]:
    """The registry /metrics serves: this worker's families (summed over its
    processes in multiprocess mode), ``elk_build_info``, the cluster gauges."""
    path = setup_multiprocess(wipe=False)
    registry = CollectorRegistry(auto_describe=False)
    if path is not None:
        if not _wiped:
            log.warning("elk metrics: %s was not wiped at worker start (old counts may show): "
                        "call elk_celery.metrics.prepare_worker(elk) before the pool forks", path)
        _LiveMultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
    else:
        registry.register(_DefaultRegistry())
    registry.register(BuildInfoCollector())
    registry.register(NodeInfoCollector())
    registry.register(ClusterCollector(stores))
    return registry, path


def start_metrics_server(settings: ElkSettings, stores: StoresArg) -> MetricsServer:
    """Serve /metrics on ``settings.metrics_address``:``settings.metrics_port``
    (port 0 picks a free one; see ``.port``). ``stores`` is a list of
    :class:`NamespaceStore` or a callable returning one."""
    if settings.metrics_port is None:
        raise ConfigError("elk_metrics_port is not set: set it to serve /metrics")
    registry, path = build_registry(stores)
    address = settings.metrics_address
    server_cls = _Server6 if ":" in address else _Server
    try:
        httpd = make_server(address, settings.metrics_port, make_wsgi_app(registry),
                            server_class=server_cls, handler_class=_QuietHandler)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {address}:{settings.metrics_port} ({exc.strerror or exc}); "
            "every worker on a host needs its own elk_metrics_port") from None
    server = MetricsServer(httpd, registry, path)
    log.info("elk metrics: serving %s (%s)", server.url,
             f"multiprocess, {path}" if path else "single process")
    return server
