"""Comment and summary text (pure). Hosts differ only in the suggestion syntax (``flavor``)."""

from __future__ import annotations

import re
from typing import Literal

from bot.findings import Finding, Rating, Skip
from bot.severity import LABELS

Flavor = Literal["github", "gitlab", "local"]

BADGES = {"critical": "🔴 **Critical**", "major": "🟠 **Major**", "minor": "🟡 **Minor**", "trivial": "⚪ **Trivial**"}


def fence_for(text: str) -> str:
    """A backtick fence longer than any backtick run inside ``text`` (so the text cannot close it)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def suggestion_block(finding: Finding, flavor: Flavor) -> str:
    if finding.suggestion is None or flavor == "local":
        return ""
    fence = fence_for(finding.suggestion)
    text = finding.suggestion.rstrip("\n")
    if flavor == "gitlab":
        span = finding.anchor.line - finding.anchor.start_line if finding.anchor.start_line else 0
        head = f"{fence}suggestion:-{span}+0"
    else:
        head = f"{fence}suggestion"
    return f"\n\n{head}\n{text}\n{fence}"


def probability_line(rating: Rating) -> str:
    return " · ".join(f"{label} {rating.probabilities.get(label, 0.0):.0%}" for label in LABELS)


def comment_body(finding: Finding, rating: Rating, marker_text: str, flavor: Flavor) -> str:
    """The text of one inline comment."""
    parts = [f"{BADGES[rating.severity]} · {finding.source}" + (f" `{finding.rule_id}`" if finding.rule_id else ""),
             "", finding.review.strip()]
    if rating.explanation:
        parts += ["", f"_Why {rating.severity}:_ {rating.explanation.strip()}"]
    body = "\n".join(parts) + suggestion_block(finding, flavor)
    footer = (f"\n\n<sub>Severity by `{rating.model_id}` ({probability_line(rating)}). "
              "React 👍 if this was useful, 👎 if not; reply `/sieve severity <level>` to correct it.</sub>\n")
    return body + footer + marker_text


def summary_body(*, counts: dict[str, int], posted: int, kept: int, resolved: int,
                 below: list[tuple[Finding, Rating]], over_cap: list[tuple[Finding, Rating]],
                 skips: list[Skip], model_id: str, threshold: str, mode: str, commit: str,
                 marker: str) -> str:
    """The summary comment, edited in place on every run."""
    table = "| level | findings |\n|---|---|\n" + "".join(f"| {BADGES[lvl]} | {counts.get(lvl, 0)} |\n"
                                                         for lvl in LABELS)
    lines = ["## Sieve review", "", table,
             f"Posted {posted} new comment(s), kept {kept}, resolved {resolved}. "
             f"Threshold: **{threshold}** ({'probability mass' if mode == 'mass' else 'argmax'}); "
             f"model `{model_id}`; commit `{commit[:12] or 'local'}`."]
    for title, items in (("below the threshold", below), ("over the comment cap", over_cap)):
        if items:
            lines += ["", f"<details><summary>{len(items)} finding(s) {title}</summary>", ""]
            lines += [f"- `{f.anchor.path}:{f.anchor.line}` {BADGES[r.severity]} {_one_line(f.review)}"
                      for f, r in items]
            lines += ["", "</details>"]
    if skips:
        lines += ["", f"<details><summary>{len(skips)} item(s) not reviewed</summary>", ""]
        lines += [f"- `{s.where}`: {s.reason}" for s in skips]
        lines += ["", "</details>"]
    lines += ["", "React 👍/👎 on Sieve's comments: your reactions train the next model.", "", marker]
    return "\n".join(lines)


def _one_line(text: str, limit: int = 140) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
