"""llama-cpp-python's own OpenAI-compatible server, started for a test on a free 127.0.0.1 port and always stopped."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

SERVER_MODULES = ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def need_server_extras() -> None:
    for module in SERVER_MODULES:
        pytest.importorskip(module, reason="llama-cpp-python[server] extras are not installed")


@contextmanager
def running(args: list[str], port: int, start_within: float = 120.0) -> Iterator[str]:
    """``python -m llama_cpp.server ARGS`` until its ``/v1/models`` answers; yields the ``/v1`` base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + start_within
        while True:
            try:
                urllib.request.urlopen(f"{base}/models", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("llama_cpp.server did not start")
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
