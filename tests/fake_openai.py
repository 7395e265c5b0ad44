"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 for tests.

Real clients (the ``openai`` package, plain HTTP) talk to it over a real socket; the test decides
what each request gets back::

    with ScriptedOpenAIServer() as server:
        server.push(Reply(status=429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "1"}),
                    chat_reply('{"findings": []}'))
        ... client with base_url=server.url ...
        assert len(server.requests) == 2

Replies are consumed in order; when the queue is empty ``default`` answers (else 500 "script
exhausted"). A reply with ``delay`` longer than the client's timeout simulates a timeout; delayed
replies wake up when the server stops, so a test never waits for them. With ``api_key`` set, a
request whose ``Authorization`` is not ``Bearer <api_key>`` gets 401 before the script is consulted.
The key itself is never recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/models")


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def chat_reply(content: str, *, model: str = "scripted", prompt_tokens: int = 10,
               completion_tokens: int = 10, finish_reason: str = "stop") -> Reply:
    """A 200 chat completion whose single choice says ``content``."""
    return Reply(json={
        "id": "chatcmpl-scripted", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": finish_reason, "logprobs": None,
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })


def error_reply(status: int, message: str, *, headers: dict[str, str] | None = None) -> Reply:
    """An error in the shape OpenAI-compatible servers use."""
    return Reply(status=status, json={"error": {"message": message, "type": "scripted", "code": status}},
                 headers=dict(headers or {}))


class ScriptedOpenAIServer:
    """Context manager: a ThreadingHTTPServer on 127.0.0.1 (port 0) in a daemon thread."""

    def __init__(self, *, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.default: Callable[[dict[str, Any]], Reply] | None = None
        self._queue: list[Reply | Callable[[dict[str, Any]], Reply]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def push(self, *responses: Reply | Callable[[dict[str, Any]], Reply]) -> None:
        with self._lock:
            self._queue.extend(responses)

    def __enter__(self) -> Self:
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="scripted-openai", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _next_reply(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(request)
            item = self._queue.pop(0) if self._queue else None
        if item is None:
            if self.default is not None:
                return self.default(request)
            return Reply(status=500, json={"error": {"message": "script exhausted", "type": "scripted"}})
        return item(request) if callable(item) else item


def _make_handler(server: ScriptedOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            self._handle(None)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                body = {"_unparsed": raw.decode("utf-8", "replace")}
            self._handle(body)

        def _handle(self, body: Any) -> None:
            path = self.path.split("?", 1)[0]
            headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
            request = {"path": path, "body": body, "headers": headers}
            authorized = server.api_key is None or self.headers.get("Authorization") == f"Bearer {server.api_key}"
            if path not in ROUTES:
                reply = error_reply(404, f"no route {path}")
            elif not authorized:
                with server._lock:
                    server.requests.append(request)
                reply = error_reply(401, "Incorrect API key provided")
            elif path == "/v1/models" and not server._queue and server.default is None:
                reply = Reply(json={"object": "list", "data": [{"id": "scripted", "object": "model"}]})
            else:
                reply = server._next_reply(request)
            if reply.delay and server._stopping.wait(reply.delay):
                return
            self._send(reply)

        def _send(self, reply: Reply) -> None:
            if reply.text is not None:
                payload, ctype = reply.text.encode("utf-8"), "text/plain; charset=utf-8"
            else:
                payload, ctype = json.dumps(reply.json if reply.json is not None else {}).encode(), "application/json"
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a simulated timeout)

    return Handler
