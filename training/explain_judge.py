"""A pairwise judge of explanations over any OpenAI-compatible chat endpoint (the teacher evaluates).

For each finding the judge sees the finding, its rating and two explanations, A and B, and answers JSON
``{"better": "A" | "B" | "tie", "reason": "..."}``. Which system is A is drawn per finding from a seed, so a judge
that prefers the first (or second) position cannot favour either system. The preference differential of
system X over Y is ``(wins − losses) / n`` in [−1, 1]: +1 means the judge always preferred X.

An answer that is not that JSON is an error (one line, :class:`bot.errors.TrainingError`), never a guess; an
endpoint that fails is an :class:`bot.errors.EndpointError`. The API key is read from the environment variable
the caller names and never appears in any output.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.errors import ConfigError, EndpointError, TrainingError, redact

SYSTEM = ("You judge explanations attached to code review findings. A good explanation says in one sentence why "
          "the finding has its severity, names the concrete risk in this code, is correct, and invents nothing.")
QUESTION = ("Finding: {review}\nCode: {code}\nSeverity: {severity}\n\nExplanation A: {a}\nExplanation B: {b}\n\n"
            "Which explanation would a reviewer rather keep? An empty explanation says nothing. "
            'Answer only JSON: {{"better": "A" | "B" | "tie", "reason": "<one sentence>"}}')


@dataclass(frozen=True)
class Verdict:
    better: str  # "x", "y" or "tie", in terms of the systems compared (not positions)
    reason: str


class Judge:
    """Chat-completion client for the judge (``openai`` is imported only here, in training)."""

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 seed: int = 0) -> None:
        if not base_url:
            raise ConfigError("no judge endpoint", hint="pass --judge-base-url http://HOST/v1")
        from openai import OpenAI

        self.model = model
        self.base_url = base_url
        key = os.environ.get(api_key_env) or "not-needed"
        self._client = OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=2)
        self._rng = random.Random(seed)

    def compare(self, *, review: str, code: str, severity: str, x: str, y: str) -> Verdict:
        """Ask which of ``x`` and ``y`` is the better explanation (positions drawn at random)."""
        x_first = self._rng.random() < 0.5
        a, b = (x, y) if x_first else (y, x)
        content = QUESTION.format(review=review, code=code or "(none)", severity=severity, a=a or "(empty)",
                                  b=b or "(empty)")
        answer = self._ask([{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}])
        better, reason = parse_verdict(answer)
        if better == "tie":
            return Verdict("tie", reason)
        return Verdict("x" if (better == "A") == x_first else "y", reason)

    def _ask(self, messages: list[dict[str, str]]) -> str:
        import openai

        try:
            response = self._client.chat.completions.create(model=self.model, messages=messages, temperature=0)
        except openai.APIStatusError as exc:
            raise EndpointError(f"the judge at {self.base_url} answered HTTP {exc.status_code}",
                                status=exc.status_code, hint="check --judge-base-url, --judge-model and the key") \
                from None
        except openai.APIError as exc:
            raise EndpointError(f"the judge at {self.base_url} could not be reached: {redact(str(exc))}",
                                hint="check --judge-base-url and that the server is up") from None
        choices = getattr(response, "choices", None) or []
        return (choices[0].message.content or "") if choices else ""


def parse_verdict(answer: str) -> tuple[str, str]:
    """("A" | "B" | "tie", reason) from the judge's answer; a TrainingError for anything else."""
    text = answer.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    try:
        data = json.loads(fenced.group(1) if fenced else text)
    except json.JSONDecodeError:
        data = None
    better = str(data.get("better", "")).strip() if isinstance(data, dict) else ""
    if better.lower() == "tie":
        better = "tie"
    if better not in ("A", "B", "tie"):
        shown = " ".join(text.split())[:80]
        raise TrainingError(f"the judge's answer is not the JSON asked for: {shown!r}",
                            hint='the judge must answer {"better": "A" | "B" | "tie", "reason": "..."}')
    return better, str(data.get("reason", "")) if isinstance(data, dict) else ""


def differential(verdicts: Sequence[Verdict]) -> dict[str, float]:
    """Wins, losses and ties of x over y, and the preference differential (wins − losses) / n."""
    wins = sum(v.better == "x" for v in verdicts)
    losses = sum(v.better == "y" for v in verdicts)
    n = len(verdicts)
    return {"n": n, "wins": wins, "losses": losses, "ties": n - wins - losses,
            "differential": round((wins - losses) / n, 4) if n else 0.0}
