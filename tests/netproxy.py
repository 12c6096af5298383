"""A loopback TCP proxy for network faults in tests.

``TcpProxy(port)`` listens on 127.0.0.1 (a free port) and forwards every
connection to ``127.0.0.1:port``. Between a process and Redis it plays the
network:

* :meth:`cut` -- drop every connection (both sides see it closed) and close
  new ones at once (a client sees its connection reset, as when refused);
  ``cut(new="stall")`` accepts new ones and forwards nothing on them.
* :meth:`stall` -- keep every socket open but forward nothing, either way
  (a hung switch: calls block until the client's own timeout). Bytes sent
  meanwhile stay in the kernel's buffers and arrive after :meth:`heal`.
* :meth:`heal` -- forward again.

Threads, not asyncio: each connection has two pump threads that poll the
mode every 50 ms, so a fault takes effect within that time.
"""

from __future__ import annotations

import select
import socket
import struct
import threading

OPEN, CUT, STALL = "open", "cut", "stall"
_POLL = 0.05


class _Conn:
    def __init__(self, proxy: TcpProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self._done = False

    def start(self) -> None:
        threading.Thread(target=self._run, name="netproxy-conn", daemon=True).start()

    def _run(self) -> None:
        try:
            up = socket.create_connection(self.proxy.target, timeout=5)
            up.settimeout(None)
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # the target is down: the client sees its connection closed
            self.close()
            return
        with self._lock:
            if self._done:  # cut while connecting
                up.close()
                return
            self.upstream = up
        t = threading.Thread(target=self._pump, args=(self.upstream, self.client),
                             name="netproxy-down", daemon=True)
        t.start()
        self._pump(self.client, self.upstream)
        t.join()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        proxy = self.proxy
        try:
            while not self.closed.is_set():
                if proxy.mode != OPEN:  # stalled: read nothing, so nothing flows
                    proxy._flowing.wait(_POLL)
                    continue
                ready, _, _ = select.select([src], [], [], _POLL)
                if not ready or proxy.mode != OPEN:
                    continue
                data = src.recv(65536)
                if not data:
                    break
                with proxy._lock:
                    proxy.bytes_forwarded += len(data)
                dst.sendall(data)
        except (OSError, ValueError):  # closed under us by cut()
            pass
        self.close()

    def close(self) -> None:
        with self._lock:
            self.closed.set()
            if self._done:
                return
            self._done = True
            for s in (self.client, self.upstream):
                if s is None:
                    continue
                try:
                    s.shutdown(socket.SHUT_RDWR)  # wakes a pump blocked on it
                except OSError:
                    pass
                s.close()
        self.proxy._forget(self)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target_host:target_port``; a context manager."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.mode = OPEN
        self._new = "refuse"  # what a cut does to new connections
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._conns: set[_Conn] = set()
        self._stalled_new: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="netproxy-accept",
                                        daemon=True)
        #: statistics, for tests of the proxy itself
        self.accepted = 0
        self.refused = 0
        self.bytes_forwarded = 0

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=2)
        self._drop_all()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, db: int = 0) -> str:
        """A redis:// URL through this proxy."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    # -- faults ----------------------------------------------------------------
    def cut(self, new: str = "refuse") -> None:
        """Drop every connection; new ones are closed at once (``new="refuse"``)
        or accepted and left silent (``new="stall"``) until :meth:`heal`."""
        if new not in ("refuse", "stall"):
            raise ValueError(f"new={new!r}: use 'refuse' or 'stall'")
        with self._lock:
            self.mode, self._new = CUT, new
            self._flowing.clear()
        self._drop_all()

    def stall(self) -> None:
        """Keep every connection open, forward nothing (new ones included)."""
        with self._lock:
            self.mode = STALL
            self._flowing.clear()

    def heal(self) -> None:
        """Forward again. Connections accepted silently during a cut are
        closed (their peer never saw them); stalled ones resume."""
        with self._lock:
            self.mode = OPEN
            stalled, self._stalled_new = self._stalled_new, []
            self._flowing.set()
        for s in stalled:
            s.close()

    def connections(self) -> int:
        with self._lock:
            return len(self._conns)

    # -- internals -------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], _POLL)
                if not ready:
                    continue
                client, _ = self._listener.accept()
            except (OSError, ValueError):
                return  # closed
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = None
            with self._lock:  # under the lock: a cut() either sees conn or came first
                if self.mode == CUT and self._new == "stall":
                    self._stalled_new.append(client)
                    self.refused += 1
                    continue
                if self.mode == CUT:
                    self.refused += 1
                else:
                    self.accepted += 1
                    conn = _Conn(self, client)
                    self._conns.add(conn)
            if conn is None:
                # linger 0: the close sends RST, as a refused connect would
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
            else:
                conn.start()

    def _forget(self, conn: _Conn) -> None:
        with self._lock:
            self._conns.discard(conn)

    def _drop_all(self) -> None:
        with self._lock:
            conns = list(self._conns)
            stalled, self._stalled_new = (self._stalled_new, []) if self._stop.is_set() else (
                [], self._stalled_new)
        for c in conns:
            c.close()
        for s in stalled:
            s.close()

