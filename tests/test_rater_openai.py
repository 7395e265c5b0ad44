"""The OpenAI-compatible rater: against llama-cpp-python's real server, and a scripted faulty server."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bot.errors import EndpointError, RateLimitError
from bot.findings import Anchor, Finding
from bot.rater.base import make_rating
from bot.http import Policy
from bot.rater.openai import OpenAIRater
from bot.severity import LABELS
from tests.llama_server import free_port, need_server_extras, running

EXAMPLES = [
    ("@@ -10,4 +10,4 @@ def load(path):\n-    return open(path).read()\n+    return eval(open(path).read())",
     "eval() on file contents lets anyone who controls the file run arbitrary code."),
    ("@@ -1,3 +1,3 @@\n-def getUser(id):\n+def get_user(id):\n     \"\"\"Return user\"\"\"",
     "Nit: the docstring should end with a period."),
]
FAST = Policy(retries=2, backoff=0.01, max_wait=0.05)


# -- the real server ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    pytest.importorskip("llama_cpp")
    from bot.rater.locate import packaged_model_path, resolve_weights

    cache = tmp_path_factory.mktemp("sieve-cache")
    return resolve_weights(packaged_model_path(), "f16", cache=cache), cache


@pytest.fixture(scope="module")
def llama_server(weights: tuple[Path, Path]) -> Iterator[str]:
    need_server_extras()
    port = free_port()
    with running(["--model", str(weights[0]), "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
                  "--n_threads", "2", "--logits_all", "True", "--verbose", "False"], port, 90) as base:
        yield base


def test_agrees_with_the_local_rater_on_the_same_model(llama_server: str, weights: tuple[Path, Path]) -> None:
    """Same weights, same prompt: argmax equal and every probability within 1e-3 (seen: ≈1e-7)."""
    from bot.rater.llamacpp import LlamaCppRater

    remote = OpenAIRater(llama_server, "smollm2", retry=FAST).rate_texts(EXAMPLES)
    local_rater = LlamaCppRater(weights[0], cache_dir=weights[1], weight_format="as-is")
    try:
        local = local_rater.rate_texts(EXAMPLES)
    finally:
        local_rater.close()
    for far, near in zip(remote, local):
        assert abs(math.fsum(far.probabilities.values()) - 1.0) <= 1e-6
        assert far.severity == near.severity
        assert max(abs(far.probabilities[k] - near.probabilities[k]) for k in LABELS) <= 1e-3


def test_explanation_from_the_real_server(llama_server: str) -> None:
    rater = OpenAIRater(llama_server, "smollm2", retry=FAST)
    finding = Finding(Anchor("app.py", 10), EXAMPLES[0][1], "test", code=EXAMPLES[0][0])
    rating = rater.rate([finding])[0]
    text = rater.explain(finding, rating, max_tokens=16)
    assert isinstance(text, str) and "\n" not in text


# -- a scripted server for faults and for the echo path ------------------------------------------

class Script:
    """Faults to serve first (status, headers, delay), then well-formed completions."""

    def __init__(self, faults: list[tuple[int, dict[str, str], float]], reject_lists: bool = False) -> None:
        self.faults = list(faults)
        self.reject_lists = reject_lists
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []


def _top_choice(prompt: str) -> dict[str, Any]:
    top = {"ivial": -0.05, "iv": -3.0} if prompt.endswith("tr") else {
        "critical": -0.2, "major": -1.5, "minor": -2.5, "tr": -3.0, "The": -4.0}
    return {"index": 0, "text": "x", "finish_reason": "length",
            "logprobs": {"tokens": ["x"], "token_logprobs": [-0.1], "top_logprobs": [top], "text_offset": [0]}}


def _echo_choice(index: int, prompt: str) -> dict[str, Any]:
    label = next(label for label in LABELS if prompt.endswith(label))
    pieces = ["tr", "ivial"] if label == "trivial" else [label]
    tokens = ["", prompt[: -len(label)]] + pieces + ["\n"]  # "" stands for a special token
    values = [None, -1.0] + [-0.5] * len(pieces) + [-0.1]
    return {"index": index, "text": prompt + "\n", "finish_reason": "length",
            "logprobs": {"tokens": tokens, "token_logprobs": values, "top_logprobs": None, "text_offset": None}}


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script.requests.append(body)
            script.headers.append({key.lower(): value for key, value in self.headers.items()})
            if script.faults:
                status, headers, delay = script.faults.pop(0)
                time.sleep(delay)
                return self._send(status, {"error": {"message": "scripted fault"}}, headers)
            prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
            if script.reject_lists and isinstance(body["prompt"], list) and len(prompts) > 1:
                return self._send(500, {"error": {"message": "one prompt only"}}, {})
            choices = [_echo_choice(i, p) if body.get("echo") else _top_choice(p) for i, p in enumerate(prompts)]
            self._send(200, {"id": "c", "object": "text_completion", "created": 0, "model": body["model"],
                             "choices": choices, "usage": {"prompt_tokens": 7 * len(prompts),
                                                           "completion_tokens": 1, "total_tokens": 8}}, {})

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (timeout test)
                pass

    return Handler


@pytest.fixture
def scripted() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(script: Script) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_top_mode_reads_labels_and_follows_multi_token_prefixes(scripted) -> None:
    script = Script([])
    rating = OpenAIRater(scripted(script), "m", retry=FAST).rate_texts(EXAMPLES[:1])[0]
    assert [r["prompt"].endswith("tr") for r in script.requests] == [False, True]
    expected = {"critical": -0.2, "major": -1.5, "minor": -2.5, "trivial": -3.05}
    norm = sum(math.exp(v) for v in expected.values())
    for label, value in expected.items():
        assert abs(rating.probabilities[label] - math.exp(value) / norm) < 1e-9
    assert rating.severity == "critical" and rating.tokens == 14


def test_echo_mode_aligns_label_tokens_and_falls_back_to_single_prompts(scripted) -> None:
    script = Script([], reject_lists=True)
    rater = OpenAIRater(scripted(script), "m", retry=FAST, mode="echo")
    first = rater.rate_texts(EXAMPLES[:1])[0]
    assert isinstance(script.requests[0]["prompt"], list)  # tried one batched request …
    assert len(script.requests) == 1 + len(LABELS)  # … then one prompt per request
    assert first.probabilities["trivial"] < first.probabilities["critical"]  # two tokens: -1.0 vs -0.5
    rater.rate_texts(EXAMPLES[:1])
    assert len(script.requests) == 1 + 2 * len(LABELS)  # the fallback is remembered


def test_rate_limit_is_retried_honouring_retry_after(scripted) -> None:
    script = Script([(429, {"Retry-After": "0"}, 0.0), (429, {"Retry-After": "0"}, 0.0)])
    rating = OpenAIRater(scripted(script), "m", retry=FAST).rate_texts(EXAMPLES[:1])[0]
    assert rating.severity == "critical"
    assert len(script.requests) == 4  # two refused, then the answer and the "tr" follow-up


def test_persistent_rate_limit_raises_rate_limit_error(scripted) -> None:
    script = Script([(429, {"Retry-After": "0"}, 0.0)] * 5)
    with pytest.raises(RateLimitError, match="after 3 attempts"):
        OpenAIRater(scripted(script), "m", retry=FAST).rate_texts(EXAMPLES[:1])
    assert len(script.requests) == 3


def test_server_errors_are_retried_then_endpoint_error(scripted) -> None:
    script = Script([(500, {}, 0.0)] * 5)
    with pytest.raises(EndpointError, match="server error 500") as caught:
        OpenAIRater(scripted(script), "m", retry=FAST).rate_texts(EXAMPLES[:1])
    assert caught.value.status == 500 and len(script.requests) == 3


def test_timeouts_are_retried_then_endpoint_error(scripted) -> None:
    script = Script([(200, {}, 1.0)] * 3)
    started = time.monotonic()
    with pytest.raises(EndpointError, match="timed out"):
        OpenAIRater(scripted(script), "m", timeout=0.2, retry=FAST).rate_texts(EXAMPLES[:1])
    assert len(script.requests) == 3 and time.monotonic() - started < 5


def test_client_errors_fail_fast_and_never_show_the_key(scripted, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-0123456789abcdefghij"
    monkeypatch.setenv("SIEVE_LLM_API_KEY", secret)
    script = Script([(401, {}, 0.0)])
    with pytest.raises(EndpointError) as caught:
        OpenAIRater(scripted(script), "m", retry=FAST).rate_texts(EXAMPLES[:1])
    assert len(script.requests) == 1 and caught.value.status == 401
    assert secret not in str(caught.value)
    assert script.headers[0]["authorization"] == f"Bearer {secret}"  # the key did go to the server


def test_explain_returns_empty_on_endpoint_failure(scripted) -> None:
    script = Script([(500, {}, 0.0)] * 5)
    rater = OpenAIRater(scripted(script), "m", retry=FAST)
    finding = Finding(Anchor("app.py", 1), "r", "test", code="c")
    rating = make_rating({label: 0.0 for label in LABELS}, model_id="m", truncated=False, tokens=0)
    assert rater.explain(finding, rating) == ""
