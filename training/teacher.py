"""Teachers: who writes exams, grades the student's answers and writes training examples for weak spots.

Two kinds register in :data:`TEACHERS`:

* ``dataset`` — a labeled JSONL file acts as teacher: balanced seeded exams, grading against gold labels,
  curricula that sample more of what the student got wrong, optional cross-fitted soft labels;
* ``openai`` — any OpenAI-compatible chat endpoint: the model writes exam items, grades with proficiency
  1–10 and proposes new data (the ``openai`` SDK is imported only when such a teacher is built).

Both return the same :class:`Evaluation`, so the loop does not care which one it has.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bot.errors import EndpointError, TrainingError
from bot.http import MAX_WAIT
from bot.prompt import render_input
from bot.registry import Registry
from bot.severity import LABELS
from training.curriculum import areas_of, load_labeled, weighted_sample
from training.evaluate import Prediction, Report, evaluate, label_and_probs
from training.exam import item_key, stratified_sample
from training.examples import Example
from training.teacher_text import (  # re-exported: what the OpenAI teacher asks and accepts
    EVALUATION_SCHEMA,
    EXAM_EVALUATION_PROMPT,
    EXAM_PROMPT,
    ITEMS_SCHEMA,
    LEVEL_TEXT,
    TRAINING_PROMPT,
    _parse_json,
    soft_from_logprobs,
    validate_items,
)


@dataclass
class Evaluation:
    """A teacher's verdict on one exam."""

    proficiency: dict[str, int]  # "overall", "level:<label>", "source:<group>" → 1..10
    feedback: str
    weak_areas: list[str]  # worst first, e.g. ["level:major", "source:sven"]
    report: Report | None = None  # exact figures against the gold labels
    examples: list[Example] = field(default_factory=list)  # training items the teacher proposes
    usage: dict[str, Any] = field(default_factory=dict)  # tokens / cost spent grading (openai teacher)

    def to_dict(self) -> dict[str, Any]:
        return {"proficiency": self.proficiency, "feedback": self.feedback, "weak_areas": self.weak_areas,
                "report": self.report.summary() if self.report else None, "new_examples": len(self.examples),
                "usage": self.usage}


class Teacher(Protocol):
    """What the loop needs from a teacher."""

    name: str

    def write_exam(self, n: int, weaknesses: Sequence[str] = ()) -> list[Example]:
        """``n`` exam items (never held-out items)."""
        ...

    def grade(self, exam: Sequence[Example], answers: Sequence[Prediction]) -> Evaluation:
        """Grade the student's answers to ``exam`` (one per item, in order)."""
        ...

    def write_examples(self, weaknesses: Sequence[str], n: int) -> list[Example]:
        """``n`` training items aimed at ``weaknesses``."""
        ...


TEACHERS: Registry[Teacher] = Registry("teacher")


def to_proficiency(accuracy: float) -> int:
    """Map an accuracy in [0, 1] to the 1–10 proficiency scale the teacher prompt uses."""
    return max(1, min(10, 1 + math.floor(9 * accuracy + 0.5)))  # half up, not to even


def score_areas(exam: Sequence[Example], answers: Sequence[Prediction], *, min_items: int = 2,
                weak_below: int = 6) -> tuple[Report, dict[str, int], list[str]]:
    """Exact report, proficiency per area (level and source group), weak areas worst first.

    A level's proficiency is the student's recall on it; a source's is its accuracy there. Areas with
    fewer than ``min_items`` items are not judged (too little evidence).
    """
    report = evaluate(list(answers), list(exam))
    predicted = [label_and_probs(a)[0] for a in answers]
    hits: dict[str, list[bool]] = defaultdict(list)
    for example, label in zip(exam, predicted):
        for area in areas_of(example):
            hits[area].append(label == example.label)
    proficiency = {"overall": to_proficiency(report.accuracy)}
    for area, results in sorted(hits.items()):
        if len(results) >= min_items:
            proficiency[area] = to_proficiency(sum(results) / len(results))
    weak = sorted((a for a, p in proficiency.items() if a != "overall" and p < weak_below),
                  key=lambda a: (proficiency[a], a))
    return report, proficiency, weak


def describe(proficiency: dict[str, int], weak: list[str]) -> str:
    """One line of feedback text from proficiency figures."""
    if not weak:
        return f"overall proficiency {proficiency.get('overall')}/10; no weak area"
    listed = ", ".join(f"{a} {proficiency[a]}/10" for a in weak)
    return f"overall proficiency {proficiency.get('overall')}/10; weakest: {listed}"


