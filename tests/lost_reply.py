"""A loopback TCP proxy in front of Redis that loses one reply on demand.

Armed with a marker (e.g. a script's SHA), it forwards the next command
that contains the marker to Redis, then closes that client connection
before Redis's reply reaches the client: the command ran, its caller only
sees a connection error. That is the fault a retry must survive. Used by
tests/integration/test_lost_replies.py.
"""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlparse


class ReplyDropper:
    """``ReplyDropper(redis_url)``: listens on 127.0.0.1 (``.url``)."""

    def __init__(self, redis_url: str) -> None:
        u = urlparse(redis_url)
        self._target = (u.hostname or "127.0.0.1", u.port or 6379)
        self._db = (u.path or "/0").lstrip("/") or "0"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._marker: bytes | None = None
        self._dropped: threading.Event | None = None
        self._socks: list[socket.socket] = []
        self._closed = False
        #: replies dropped so far
        self.drops = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"redis://{host}:{port}/{self._db}"

    def arm(self, marker: bytes) -> threading.Event:
        """Lose the reply of the next command containing ``marker``; the
        event is set once it was lost."""
        with self._lock:
            self._marker, self._dropped = marker, threading.Event()
            return self._dropped

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for s in self._socks:
                _close(s)

    def __enter__(self) -> ReplyDropper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            with self._lock:
                self._socks += [client, server]
            state = {"drop": None}
            threading.Thread(target=self._up, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, state), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, state: dict) -> None:
        tail = b""
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                data = b""
            if not data:
                _close(server)
                return
            with self._lock:
                if self._marker is not None and self._marker in tail + data:
                    # flagged before the command leaves: its reply can't beat the flag
                    state["drop"], self._marker = self._dropped, None
                m = len(self._marker or b"")
            tail = data[-m:] if m else b""
            try:
                server.sendall(data)
            except OSError:
                _close(client)
                return

    def _down(self, server: socket.socket, client: socket.socket, state: dict) -> None:
        while True:
            try:
                data = server.recv(65536)
            except OSError:
                data = b""
            if data and state["drop"] is not None:
                # the command ran; its caller never hears of it (flagged
                # first: the caller may be done with its retry before we are)
                self.drops += 1
                state["drop"].set()
                _close(client)
                _close(server)
                return
            if not data:
                _close(client)
                return
            try:
                client.sendall(data)
            except OSError:
                _close(server)
                return


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()
