"""A server on 127.0.0.1 that answers one byte at a time, slowly enough that no single read ever times out.

It stands for a stalled proxy or an overloaded endpoint: with per-read timeouts alone a client would wait for the
whole answer. Use as a context manager; it stops by itself (connections close when it stops or after
``lifetime`` seconds).
"""

from __future__ import annotations

import socket
import threading
from typing import Self


class TrickleServer:
    def __init__(self, *, interval: float = 0.5, body: bytes = b'{"ok": true}' + b" " * 400,
                 lifetime: float = 120.0) -> None:
        self.interval, self.body, self.lifetime = interval, body, lifetime
        self.connections = 0
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        threading.Thread(target=self._serve, daemon=True).start()
        threading.Timer(self.lifetime, self._stop.set).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {len(self.body)}\r\n\r\n".encode() + self.body)
        with conn:
            try:
                conn.recv(65536)
                for i in range(len(answer)):
                    if self._stop.wait(self.interval):
                        return
                    conn.sendall(answer[i:i + 1])
            except OSError:
                return  # the client gave up: what the deadline is for
