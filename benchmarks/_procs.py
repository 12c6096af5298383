"""Worker processes for the benchmark scripts: start ``celery worker``
subprocesses that die with the benchmark, check they still run, stop them.

Imported by the scripts from their own folder (``benchmarks/`` is on
``sys.path`` when a script runs, and on the workers' ``PYTHONPATH``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

_clients: dict[tuple[int, str], Any] = {}


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when the benchmark dies (Linux)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - elsewhere the benchmark's finally stops them
        pass


def start_celery(app: str, args: Sequence[str], *, cwd: Path, env: dict[str, str],
                 log: Path) -> subprocess.Popen[bytes]:
    """``python -m celery -A app *args`` in a session of its own (so
    :func:`stop` can kill its pool children too), output to ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", app, *args], cwd=cwd, env=env,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent)


def check_running(procs: Sequence[tuple[subprocess.Popen[bytes], Path]]) -> None:
    """Raise with the log's tail if one of ``(process, log)`` has exited."""
    for proc, log in procs:
        if proc.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"{log.name} exited ({proc.returncode}):\n{tail}")


def stop(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 15) -> None:
    """SIGTERM (a warm shutdown) each, wait up to ``timeout``, then SIGKILL
    what is left of its session (pool children, beat)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def client(url: str) -> Any:
    """A ``redis.Redis`` for ``url`` of this process (a forked pool child gets
    its own: a client's connections must not cross a fork)."""
    import redis
    key = (os.getpid(), url)
    if key not in _clients:
        _clients[key] = redis.Redis.from_url(url)
    return _clients[key]
