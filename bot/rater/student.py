"""The student, apart from any backend: what a model folder means for rating, in one object.

A model folder's manifest fixes how its adapter must be asked and how its answer is read: the prompt version
and template it was trained on, how much code it reads, a per-label bias fitted on its exam, and a lexical
prior it is combined with. None of that depends on where the weights run, so it lives here, once:

- :class:`Student` renders a finding into prompt text (cutting it further when a backend says it does not fit)
  and turns the four labels' log-probabilities into a :class:`~bot.findings.Rating`;
- a :class:`Backend` only turns rendered prompt texts into those log-probabilities (llama.cpp in-process,
  an OpenAI-compatible server), and generates the short explanation;
- :class:`StudentRater` joins the two into the :class:`~bot.rater.base.Rater` the app uses.

So every backend serves every student the same way; a backend that cannot score a student exactly refuses in
:meth:`Backend.check` with one line instead of rating with something close.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.errors import ConfigError, ModelError, SieveError
from bot.findings import Finding, Rating
from bot.prompt import (
    MAX_CODE_CHARS,
    MAX_REVIEW_CHARS,
    PROMPT_VERSION,
    TEMPLATES,
    PromptParts,
    check_version,
    expert_text,
    render,
    render_explanation_request,
    truncate_code,
    truncate_review,
    valid_code_chars,
)
from bot.rater.base import clean_explanation, make_rating
from bot.rater.lexical import LEXICAL_SCOPES, LexicalPrior, combine
from bot.severity import LABELS

log = logging.getLogger(__name__)

#: Tighter caps tried, in order, when a prompt does not fit the context window (code first: the
#: commented line is at the end of the excerpt and survives every cut).
CODE_CUTS = (MAX_CODE_CHARS, 60, 0)
REVIEW_CUTS = (MAX_REVIEW_CHARS, 300, 150, 60)


@dataclass(frozen=True)
class Scored:
    """What a backend found for one prompt: each label's sequence log-probability after it, and the cost."""

    logprobs: dict[str, float]
    tokens: int


class Backend(Protocol):
    """Turns rendered prompts into label log-probabilities; knows nothing of manifests, bias or priors."""

    name: str

    def check(self, student: Student) -> None:
        """Refuse (a SieveError, one line) a student this backend cannot score exactly."""
        ...

    def fits(self, text: str) -> bool:
        """Whether ``text`` and the longest label fit the backend's context window."""
        ...

    def score(self, prompts: Sequence[str]) -> list[Scored]:
        """Log P(label tokens | prompt) for each label, per prompt; prompts end where the label begins."""
        ...

    def generate(self, prompt: str, max_tokens: int) -> str:
        """Greedy continuation of ``prompt`` (at most ``max_tokens``, first line); "" when nothing usable."""
        ...

    def close(self) -> None:
        ...


