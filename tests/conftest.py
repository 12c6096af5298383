"""Shared fixtures. Tests talk to a real Redis (``ELK_REDIS_URL``, default the
local one); each test works in its own namespace and removes exactly that
namespace's keys afterwards (never FLUSHDB, never KEYS/SCAN).

Keep this file additive: add new fixtures below, in their own section.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from elk_celery import ElkSettings, HashPartitionStrategy, Keys, SimpleStrategy  # noqa: E402

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_url_from_env() -> str:
    return os.environ.get("ELK_REDIS_URL") or DEFAULT_REDIS_URL


def unique_namespace(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def cleanup_namespace(client: redis.Redis, namespace: str, key_prefix: str = "elk") -> int:
    """Delete every key of ``namespace``: the fixed keys plus the per-partition
    keys of SimpleStrategy, found through the ``ids`` zset."""
    keys = Keys(namespace, key_prefix)
    names = list(keys.all_fixed())
    names += keys.storage((m.decode() if isinstance(m, bytes) else m).split(":", 1)[0]
                          for m in client.zrange(keys.ids, 0, -1))
    from elk_celery.keys import registry_key
    client.srem(registry_key(key_prefix), namespace)
    deleted = 0
    for start in range(0, len(names), 500):
        deleted += client.delete(*names[start:start + 500])
    return deleted


# --------------------------------------------------------------------- Redis

@pytest.fixture(scope="session")
def redis_url() -> str:
    return redis_url_from_env()


@pytest.fixture(scope="session")
def _redis_session_client(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.exit(f"Redis at {redis_url} is not reachable ({exc}); set ELK_REDIS_URL", 2)
    yield client
    client.close()


@pytest.fixture
def redis_client(_redis_session_client: redis.Redis) -> redis.Redis:
    return _redis_session_client


@pytest.fixture
def namespace(redis_client: redis.Redis):
    """A fresh namespace; its keys are deleted after the test."""
    ns = unique_namespace()
    yield ns
    cleanup_namespace(redis_client, ns)


STRATEGIES = {"hash": HashPartitionStrategy, "simple": SimpleStrategy}


@pytest.fixture(params=sorted(STRATEGIES), ids=sorted(STRATEGIES))
def strategy_cls(request):
    """Each partition strategy class in turn (ids ``hash`` / ``simple``)."""
    return STRATEGIES[request.param]


@pytest.fixture
def strategy(strategy_cls, redis_client, namespace):
    """A strategy instance (both kinds) on the shared Redis, in a fresh namespace."""
    return strategy_cls(redis_client, namespace)


@pytest.fixture
def make_strategy(strategy_cls, redis_client, namespace):
    """``make_strategy(**settings)``: another instance of the same kind on the
    same namespace, with ElkSettings overrides (short leases, breaker, ...)."""
    def make(**settings):
        return strategy_cls(redis_client, namespace, ElkSettings(**settings))
    return make


# ------------------------------------------------------ private redis-server

@pytest.fixture
def private_redis():
    """A private ``redis-server`` on a free port, for tests that stop, pause or
    restart Redis. Yields the ``RedisServer`` (``.url``, ``.restart()``, ...)."""
    if importlib.util.find_spec("elk_celery._redis_server") is None:
        pytest.skip("elk_celery._redis_server (RedisServer) is not available yet")
    from elk_celery._redis_server import RedisServer

    try:
        server = RedisServer().start()
    except RuntimeError as exc:  # no redis-server binary on this machine
        pytest.skip(f"cannot start a private redis-server: {exc}")
    try:
        yield server
    finally:
        server.__exit__(None, None, None)  # stops it and removes its temp dir


@pytest.fixture
def proxy(redis_url):
    """A loopback TCP proxy (tests/netproxy.py) in front of the test Redis, for
    network faults: ``.url(db)``, ``.cut()``, ``.stall()``, ``.heal()``."""
    from urllib.parse import urlparse

    from tests.netproxy import TcpProxy
    u = urlparse(redis_url)
    if u.scheme != "redis" or u.hostname not in ("127.0.0.1", "localhost"):
        pytest.skip("the proxy forwards to a loopback redis:// server")
    with TcpProxy(u.port or 6379) as p:
        yield p


# ------------------------------------------------- real Celery worker processes

import signal  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from typing import Callable  # noqa: E402


def wait_for(cond: Callable[[], object], timeout: float, what: str | Callable[[], str],
             interval: float = 0.1):
    """Poll ``cond`` until it returns something truthy; fail naming ``what``
    (a callable is called only then, e.g. to read the workers' logs)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for "
                                 f"{what() if callable(what) else what}")
        time.sleep(interval)


def holds_for(cond: Callable[[], object], seconds: float, what: str | Callable[[], str],
              interval: float = 0.1) -> None:
    """Check that ``cond`` stays truthy for ``seconds`` (for "nothing
    happens while ..." assertions); fail at once, naming ``what``, if not."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not cond():
            raise AssertionError(f"no longer true: {what() if callable(what) else what}")
        time.sleep(interval)


class CeleryProc:
    """A ``celery worker`` or ``celery beat`` subprocess of tests/apps/jobapp.py."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.apps.jobapp", *args],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int, group: bool = False) -> None:
        if self.proc.poll() is None:
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.signal(signal.SIGCONT, group=True)
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL, group=True)
                self.proc.wait(5)
        self._log.close()

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


