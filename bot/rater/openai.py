"""The server backend: label log-probabilities from any OpenAI-compatible *completions* endpoint.

For llama-cpp-python's server, vLLM serving base + LoRA, or anything else that answers ``/v1/completions``
with log-probabilities. The student (:mod:`bot.rater.student`) renders the prompt, cuts it to fit and reads the
answer (bias, lexical prior) exactly as in-process; this module only asks the server for

    log P(label tokens | prompt)   for each of the four labels.

Scoring modes, each exact where it answers at all:

- ``bias`` — for each label token, one request with ``logit_bias`` forcing that token and ``max_tokens=1``;
  the server reports the forced token's log-probability *before* the bias (llama-cpp-python does; vLLM does with
  its default raw log-probabilities). Needs the server's tokenizer endpoint to learn the label token ids
  (``/extras/tokenize`` in llama-cpp-python, ``/tokenize`` in vLLM). Cost: one short request per label token,
  each reusing the server's cached prompt.
- ``echo`` — the four prompts ``prompt + label`` with ``echo=True``; the echoed log-probabilities of the
  label's own tokens are summed. Standard, but llama-cpp-python computes echoed log-probabilities by sorting
  the whole vocabulary once per prompt token in Python: minutes per finding for a 262k-token vocabulary.
- ``top`` — the labels read from the top log-probabilities at the answer position (and after each piece of a
  multi-token label), ``echo`` for a finding whose labels are not all among the ``top_k`` candidates.
- ``auto`` — ``bias`` where the server offers a tokenizer endpoint, otherwise ``top``.

A server whose answers show a mode cannot be exact (the forced token's log-probability already biased, a label
tokenized differently after the prompt, no log-probabilities at all) is refused with one line, never
approximated. A server listing several models must list the one asked for (llama-cpp-python would otherwise
answer with its first model, silently). The API key is read from the environment only and never appears in
a message.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import openai

from bot import http
from bot.errors import EndpointError, RateLimitError
from bot.prompt import ANSWER_PREFIX, MAX_CODE_CHARS, PROMPT_VERSION
from bot.rater.student import Scored, Student, StudentRater
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


MODES = ("auto", "bias", "top", "echo")
#: Added to a forced token's logit: enough to make it the greedy choice over any vocabulary.
FORCE = 100.0
#: Tokens a label may add after the prompt, assumed until the server's tokenizer says (for the fitting bound).
LABEL_ROOM = 8


class OpenAIBackend:
    """Label log-probabilities from an OpenAI-compatible completions endpoint (see the module docstring).

    ``model`` is the name the server knows the student by ("": the student's own name, so a server that
    serves several teams' students picks each by its folder name). ``n_ctx`` is the server's context
    window when the server does not say (vLLM does): prompts are cut to it exactly as in-process.
    """

    name = "openai"

    def __init__(self, base_url: str, model: str = "", api_key_env: str = "SIEVE_LLM_API_KEY",
                 timeout: float = 60.0, *, retry: http.Policy = DEFAULT_POLICY, batch_prompts: bool | None = None,
                 mode: str = "top", top_k: int = 20, n_ctx: int = 2048) -> None:
        if mode not in MODES:
            raise EndpointError(f"unknown scoring mode {mode!r}", hint=f"use one of: {', '.join(MODES)}")
        self.mode = mode
        self.top_k = top_k
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.n_ctx = n_ctx
        self.retry = replace(retry, timeout=timeout)
        self.counters = http.Counters()
        self._batch = batch_prompts  # None: try a list prompt once, fall back to one prompt per request
        key = os.environ.get(api_key_env) or "sieve-no-key"  # local servers accept any key
        self._client = openai.OpenAI(base_url=self.base_url, api_key=key, timeout=timeout, max_retries=0,
                                     http_client=http.httpx_client(openai.DefaultHttpxClient, self.retry,
                                                                   self.counters))
        self._where = f"completions endpoint {self.base_url}"
        self._tokenizer: str | None = None  # the tokenizer endpoint that answered, once known
        self._label_ids: dict[str, list[int]] | None = None

    # -- the server ----------------------------------------------------------------------------

    def _root(self) -> str:
        return self.base_url.removesuffix("/v1")

    def _once(self, call: Callable[[], T]) -> T | None:
        """One attempt, no retries; None for any failure (used to learn what a server offers)."""
        try:
            return call_with_retries(call, replace(self.retry, retries=0), self._where, self.counters)
        except EndpointError:
            return None

    def check(self, student: Student) -> None:
        """Pick the served name; refuse a name a multi-model server does not list (it would answer with
        another model). A server that lists nothing, or one model, is taken at its word."""
        self.model = self.model or student.name
        if not self.model:
            raise EndpointError(f"{self._where}: no model name to ask for",
                                hint="pass --rater-model NAME (the name the server serves the student under)")
        listing = self._once(lambda: self._client.get("/models", cast_to=object))
        served = [str(m.get("id")) for m in (listing or {}).get("data", []) if isinstance(m, dict)] \
            if isinstance(listing, dict) else []
        if len(served) > 1 and self.model not in served:
            raise EndpointError(f"{self._where} does not serve model {self.model!r} (it serves: {', '.join(served)})",
                                hint="name one of those with --rater-model, or add the student to the server")
        for entry in (listing or {}).get("data", []) if isinstance(listing, dict) else []:
            if isinstance(entry, dict) and entry.get("id") == self.model and entry.get("max_model_len"):
                self.n_ctx = int(entry["max_model_len"])

    def _tokenize(self, text: str) -> list[int] | None:
        """Token ids of ``text`` (with the model's BOS) from the server's tokenizer endpoint; None without one."""
        ways = {f"{self._root()}/extras/tokenize": {"input": text, "model": self.model},  # llama-cpp-python
                f"{self._root()}/tokenize": {"prompt": text, "model": self.model}}  # vLLM
        for url, body in ways.items():
            if self._tokenizer not in (None, url):
                continue
            answer = self._once(lambda url=url, body=body: self._client.post(url, body=body, cast_to=object))
            tokens = answer.get("tokens") if isinstance(answer, dict) else None
            if isinstance(tokens, list) and all(isinstance(t, int) for t in tokens):
                self._tokenizer = url
                return tokens
        return None

    def _labels(self) -> dict[str, list[int]] | None:
        """Each label's token ids as they follow the answer prefix, from the server's own tokenizer."""
        if self._label_ids is None:
            head = self._tokenize(ANSWER_PREFIX)
            if head is None:
                return None
            ids: dict[str, list[int]] = {}
            for label in LABELS:
                joint = self._tokenize(ANSWER_PREFIX + label) or []
                if joint[: len(head)] != head or len(joint) == len(head):
                    raise EndpointError(f"{self._where}: the server's tokenizer splits the answer prefix "
                                        f"differently before {label!r}",
                                        hint="use scoring mode echo (rater.openai.mode) for this model")
                ids[label] = joint[len(head):]
            self._label_ids = ids
        return self._label_ids

    def _resolved_mode(self) -> str:
        if self.mode == "auto":
            self.mode = "bias" if self._labels() is not None else "top"
        if self.mode == "bias" and self._labels() is None:
            raise EndpointError(f"{self._where} has no tokenizer endpoint, which scoring mode bias needs",
                                hint="use mode echo or top (rater.openai.mode), or a llama-cpp-python or vLLM server")
        return self.mode

    def fits(self, text: str) -> bool:
        room = max((len(ids) for ids in (self._label_ids or {}).values()), default=LABEL_ROOM)
        if len(text.encode("utf-8")) + 1 + room <= self.n_ctx:
            return True  # a token spans at least one byte (BOS aside): no need to ask
        tokens = self._tokenize(text)
        return tokens is None or len(tokens) + room <= self.n_ctx

    def score(self, prompts: Sequence[str]) -> list[Scored]:
        mode = self._resolved_mode()
        out = []
        for prompt in prompts:
            if mode == "bias":
                out.append(self._score_bias(prompt))
                continue
            scores, used = self._score_top(prompt) if mode == "top" else (None, 0)
            if scores is None:
                scores, more = self._score_echo(prompt)
                used += more
            out.append(Scored(scores, used))
        return out

    # -- mode bias -----------------------------------------------------------------------------

    def _forced(self, prompt: str, token: int) -> tuple[float, str, int]:
        """(log-probability, text, prompt tokens) of ``token`` forced as the one generated token."""
        def call() -> Any:
            return self._client.completions.create(model=self.model, prompt=prompt, max_tokens=1, temperature=0,
                                                   logprobs=1, logit_bias={str(token): FORCE})

        response = call_with_retries(call, self.retry, self._where, self.counters)
        choice = response.choices[0] if response.choices else None
        values = list(choice.logprobs.token_logprobs or []) if choice is not None and choice.logprobs else []
        if not values or values[0] is None:
            raise EndpointError(f"{self._where} returned no log-probability for the generated token",
                                hint="the server must return logprobs (start llama-cpp-python with logits_all on)")
        return float(values[0]), choice.text or "", response.usage.prompt_tokens if response.usage else -1

    def _score_bias(self, prompt: str) -> Scored:
        ids = self._labels() or {}
        seen: dict[tuple[str, int], tuple[float, str, int]] = {}
        scores: dict[str, float] = {}
        firsts: dict[int, float] = {}
        base = -1
        for label in LABELS:
            done, total = "", 0.0
            for k, token in enumerate(ids[label]):
                if (done, token) not in seen:
                    seen[done, token] = self._forced(prompt + done, token)
                value, text, read = seen[done, token]
                base = read if k == 0 else base
                if not text or not label[len(done):].startswith(text):
                    raise self._inexact(f"it did not generate the forced token of {label!r} (got {text!r}): "
                                        "logit_bias is ignored")
                if k and base >= 0 and read >= 0 and read != base + k:
                    raise self._inexact(f"it tokenizes the prompt followed by {done!r} differently from the "
                                        "prompt and then the label")
                if k == 0:
                    firsts[token] = value
                total += value
                done += text
            scores[label] = total
        if math.fsum(math.exp(v) for v in firsts.values()) > 1.0 + 1e-3:
            raise self._inexact("it reports log-probabilities after logit_bias (they add up to more than 1)")
        return Scored(scores, max(base, 0))

    def _inexact(self, why: str) -> EndpointError:
        return EndpointError(f"{self._where} cannot score the labels exactly in mode bias: {why}",
                             hint="serve raw log-probabilities (vLLM: logprobs mode raw_logprobs) or use mode echo")

    # -- modes top and echo --------------------------------------------------------------------

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

    # -- explanations --------------------------------------------------------------------------

    def generate(self, prompt: str, max_tokens: int) -> str:
        """Greedy continuation; "" when the endpoint fails (the explanation is then left out)."""
        try:
            response = call_with_retries(lambda: self._client.completions.create(
                model=self.model, prompt=prompt, max_tokens=max_tokens, temperature=0,
                stop=["<|im_end|>", "<end_of_turn>"]), self.retry, self._where, self.counters)
        except EndpointError as exc:
            log.info("explanation skipped: %s", exc)
            return ""
        return (response.choices[0].text or "") if response.choices else ""

    def close(self) -> None:
        self._client.close()


class OpenAIRater(StudentRater):
    """A student rated through a completions server: :class:`Student` + :class:`OpenAIBackend`.

    Takes the backend's settings and the student's options (:meth:`bot.models.ModelInfo.rater_options`: prompt
    version, template, code budget, label bias, lexical prior); the weight paths among those name what the
    *server* must load, so they are not read here. Without student options it rates as a bare chat model
    with the current prompt (what a base model behind a server is).
    """

    def __init__(self, base_url: str, model: str = "", api_key_env: str = "SIEVE_LLM_API_KEY", timeout: float = 60.0,
                 *, template: str = "chatml", retry: http.Policy = DEFAULT_POLICY, batch_prompts: bool | None = None,
                 model_id: str | None = None, mode: str = "top", top_k: int = 20, n_ctx: int = 2048,
                 prompt_version: str = PROMPT_VERSION, code_chars: int = MAX_CODE_CHARS,
                 label_bias: Mapping[str, float] | None = None, lexical_path: str | None = None,
                 lexical_weight: float = 0.0, lexical_sha256: str | None = None, lexical_scope: str = "all",
                 student_name: str = "", **weights: Any) -> None:
        student = Student.from_options(model_id=model_id or model or student_name, template=template,
                                       prompt_version=prompt_version, code_chars=code_chars, label_bias=label_bias,
                                       lexical_path=lexical_path, lexical_weight=lexical_weight,
                                       lexical_sha256=lexical_sha256, lexical_scope=lexical_scope,
                                       student_name=student_name)
        backend = OpenAIBackend(base_url, model, api_key_env, timeout, retry=retry, batch_prompts=batch_prompts,
                                mode=mode, top_k=top_k, n_ctx=n_ctx)
        super().__init__(student, backend)

    base_url = property(lambda self: self.backend.base_url)
    model = property(lambda self: self.backend.model)
    counters = property(lambda self: self.backend.counters)