@dataclass(frozen=True)
class Student:
    """A student as its manifest describes it. ``label_bias`` is added to the label scores before the softmax;
    ``lexical`` (with ``lexical_weight`` in [0, 1]) is combined with the result as a product of experts."""

    model_id: str
    template: str = "chatml"
    prompt_version: str = PROMPT_VERSION
    code_chars: int = MAX_CODE_CHARS
    label_bias: Mapping[str, float] | None = None
    lexical: LexicalPrior | None = field(default=None, compare=False)
    lexical_weight: float = 0.0
    #: which findings the prior reads: "all", or "tools" (only findings with an analyser origin; a free-text
    #: review — a person's or an LLM reviewer's — is rated by the student alone: docs/model.md, "lexical prior")
    lexical_scope: str = "all"
    #: the name a server knows the student by (a model folder's name); "" when it has none
    name: str = ""

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise ConfigError(f"unknown prompt template {self.template!r}",
                              hint=f"use one of: {', '.join(TEMPLATES)}")
        check_version(self.prompt_version)
        if not valid_code_chars(self.code_chars):
            raise ConfigError(f"code_chars must be a whole number >= 0, not {self.code_chars!r}",
                              hint="0 rates on the review text alone; the packaged prompt keeps 100")
        if not 0.0 <= self.lexical_weight <= 1.0:
            raise ConfigError(f"lexical_weight must be within [0, 1], not {self.lexical_weight!r}",
                              hint="0 rates with the student alone; the manifest records the fitted weight")
        if self.lexical_scope not in LEXICAL_SCOPES:
            raise ConfigError(f"lexical scope must be one of {', '.join(LEXICAL_SCOPES)}, not {self.lexical_scope!r}",
                              hint="\"tools\": the prior reads analyser findings only; \"all\": every finding")

    @classmethod
    def from_options(cls, *, model_id: str, template: str = "chatml", prompt_version: str = PROMPT_VERSION,
                     code_chars: int = MAX_CODE_CHARS, label_bias: Mapping[str, float] | None = None,
                     lexical_path: str | os.PathLike[str] | None = None, lexical_weight: float = 0.0,
                     lexical_sha256: str | None = None, lexical_scope: str = "all", student_name: str = "",
                     **_weights: Any) -> Student:
        """A student from :meth:`bot.models.ModelInfo.rater_options` (the weight paths, for backends that load
        weights, are ignored here). A prior with weight 0 is not even read."""
        if not 0.0 <= lexical_weight <= 1.0:
            raise ConfigError(f"lexical_weight must be within [0, 1], not {lexical_weight!r}",
                              hint="0 rates with the student alone; the manifest records the fitted weight")
        weight = float(lexical_weight) if lexical_path else 0.0
        prior = LexicalPrior.load(lexical_path, lexical_sha256) if lexical_path and weight > 0 else None
        return cls(model_id=model_id, template=template, prompt_version=prompt_version, code_chars=code_chars,
                   label_bias=dict(label_bias) if label_bias else None, lexical=prior,
                   lexical_weight=weight if prior else 0.0, lexical_scope=lexical_scope, name=student_name)

    # -- rendering ---------------------------------------------------------------------------------

    def candidates(self, code: str, review: str, origin: str = "") -> Iterator[tuple[PromptParts, bool]]:
        """The prompt at the model's own caps, then with tighter and tighter cuts (code first, then review)."""
        code_cuts = sorted({self.code_chars, *(c for c in CODE_CUTS if c < self.code_chars)}, reverse=True)
        for review_cap in REVIEW_CUTS:
            for code_cap in code_cuts:
                cut_code, code_cut = truncate_code(code, code_cap) if code_cap else ("", bool(code))
                cut_review, review_cut = truncate_review(review, review_cap, self.prompt_version)
                parts = render(cut_code, cut_review, self.template, origin, self.prompt_version)
                yield parts, parts.truncated or code_cut or review_cut

    def fit(self, code: str, review: str, origin: str, fits: Callable[[str], bool]) -> tuple[PromptParts, bool]:
        """The first candidate prompt that ``fits`` (a backend's context check); a ModelError when none does."""
        for parts, truncated in self.candidates(code, review, origin):
            if fits(parts.text):
                return parts, truncated
        raise ModelError("the task prompt does not fit the context window even without the input",
                         hint="raise the rater's n_ctx (2048 is enough for the packaged models)")

    # -- reading the answer ------------------------------------------------------------------------

    def combine(self, logprobs: Mapping[str, float], review: str, origin: str = "", path: str = "") -> dict[str, float]:
        """The label scores the rating is the softmax of: bias added, then the lexical prior combined (a prior
        that a team's feedback gave a folder block also reads the finding's ``path``)."""
        scores = {label: float(logprobs[label]) for label in LABELS}
        if self.label_bias:
            scores = {label: scores[label] + self.label_bias.get(label, 0.0) for label in LABELS}
        if self.lexical is not None and (origin or self.lexical_scope == "all"):
            prior = self.lexical.probabilities(expert_text(review, origin, self.prompt_version), path, origin)
            scores = combine(scores, prior, self.lexical_weight)
        return scores

    def rating(self, scored: Scored, review: str, origin: str, truncated: bool, path: str = "") -> Rating:
        return make_rating(self.combine(scored.logprobs, review, origin, path), model_id=self.model_id,
                           truncated=truncated, tokens=scored.tokens, prompt_version=self.prompt_version)


class StudentRater:
    """A student served by a backend: the :class:`~bot.rater.base.Rater` every backend registers."""

    def __init__(self, student: Student, backend: Backend) -> None:
        backend.check(student)
        self.student = student
        self.backend = backend

    @property
    def model_id(self) -> str:
        return self.student.model_id

    @property
    def template(self) -> str:
        return self.student.template

    @property
    def prompt_version(self) -> str:
        return self.student.prompt_version

    def rate_texts(self, pairs: Sequence[tuple[str, ...]]) -> list[Rating]:
        """Rate raw ``(code, review)`` pairs, ``(code, review, origin)`` triples or ``(code, review, origin, path)``
        rows, all in one backend call (a backend may evaluate them together). The student never reads the path;
        only a lexical prior with a folder block does."""
        items = [(tuple(item) + ("", ""))[:4] for item in pairs]
        fitted = [self.student.fit(code, review, origin, self.backend.fits) for code, review, origin, _ in items]
        scored = self.backend.score([parts.text for parts, _ in fitted])
        return [self.student.rating(result, review, origin, truncated, path)
                for (_, review, origin, path), (_, truncated), result in zip(items, fitted, scored)]

    def rate(self, findings: Sequence[Finding]) -> list[Rating]:
        """One rating per finding, in order."""
        return self.rate_texts([(finding.code, finding.review, finding.origin(), finding.anchor.path)
                                for finding in findings])

    def explain(self, finding: Finding, rating: Rating, max_tokens: int = 48) -> str:
        """A one-sentence reason for the chosen label; "" when the backend says nothing usable."""
        if max_tokens <= 0:
            return ""
        try:
            parts, _ = self.student.fit(finding.code, finding.review, finding.origin(), self.backend.fits)
            text = self.backend.generate(render_explanation_request(parts, rating.severity), max_tokens)
        except (SieveError, RuntimeError, ValueError, UnicodeError) as exc:
            log.info("explanation skipped: %s", exc)
            return ""
        return clean_explanation(text)

    def close(self) -> None:
        self.backend.close()
