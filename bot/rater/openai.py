"""A rater that scores the labels through any OpenAI-compatible *completions* endpoint.

For vLLM serving base + LoRA, llama-cpp-python's server, or anything else that answers
``/v1/completions`` with ``echo`` and ``logprobs``. For each finding the four prompts
``prompt + label`` are sent with ``echo=True, max_tokens=1, logprobs=1``; the echoed log-probabilities
of the label's own tokens are summed, exactly as the local rater does, and softmaxed over the four.

The four prompts go in one request (a list prompt) where the server accepts that; servers that take
one prompt per request (llama-cpp-python) are detected on the first call and then served one by one.
The API key is read from the environment only and never appears in a message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import openai

from bot import http
from bot.errors import EndpointError, RateLimitError
from bot.findings import Finding, Rating
from bot.prompt import TEMPLATES, render, render_explanation_request
from bot.rater.base import clean_explanation, make_rating
from bot.severity import LABELS

log = logging.getLogger(__name__)
T = TypeVar("T")


#: Bounded retries for 429, 5xx, timeouts and dropped connections (a local server rarely needs long waits).
DEFAULT_POLICY = http.Policy(retries=3, backoff=0.5)


def _answer(exc: Exception) -> http.Answer | None:
    """Read an openai SDK exception as a neutral answer (None: not an HTTP failure)."""
    if isinstance(exc, openai.APIStatusError):
        return http.Answer(exc.status_code, dict(exc.response.headers) if exc.response is not None else {})
    if isinstance(exc, openai.APITimeoutError):
        deadline = "deadline" in str(exc.__cause__ or "")
        return http.Answer(failure="deadline" if deadline else "timeout", message=str(exc.__cause__ or ""))
    if isinstance(exc, openai.APIConnectionError):
        return http.Answer(failure="connection")
    return None


def call_with_retries(call: Callable[[], T], policy: http.Policy, where: str,
                      counters: http.Counters | None = None) -> T:
    """Run ``call`` under the HTTP policy; 4xx other than 429 fail at once, the rest raise EndpointError."""
    def fail(answer: http.Answer, verdict: http.Verdict, attempts: int) -> Exception:
        if verdict.kind == "refused":
            return EndpointError(f"{where} refused the request: HTTP {answer.status}", status=answer.status,
                                 hint="check the model name, the prompt length limit and the API key variable")
        last = {"limited": "rate limited (429)", "server": f"server error {answer.status}",
                "connection": "could not connect"}.get(verdict.kind, "request timed out")
        if answer.failure == "deadline":
            last = f"request timed out ({answer.message})"
        if verdict.too_long:
            last += f", asking to wait {verdict.wait:.0f} s (over the {policy.max_wait:g} s cap)"
        error = RateLimitError if answer.status == 429 else EndpointError
        return error(f"{where} failed after {attempts} attempts: {last}", status=answer.status,
                     hint="check that the endpoint is up and not overloaded, or raise the retry budget")

    return http.run(call, policy, classify=_answer, fail=fail, counters=counters)  # type: ignore[return-value]


def label_logprob(logprobs: Any, text: str, prompt: str, label: str) -> float:
    """Sum the echoed log-probabilities of the tokens that spell ``label`` at the end of ``prompt``.

    Character offsets differ between servers (some print special tokens as empty strings), so we
    align from the end: the echoed text is ``prompt + generated``; the label is the stretch of token
    text just before the generated part, and must start and end on token boundaries.
    """
    tokens: list[str] = [piece or "" for piece in (logprobs.tokens or [])]
    values: list[float | None] = list(logprobs.token_logprobs or [])
    generated = text[len(prompt):] if text.startswith(prompt) else ""
    ends = [0]
    for piece in tokens:
        ends.append(ends[-1] + len(piece))
    joined = "".join(tokens)
    label_end = len(joined) - len(generated)
    label_start = label_end - len(label)
    firsts = [i for i, at in enumerate(ends) if at == label_start]
    lasts = [i for i, at in enumerate(ends) if at == label_end]
    if not joined[:label_end].endswith(label) or not firsts or not lasts:
        raise EndpointError(f"could not find the tokens of label {label!r} in the echoed prompt",
                            hint="the endpoint must support echo=True with logprobs on /v1/completions")
    first = firsts[-1]  # skip empty pieces before the label
    last = next(i for i in lasts if i > first)
    picked = values[first:last]
    if len(picked) != last - first or any(value is None for value in picked):
        raise EndpointError(f"the endpoint returned no log-probability for label {label!r}",
                            hint="the endpoint must support echo=True with logprobs on /v1/completions")
    return float(sum(picked))  # type: ignore[arg-type]


def _top_at(response: Any) -> dict[str, float]:
    """The top log-probabilities of the first generated token, as {token text: logprob}."""
    choice = response.choices[0] if response.choices else None
    top = choice.logprobs.top_logprobs if choice is not None and choice.logprobs else None
    return dict(top[0]) if top and top[0] else {}


class OpenAIRater:
    """Rates through an OpenAI-compatible completions endpoint that returns logprobs.

    ``mode="top"`` (default) reads the labels from the top log-probabilities at the answer position
    (one request, plus one per multi-token label prefix such as ``tr`` for ``trivial``) and falls
    back to ``"echo"`` for a finding whose labels are not all among the ``top_k`` candidates.
    ``mode="echo"`` always scores the four full prompts through echoed prompt log-probabilities:
    exact for any tokenizer, but servers that compute echoed logprobs slowly make it costly.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str = "SIEVE_LLM_API_KEY", timeout: float = 60.0,
                 *, template: str = "chatml", retry: http.Policy = DEFAULT_POLICY,
                 batch_prompts: bool | None = None, model_id: str | None = None, mode: str = "top",
                 top_k: int = 20) -> None:
        if mode not in ("top", "echo"):
            raise EndpointError(f"unknown scoring mode {mode!r}", hint="use top or echo")
        self.mode = mode
        self.top_k = top_k
        if template not in TEMPLATES:
            raise EndpointError(f"unknown prompt template {template!r}", hint=f"use one of: {', '.join(TEMPLATES)}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.model_id = model_id or model
        self.template = template
        self.retry = replace(retry, timeout=timeout)
        self.counters = http.Counters()
        self._batch = batch_prompts  # None: try a list prompt once, fall back to one prompt per request
        key = os.environ.get(api_key_env) or "sieve-no-key"  # local servers accept any key
        self._client = openai.OpenAI(base_url=self.base_url, api_key=key, timeout=timeout, max_retries=0,
                                     http_client=http.httpx_client(openai.DefaultHttpxClient, self.retry,
                                                                   self.counters))
        self._where = f"completions endpoint {self.base_url}"

    def _complete(self, prompts: list[str], retry: http.Policy | None = None) -> tuple[list[Any], int]:
        def call() -> Any:
            return self._client.completions.create(model=self.model, prompt=prompts if len(prompts) > 1 else
                                                   prompts[0], echo=True, max_tokens=1, logprobs=1, temperature=0)

        response = call_with_retries(call, retry or self.retry, self._where, self.counters)
        choices = sorted(response.choices, key=lambda choice: choice.index)
        if len(choices) != len(prompts):
            raise EndpointError(f"{self._where} answered {len(choices)} choices for {len(prompts)} prompts")
        used = response.usage.prompt_tokens if response.usage else 0
        return choices, used

    def _choices(self, prompts: list[str]) -> tuple[list[Any], int]:
        """All four prompts in one request when the server allows it, else one per request."""
        if self._batch is not False:
            try:
                result = self._complete(prompts, replace(self.retry, retries=0) if self._batch is None else None)
                self._batch = True
                return result
            except EndpointError:
                if self._batch:
                    raise
                log.info("%s takes one prompt per request; scoring labels one by one", self._where)
                self._batch = False
        choices, used = [], 0
        for prompt in prompts:
            got, tokens = self._complete([prompt])
            choices += got
            used += tokens
        return choices, used

    def _top(self, prompt: str) -> tuple[dict[str, float], int]:
        def call() -> Any:
            return self._client.completions.create(model=self.model, prompt=prompt, max_tokens=1, temperature=0,
                                                   logprobs=self.top_k)

        response = call_with_retries(call, self.retry, self._where, self.counters)
        return _top_at(response), (response.usage.prompt_tokens if response.usage else 0)

    def _score_top(self, prompt: str) -> tuple[dict[str, float] | None, int]:
        """Label log-probabilities from top candidates; None when some label is not among them."""
        tables: dict[str, dict[str, float]] = {}
        used = 0
        scores: dict[str, float] = {}
        for label in LABELS:
            done, total = "", 0.0
            while done != label and len(done) < len(label) and len(tables) <= 2 * len(LABELS):
                if done not in tables:
                    tables[done], tokens = self._top(prompt + done)
                    used += tokens
                rest = label[len(done):]
                pieces = [piece for piece in tables[done] if piece and rest.startswith(piece)]
                if not pieces:
                    return None, used
                piece = max(pieces, key=len)
                total += tables[done][piece]
                done += piece
            if done != label:
                return None, used
            scores[label] = total
        return scores, used

    def _score_echo(self, prompt: str) -> tuple[dict[str, float], int]:
        prompts = [prompt + label for label in LABELS]
        choices, used = self._choices(prompts)
        return {label: label_logprob(choice.logprobs, choice.text or "", full, label)
                for label, full, choice in zip(LABELS, prompts, choices)}, used

    def rate_texts(self, pairs: Sequence[tuple[str, ...]]) -> list[Rating]:
        """Rate raw ``(code, review)`` pairs or ``(code, review, origin)`` triples."""
        ratings: list[Rating] = []
        for item in pairs:
            code, review, origin = (tuple(item) + ("",))[:3]
            parts = render(code, review, self.template, origin)
            scores, used = self._score_top(parts.text) if self.mode == "top" else (None, 0)
            if scores is None:
                scores, more = self._score_echo(parts.text)
                used += more
            ratings.append(make_rating(scores, model_id=self.model_id, truncated=parts.truncated, tokens=used))
        return ratings

    def rate(self, findings: Sequence[Finding]) -> list[Rating]:
        """One rating per finding, in order."""
        return self.rate_texts([(finding.code, finding.review, finding.origin()) for finding in findings])

    def explain(self, finding: Finding, rating: Rating, max_tokens: int = 48) -> str:
        """Greedy continuation after the chosen label; "" when the endpoint fails or says nothing usable."""
        if max_tokens <= 0:
            return ""
        prompt = render_explanation_request(render(finding.code, finding.review, self.template, finding.origin()),
                                            rating.severity)
        try:
            response = call_with_retries(lambda: self._client.completions.create(
                model=self.model, prompt=prompt, max_tokens=max_tokens, temperature=0,
                stop=["<|im_end|>", "<end_of_turn>"]), self.retry, self._where, self.counters)
            return clean_explanation(response.choices[0].text or "") if response.choices else ""
        except EndpointError as exc:
            log.info("explanation skipped: %s", exc)
            return ""