@dataclass
class DatasetTeacherConfig:
    """A labeled JSONL file as teacher."""

    path: str = ""  # train.jsonl-shaped file (or a `sieve feedback export`)
    seed: int = 0  # exams and curricula are reproducible for a given seed
    wrong_boost: float = 4.0  # sampling weight of items like ones the student got wrong
    weak_boost: float = 2.0  # sampling weight of items in a weak level or source
    soft_labels: bool = False  # attach out-of-fold TF-IDF+LR probabilities (KD-LoRA distillation)
    folds: int = 5  # folds for the cross-fitted soft labels
    weak_below: int = 6  # an area with proficiency under this is weak


class DatasetTeacher:
    """Gold-labeled data acting as teacher. Held-out items (``exclude`` keys) are never handed out."""

    name = "dataset"

    def __init__(self, examples: Sequence[Example] | None = None, config: DatasetTeacherConfig | None = None,
                 *, exclude: set[str] | None = None) -> None:
        self.config = config or DatasetTeacherConfig()
        if examples is None:
            examples = load_labeled(Path(self.config.path))
        blocked = exclude or set()
        self.pool = [e for e in examples if item_key(e) not in blocked]
        self._round = 0
        self._wrong: list[Example] = []
        self._soft: dict[str, dict[str, float]] | None = None

    def write_exam(self, n: int, weaknesses: Sequence[str] = ()) -> list[Example]:
        self._round += 1
        return stratified_sample(self.pool, n, self.config.seed * 1000 + self._round)

    def grade(self, exam: Sequence[Example], answers: Sequence[Prediction]) -> Evaluation:
        report, proficiency, weak = score_areas(exam, answers, weak_below=self.config.weak_below)
        self._wrong = [e for e, a in zip(exam, answers) if label_and_probs(a)[0] != e.label]
        return Evaluation(proficiency=proficiency, feedback=describe(proficiency, weak), weak_areas=weak,
                          report=report)

    def write_examples(self, weaknesses: Sequence[str], n: int) -> list[Example]:
        """Sample ``n`` items, favouring the levels/sources the student got wrong and the weak areas."""
        weak = set(weaknesses)
        wrong_areas = {area for e in self._wrong for area in areas_of(e)}
        weights = []
        for example in self.pool:
            areas = set(areas_of(example))
            weight = 1.0
            if areas & wrong_areas:
                weight *= self.config.wrong_boost ** (len(areas & wrong_areas) / 2)
            if areas & weak:
                weight *= self.config.weak_boost
            weights.append(weight)
        picked = weighted_sample(self.pool, weights, n, self.config.seed * 1000 + 500 + self._round)
        return [self._with_soft(e) for e in picked] if self.config.soft_labels else list(picked)

    def _with_soft(self, example: Example) -> Example:
        if self._soft is None:
            from training.baselines import cross_fit_soft_labels

            soft = cross_fit_soft_labels(self.pool, folds=self.config.folds, seed=self.config.seed)
            self._soft = {item_key(e): p for e, p in zip(self.pool, soft)}
        probs = self._soft.get(item_key(example))
        return Example(code=example.code, review=example.review, label=example.label, weight=example.weight,
                       soft=probs or None, acceptable=example.acceptable, source=example.source, id=example.id,
                       lang=example.lang, meta=dict(example.meta))


TEACHERS.add("dataset", DatasetTeacher)




# ----------------------------------------------------------------------------- OpenAI-compatible teacher

class TeacherBudgetSpent(TrainingError):
    """The teacher's token budget ran out; ``partial`` holds what was produced before it did."""

    def __init__(self, message: str, *, partial: Any = None, hint: str | None = None) -> None:
        self.partial = partial
        super().__init__(message, hint=hint)


@dataclass
class OpenAITeacherConfig:
    """An OpenAI-compatible chat endpoint as teacher."""

    base_url: str = "http://127.0.0.1:8000/v1"  # any OpenAI-compatible server (vLLM, llama.cpp server, NIM…)
    model: str = "teacher"  # model name the endpoint serves
    api_key_env: str = "SIEVE_TEACHER_API_KEY"  # environment variable holding the key (never printed)
    max_tokens: int = 200_000  # token budget over the whole run (prompt + completion)
    price_prompt_per_m: float = 0.0  # $ per 1M prompt tokens, for the cost figure
    price_completion_per_m: float = 0.0  # $ per 1M completion tokens
    max_retries: int = 3  # extra attempts on broken JSON, 429 and 5xx
    backoff_s: float = 1.0  # first wait between attempts (doubles; Retry-After wins when given)
    max_wait_s: float = MAX_WAIT  # the one cap on any wait (bot.http); a longer Retry-After gives up
    timeout_s: float = 120.0  # per request
    temperature: float = 0.7
    batch: int = 10  # items asked for per request
    soft_labels: bool = False  # ask for top-logprobs per item and keep them as soft labels
    top_logprobs: int = 5
    seed: int = 0