class Cluster:
    """Starts workers and beats of one job (its own namespace and queue)."""

    def __init__(self, redis_url: str, namespace: str, tmp: Path, **job: object) -> None:
        self.namespace = namespace
        self.tmp = tmp
        self.procs: list[CeleryProc] = []
        self.redis_url = redis_url
        self.env = {**os.environ, "ELK_REDIS_URL": redis_url, "ELK_TEST_NS": namespace,
                    "ELK_TEST_LEDGER_URL": redis_url,
                    "ELK_TEST_BEAT_FILE": str(tmp / "beat-schedule"),
                    "PYTHONPATH": str(ROOT)}
        self.configure(**job)

    def configure(self, max_id: int = 1000, size: int = 100, window: int | None = 1,
                  sleep: float = 0.0, fail: tuple[int, ...] = (), garbage: tuple[int, ...] = (),
                  block: int = 0, **settings: object) -> None:
        import json
        self.env.update({"ELK_TEST_MAX_ID": str(max_id), "ELK_TEST_SIZE": str(size),
                         "ELK_TEST_WINDOW": "" if window is None else str(window), "ELK_TEST_SLEEP": str(sleep),
                         "ELK_TEST_FAIL": ",".join(map(str, fail)),
                         "ELK_TEST_GARBAGE": ",".join(map(str, garbage)),
                         "ELK_TEST_BLOCK": str(block),
                         "ELK_TEST_SETTINGS": json.dumps(settings)})

    def worker(self, name: str, concurrency: int = 2, beat: bool = False, pool: str = "prefork",
               queues: str | None = None, redis_url: str | None = None) -> CeleryProc:
        """``redis_url``: this worker's Redis (state and broker), e.g. through
        a tests/netproxy.py proxy; the ledger stays on the cluster's."""
        args = ["worker", "-n", f"{name}@%h", "-c", str(concurrency), "-P", pool,
                "--without-gossip", "--without-mingle", "-l", "INFO",
                "-Q", queues or self.namespace]
        if beat:
            args += ["-B", "-s", str(self.tmp / f"beat-{name}")]
        env = self.env if redis_url is None else {**self.env, "ELK_REDIS_URL": redis_url}
        p = CeleryProc(args, env, self.tmp / f"{name}.log")
        self.procs.append(p)
        return p

    def beat(self, name: str = "beat") -> CeleryProc:
        p = CeleryProc(["beat", "-s", str(self.tmp / f"{name}-schedule"), "-l", "INFO"],
                       self.env, self.tmp / f"{name}.log")
        self.procs.append(p)
        return p

    def cli(self, *args: object, timeout: float = 60) -> subprocess.CompletedProcess:
        """The real CLI on this job: ``celery -A tests.apps.jobapp elk ARGS``."""
        return subprocess.run([sys.executable, "-m", "celery", "-A", "tests.apps.jobapp", "elk",
                               *map(str, args)], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def python(self, code: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """``code`` in a fresh interpreter with the job's app imported as ``app``."""
        return subprocess.run([sys.executable, "-c", "from tests.apps.jobapp import app, NS\n" + code],
                              cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def stop(self) -> None:
        for p in self.procs:
            p.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.log()[-3000:]}" for p in self.procs)


@pytest.fixture
def cluster(redis_url, redis_client, namespace, tmp_path):
    """``cluster(**job)``: a factory of worker/beat subprocesses for one job."""
    made: list[Cluster] = []

    def make(**job: object) -> Cluster:
        c = Cluster(redis_url, namespace, tmp_path, **job)
        made.append(c)
        return c
    yield make
    for c in made:
        c.stop()
    names = [f"{namespace}:ledger", f"{namespace}:runs", f"{namespace}:blocks", f"{namespace}:maxrun",
             f"{namespace}:running_all", f"{namespace}:maxrun_all", namespace]
    names += [k for k in (f"{namespace}:running:" + n.decode()
                          for n in redis_client.zrange(Keys(namespace).nodes, 0, -1))]
    redis_client.delete(*names)


# ------------------------------------------------- skip report for dev.py

def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Hand the skip reasons to ``dev.py test`` (``$ELK_DEV_SKIP_REPORT``),
    which ends its run by saying what was skipped and how to get it."""
    path = os.environ.get("ELK_DEV_SKIP_REPORT")
    if not path:
        return
    import json
    reasons: dict[str, int] = {}
    for rep in terminalreporter.stats.get("skipped", []):
        longrepr = rep.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    with open(path, "w") as f:
        json.dump({"skipped": reasons,
                   "deselected": len(terminalreporter.stats.get("deselected", []))}, f)


# ------------------------------------ Redis Cluster and Sentinel (issue 14)
# Slow to start (a few seconds each): one shared deployment per session for
# tests that leave it healthy, a private one per test for tests that kill
# masters. Tests using them carry the ``topology`` marker.

@pytest.fixture(scope="session")
def redis_cluster():
    """A 3-master/3-replica Redis Cluster on loopback ports, shared (don't kill its nodes)."""
    from tests.redis_topologies import RedisClusterTopology
    with RedisClusterTopology() as topo:
        yield topo


@pytest.fixture(scope="session")
def redis_sentinel():
    """One master, one replica, three sentinels, shared (don't kill its servers)."""
    from tests.redis_topologies import SentinelTopology
    with SentinelTopology() as topo:
        yield topo


@pytest.fixture
def redis_cluster_private():
    """A cluster of this test's own, to kill masters in."""
    from tests.redis_topologies import RedisClusterTopology
    with RedisClusterTopology() as topo:
        yield topo


@pytest.fixture
def redis_sentinel_private():
    """A Sentinel deployment of this test's own, to fail over."""
    from tests.redis_topologies import SentinelTopology
    with SentinelTopology() as topo:
        yield topo
