"""Student × backend: the server backend's scoring mode ``bias`` against a scripted completions server with a
tokenizer endpoint (exact answers, and the servers it must refuse), and the student applied the same way by
every backend."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bot.errors import EndpointError
from bot.http import Policy
from bot.rater.openai import OpenAIRater
from bot.severity import LABELS

FAST = Policy(retries=1, backoff=0.01, max_wait=0.05)
PAIR = ("x = eval(data)", "eval() on user data runs arbitrary code.")
#: the scripted vocabulary: these pieces are one token each, any other character is a token of its own
PIECES = {"critical": 100, "major": 101, "minor": 102, "tr": 103, "ivial": 104}
#: log P(piece | text so far) the server reports for a forced piece, by what the text ends with
RAW = {('"', "critical"): -0.5, ('"', "major"): -1.5, ('"', "minor"): -2.5, ('"', "tr"): -3.0, ("tr", "ivial"): -0.05}


def tokenize(text: str) -> list[int]:
    ids, at = [1], 0  # 1: BOS
    while at < len(text):
        piece = next((p for p in sorted(PIECES, key=len, reverse=True) if text.startswith(p, at)), None)
        ids.append(PIECES[piece] if piece else 1000 + ord(text[at]))
        at += len(piece) if piece else 1
    return ids


class Server:
    """``behaviour``: raw (honest), biased (reports log-probabilities after the bias), deaf (ignores logit_bias),
    no-tokenizer (answers 404 there); ``models`` is what ``/v1/models`` lists."""

    def __init__(self, behaviour: str = "raw", models: tuple[str, ...] = ("m",)) -> None:
        self.behaviour = behaviour
        self.models = models
        self.completions: list[dict[str, Any]] = []

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body["prompt"]
        names = {v: k for k, v in PIECES.items()}
        forced = [names[int(k)] for k in (body.get("logit_bias") or {})]
        if forced and self.behaviour != "deaf":
            piece = forced[0]
            tail = next(end for end in ('"', "tr") if prompt.endswith(end))
            value = -1e-4 if self.behaviour == "biased" else RAW[tail, piece]
        else:
            piece, value = "The", -4.0
        return {"id": "c", "object": "text_completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "text": piece, "finish_reason": "length",
                             "logprobs": {"tokens": [piece], "token_logprobs": [value], "top_logprobs": [{piece: value}],
                                          "text_offset": [len(prompt)]}}],
                "usage": {"prompt_tokens": len(tokenize(prompt)), "completion_tokens": 1,
                          "total_tokens": len(tokenize(prompt)) + 1}}


def handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in server.models]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/extras/tokenize" and server.behaviour != "no-tokenizer":
                return self._send(200, {"tokens": tokenize(body["input"])})
            if self.path == "/v1/completions":
                server.completions.append(body)
                return self._send(200, server.complete(body))
            self._send(404, {"detail": "Not Found"})

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def serve() -> Iterator[Any]:
    running: list[ThreadingHTTPServer] = []

    def start(server: Server) -> str:
        http = ThreadingHTTPServer(("127.0.0.1", 0), handler(server))
        http.daemon_threads = True
        threading.Thread(target=http.serve_forever, daemon=True).start()
        running.append(http)
        return f"http://127.0.0.1:{http.server_address[1]}/v1"

    yield start
    for http in running:
        http.shutdown()
        http.server_close()


def expected(logprobs: dict[str, float]) -> dict[str, float]:
    total = sum(math.exp(v) for v in logprobs.values())
    return {label: math.exp(v) / total for label, v in logprobs.items()}


@pytest.mark.parametrize("mode", ["bias", "auto"])
def test_bias_mode_forces_each_label_token_and_reads_its_raw_log_probability(serve, mode: str) -> None:
    server = Server()
    rater = OpenAIRater(serve(server), "m", retry=FAST, mode=mode)
    rating = rater.rate_texts([PAIR])[0]
    want = expected({"critical": -0.5, "major": -1.5, "minor": -2.5, "trivial": -3.0 - 0.05})
    assert all(abs(rating.probabilities[k] - want[k]) < 1e-9 for k in LABELS)
    forced = [(body["prompt"][-2:], list(body["logit_bias"])) for body in server.completions]
    assert forced == [(' "', ["100"]), (' "', ["101"]), (' "', ["102"]), (' "', ["103"]), ("tr", ["104"])]


def test_bias_mode_applies_the_students_bias_and_prior_like_any_backend(serve) -> None:
    bias = {"critical": -1.0, "major": 0.0, "minor": 0.5, "trivial": 1.0}
    rating = OpenAIRater(serve(Server()), "m", retry=FAST, mode="bias", label_bias=bias).rate_texts([PAIR])[0]
    raw = {"critical": -0.5, "major": -1.5, "minor": -2.5, "trivial": -3.05}
    want = expected({k: raw[k] + bias[k] for k in LABELS})
    assert all(abs(rating.probabilities[k] - want[k]) < 1e-9 for k in LABELS)


@pytest.mark.parametrize(("behaviour", "why"), [("biased", "after logit_bias"), ("deaf", "logit_bias is ignored")])
def test_a_server_that_cannot_score_exactly_is_refused_in_one_line(serve, behaviour: str, why: str) -> None:
    rater = OpenAIRater(serve(Server(behaviour)), "m", retry=FAST, mode="bias")
    with pytest.raises(EndpointError, match=why) as caught:
        rater.rate_texts([PAIR])
    assert "\n" not in str(caught.value)


def test_without_a_tokenizer_endpoint_bias_is_refused_and_auto_reads_top_candidates(serve) -> None:
    url = serve(Server("no-tokenizer"))
    with pytest.raises(EndpointError, match="no tokenizer endpoint"):
        OpenAIRater(url, "m", retry=FAST, mode="bias").rate_texts([PAIR])
    auto = OpenAIRater(url, "m", retry=FAST, mode="auto")
    with pytest.raises(EndpointError):  # top candidates never hold the labels here, and echo finds none either
        auto.rate_texts([PAIR])
    assert auto.backend.mode == "top"


def test_a_multi_model_server_must_serve_the_students_name(serve) -> None:
    url = serve(Server(models=("team-a", "team-b")))
    with pytest.raises(EndpointError, match="does not serve model 'team-c'.*team-a, team-b"):
        OpenAIRater(url, student_name="team-c", retry=FAST, mode="bias")
    rater = OpenAIRater(url, student_name="team-b", retry=FAST, mode="bias")  # the student's own name is asked for
    rater.rate_texts([PAIR])
    assert rater.model == "team-b"


def test_the_server_reads_the_students_own_prompt_version_template_and_code_budget(serve) -> None:
    server = Server()
    rater = OpenAIRater(serve(server), "m", retry=FAST, mode="bias", template="plain",
                        prompt_version="sieve-severity-v3", code_chars=0, model_id="s@1")
    rating = rater.rate_texts([PAIR])[0]
    assert rating.prompt_version == "sieve-severity-v3" and rating.model_id == "s@1"
    prompt = server.completions[0]["prompt"]
    assert prompt.endswith('Answer: {"issue_type": "') and "eval(data)" not in prompt and '"code": ""' in prompt