@dataclass
class Usage:
    """Tokens spent and what came of them; ``cost`` uses the configured prices."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    retries: int = 0
    rejected_items: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def minus(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, k) - getattr(other, k) for k in
                       ("prompt_tokens", "completion_tokens", "calls", "retries", "rejected_items")))

    def to_dict(self, config: OpenAITeacherConfig) -> dict[str, Any]:
        cost = (self.prompt_tokens * config.price_prompt_per_m + self.completion_tokens
                * config.price_completion_per_m) / 1e6
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total, "calls": self.calls, "retries": self.retries,
                "rejected_items": self.rejected_items, "cost_usd": round(cost, 6)}


class OpenAITeacher:
    """An OpenAI-compatible chat model as teacher, with retries, validation, token accounting and a budget."""

    name = "openai"

    def __init__(self, config: OpenAITeacherConfig | None = None, *, exclude: set[str] | None = None) -> None:
        import openai  # the SDK is needed only when this teacher is used

        self.config = config or OpenAITeacherConfig()
        self._openai = openai
        key = os.environ.get(self.config.api_key_env) or "unset"
        from bot import http

        self.counters = http.Counters()
        self._client = openai.OpenAI(base_url=self.config.base_url, api_key=key, max_retries=0,
                                     timeout=self.config.timeout_s,
                                     http_client=http.httpx_client(openai.DefaultHttpxClient, self._policy(),
                                                                   self.counters))
        self.usage = Usage()
        self._mark = Usage()
        self._seen: set[str] = set(exclude or ())
        self.rejections: list[str] = []

    # -- accounting -------------------------------------------------------------------------------------
    def round_usage(self) -> dict[str, Any]:
        """Usage since the previous call (one loop round), with its cost."""
        delta, self._mark = self.usage.minus(self._mark), Usage(**vars(self.usage))
        return delta.to_dict(self.config)

    def _check_budget(self, partial: Any = None) -> None:
        if self.usage.total >= self.config.max_tokens:
            raise TeacherBudgetSpent(f"teacher token budget spent ({self.usage.total} of "
                                     f"{self.config.max_tokens} tokens)", partial=partial,
                                     hint="raise the teacher's max_tokens to continue; what was produced is kept")

    # -- transport ------------------------------------------------------------------------------------
    def _policy(self) -> Any:
        from bot import http

        return http.Policy(retries=self.config.max_retries, backoff=self.config.backoff_s,
                           max_wait=self.config.max_wait_s, timeout=self.config.timeout_s)

    def _answer(self, exc: Exception) -> Any:
        """Read an openai SDK exception as a neutral answer for bot.http (None: not an HTTP failure)."""
        from bot import http

        errors = self._openai
        if isinstance(exc, errors.APIStatusError):
            return http.Answer(exc.status_code, dict(exc.response.headers) if exc.response is not None else {})
        if isinstance(exc, errors.APITimeoutError):
            return http.Answer(failure="timeout", message=str(exc.__cause__ or exc))
        if isinstance(exc, errors.APIConnectionError):
            return http.Answer(failure="connection", message=type(exc).__name__)
        return None

    def _fail(self, answer: Any, verdict: Any, attempts: int) -> Exception:
        if verdict.kind == "refused":
            return EndpointError(f"teacher endpoint refused the request (HTTP {answer.status})", status=answer.status,
                                 hint=f"check the teacher's model name, key (${self.config.api_key_env}) and base URL")
        last = f"HTTP {answer.status}" if answer.status else f"no answer ({answer.message or answer.failure})"
        return EndpointError(f"teacher endpoint failed after {attempts} attempts: {last}", status=answer.status,
                             hint="check that the endpoint is up; raise max_retries or max_wait_s")

    def _create(self, kwargs: dict[str, Any]) -> Any:
        """One chat completion under Sieve's HTTP policy (retries, waits, deadline, counters)."""
        from bot import http

        retries_before = self.counters.retries
        try:
            return http.run(lambda: self._client.chat.completions.create(**kwargs), self._policy(),
                            classify=self._answer, fail=self._fail, counters=self.counters)
        finally:
            self.usage.retries += self.counters.retries - retries_before

    def _request(self, messages: list[dict[str, str]], *, schema: dict | None = None, partial: Any = None,
                 **extra: Any) -> tuple[Any, Any]:
        """One chat completion (parsed as JSON when ``schema`` is given); a broken JSON answer is asked again."""
        for attempt in range(self.config.max_retries + 1):
            self._check_budget(partial)
            kwargs: dict[str, Any] = {"model": self.config.model, "messages": messages,
                                      "temperature": self.config.temperature, **extra}
            if schema is not None:
                kwargs["response_format"] = {"type": "json_schema",
                                             "json_schema": {"name": "answer", "strict": True, "schema": schema}}
            response = self._create(kwargs)
            self.usage.calls += 1
            if response.usage is not None:
                self.usage.prompt_tokens += response.usage.prompt_tokens or 0
                self.usage.completion_tokens += response.usage.completion_tokens or 0
            if schema is None:
                return None, response
            parsed = _parse_json(response.choices[0].message.content or "")
            if parsed is not None:
                return parsed, response
            if attempt < self.config.max_retries:
                self.usage.retries += 1
        raise EndpointError(f"teacher endpoint failed after {self.config.max_retries + 1} attempts: the answer was "
                            "not valid JSON", hint="check that the endpoint supports JSON output; raise max_retries")

    # -- items ----------------------------------------------------------------------------------------
    def _items(self, n: int, prompt: str, **fields: Any) -> list[Example]:
        """Ask in batches until ``n`` valid new items (or too many attempts); budget errors keep the partial."""
        kept: list[Example] = []
        for _ in range(max(1, math.ceil(n / self.config.batch)) * (self.config.max_retries + 1)):
            if len(kept) >= n:
                break
            want = min(self.config.batch, n - len(kept))
            text = prompt.format(n=want, **fields)
            data, _ = self._request([{"role": "user", "content": text}], schema=ITEMS_SCHEMA, partial=kept)
            items, rejected = validate_items(data.get("items") if isinstance(data, dict) else None, self._seen,
                                             self.config.model)
            self.usage.rejected_items += len(rejected)
            self.rejections.extend(rejected)
            kept.extend(items[: n - len(kept)])
        if self.config.soft_labels:
            kept = [self._soft(e) for e in kept]
        if not kept:
            raise TrainingError("the teacher produced no usable items", hint="see rejections; try another model")
        return kept

    def write_exam(self, n: int, weaknesses: Sequence[str] = ()) -> list[Example]:
        focus = f" Put extra items on these weak areas: {', '.join(weaknesses)}." if weaknesses else ""
        return self._items(n, EXAM_PROMPT, focus=focus)

    def write_examples(self, weaknesses: Sequence[str], n: int) -> list[Example]:
        focus = ", ".join(weaknesses) or "all four levels evenly"
        return self._items(n, TRAINING_PROMPT, focus=focus)

    def grade(self, exam: Sequence[Example], answers: Sequence[Prediction], *, n_examples: int = 10) -> Evaluation:
        """The teacher's verdict; exact figures come from the gold labels, opinions from the teacher."""
        report, local, local_weak = score_areas(exam, answers)
        lines = []
        for i, (example, answer) in enumerate(zip(exam, answers)):
            label, probs = label_and_probs(answer)
            confidence = probs.get(label) if probs else None
            block, _ = render_input(example.code, example.review, str(example.meta.get("origin") or ""))
            conf = f" (confidence {confidence:.2f})" if confidence is not None else ""
            lines.append(f"[{i}] {block}\ncorrect: {example.label}; student: {label}{conf}")
        prompt = EXAM_EVALUATION_PROMPT.format(n=n_examples, exam="\n".join(lines))
        fallback = Evaluation(proficiency=local, feedback=describe(local, local_weak), weak_areas=local_weak,
                              report=report)
        data, _ = self._request([{"role": "user", "content": prompt}], schema=EVALUATION_SCHEMA, partial=fallback)
        data = data if isinstance(data, dict) else {}
        proficiency = dict(local)
        for key, value in (data.get("proficiency") or {}).items():
            if isinstance(value, (int, float)) and (key == "overall" or key in LABELS):
                proficiency["overall" if key == "overall" else f"level:{key}"] = max(1, min(10, int(value)))
        weak = [f"level:{w.strip().lower()}" if w.strip().lower() in LABELS else str(w).strip()
                for w in data.get("weak_areas") or [] if isinstance(w, str) and w.strip()]
        weak += [w for w in local_weak if w not in weak]
        examples, rejected = validate_items(data.get("examples"), self._seen, self.config.model)
        self.usage.rejected_items += len(rejected)
        self.rejections.extend(rejected)
        return Evaluation(proficiency=proficiency, feedback=str(data.get("feedback") or describe(local, local_weak)),
                          weak_areas=weak, report=report, examples=examples, usage=self.usage.to_dict(self.config))

    def _soft(self, example: Example) -> Example:
        """Attach the teacher's own label distribution from top-logprobs, when the endpoint gives them."""
        block, _ = render_input(example.code, example.review, str(example.meta.get("origin") or ""))
        messages = [{"role": "user", "content": "Severity levels:\n" + LEVEL_TEXT + block +
                     "\nAnswer with the level name only."}]
        _, response = self._request(messages, logprobs=True, top_logprobs=self.config.top_logprobs, max_tokens=1)
        example.soft = soft_from_logprobs(response) or example.soft
        return example


TEACHERS.add("openai", OpenAITeacher)
