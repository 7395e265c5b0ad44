"""What every rater promises, and the arithmetic they share.

A rater turns findings into :class:`~bot.findings.Rating` objects by *scoring* the four severity
labels after the versioned task prompt (``bot.prompt``) — never by parsing free text — so a rating is
always a valid probability distribution. Raters register by name in :data:`RATERS`; the app picks one
from configuration and tests register fakes the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from bot.findings import Finding, Rating
from bot.prompt import PROMPT_VERSION
from bot.registry import Registry
from bot.severity import LABELS, argmax_label


@runtime_checkable
class Rater(Protocol):
    """A severity rater. ``model_id`` names the weights (base + adapter) so markers can record it."""

    model_id: str

    def rate(self, findings: Sequence[Finding]) -> list[Rating]:
        """One rating per finding, in order."""
        ...

    def rate_texts(self, pairs: Sequence[tuple[str, str]]) -> list[Rating]:
        """Rate raw ``(code, review)`` pairs; training evaluates exams through exactly this."""
        ...

    def explain(self, finding: Finding, rating: Rating, max_tokens: int = 48) -> str:
        """A one-sentence reason for the chosen label ("" when the model says nothing usable)."""
        ...


RATERS: Registry[Rater] = Registry("rater")


def distribution(seq_logprobs: dict[str, float]) -> dict[str, float]:
    """Softmax over the four labels' sequence log-probabilities.

    Renormalising over the four answers is what makes them comparable: the model's mass on
    anything that is not a label is discarded. Subtracting the max keeps it stable for very
    negative log-probabilities.
    """
    top = max(seq_logprobs[label] for label in LABELS)
    weights = {label: math.exp(seq_logprobs[label] - top) for label in LABELS}
    total = math.fsum(weights.values())
    return {label: weights[label] / total for label in LABELS}


def make_rating(seq_logprobs: dict[str, float], *, model_id: str, truncated: bool, tokens: int,
                prompt_version: str = PROMPT_VERSION) -> Rating:
    """Build a Rating from per-label sequence log-probabilities."""
    probabilities = distribution(seq_logprobs)
    return Rating(probabilities=probabilities, severity=argmax_label(probabilities).label, model_id=model_id,
                  prompt_version=prompt_version, truncated=truncated, tokens=tokens)


def clean_explanation(text: str) -> str:
    """First line of generated text, stripped of stray markup; "" for anything unusable."""
    line = text.replace("\r", "\n").strip().split("\n", 1)[0]
    for marker in ("<|im_end|>", "<|im_start|>", "<end_of_turn>", "<|endoftext|>"):
        line = line.split(marker, 1)[0]
    line = line.strip().strip('"').strip()
    if not any(ch.isalnum() for ch in line):
        return ""
    sentence = first_sentence(line)
    letters = sum(ch.isalpha() or ch.isspace() for ch in sentence)
    return sentence if letters >= 0.7 * len(sentence) else ""  # dates, numbers, punctuation runs: not prose


def first_sentence(text: str, limit: int = 200) -> str:
    """Small models ramble and repeat: keep the first sentence, at most ``limit`` characters."""
    match = re.search(r"(?<=[.!?])\s", text)
    sentence = text[: match.start()] if match else text
    if len(sentence) > limit:
        sentence = sentence[: limit - 1].rsplit(" ", 1)[0] + "…"
    return sentence.strip()
