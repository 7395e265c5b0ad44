"""Local output of a review: terminal (rich), JSON, SARIF 2.1.0 and Markdown. No network.

Every sink escapes for itself: the terminal gets rich ``Text`` (no markup) with control characters written out,
Markdown gets bot.render's inert text and code spans, JSON and SARIF get plain strings that ``json`` encodes.
"""

from __future__ import annotations

import io
import json
from typing import Any

from bot import __version__, render
from bot.findings import MemoryNote
from bot.outcome import Outcome
from bot.plan import Decision
from bot.severity import LABELS
from bot.terminal import one_line, printable

FORMATS = ("text", "json", "sarif", "markdown")
_SARIF_LEVEL = {"critical": "error", "major": "error", "minor": "warning", "trivial": "note"}


def decision_dict(d: Decision) -> dict[str, Any]:
    a = d.finding.anchor
    row = {
        "path": a.path, "line": a.line, "side": a.side, "start_line": a.start_line,
        "severity": d.rating.severity,
        "probabilities": {k: round(d.rating.probabilities.get(k, 0.0), 6) for k in LABELS},
        "review": d.finding.review, "source": d.finding.source, "rule_id": d.finding.rule_id,
        "posted": d.posted, "skip_reason": d.skip_reason, "explanation": d.rating.explanation,
        "fingerprint": d.fingerprint, "truncated": d.rating.truncated, "suggestion": d.finding.suggestion,
    }
    if d.rating.memory_note is not None:  # only where memory applied: without a store the output is unchanged
        row["memory"] = memory_dict(d.rating.memory_note)
    return row


def memory_dict(note: MemoryNote) -> dict[str, Any]:
    """What team memory did to one finding's rating (the student's own level and probabilities included)."""
    return {"entry": note.entry, "scope": note.scope, "direction": "up" if note.direction > 0 else "down",
            "target": note.target, "voters": note.voters, "against": note.against, "moved": note.moved,
            "note": note.text, "before": {"severity": note.before, "probabilities": {
                k: round(note.before_probabilities.get(k, 0.0), 6) for k in LABELS}}}


def summary_dict(outcome: Outcome) -> dict[str, Any]:
    decisions = outcome.plan.decisions
    return {
        "target": outcome.target, "model": outcome.model_id, "prompt_version": outcome.prompt_version,
        "threshold": outcome.threshold, "counts": outcome.counts,
        "posted": sum(d.posted for d in decisions),
        "below_threshold": sum(1 for d in decisions if (d.skip_reason or "").startswith("below threshold")),
        "over_cap": sum(1 for d in decisions if "cap" in (d.skip_reason or "")),
        "skipped": [{"where": s.where, "reason": s.reason} for s in outcome.skips],
        "warnings": outcome.warnings, "errors": outcome.errors, "seconds": round(outcome.seconds, 3),
    }


def to_json(outcome: Outcome) -> str:
    doc = {"findings": [decision_dict(d) for d in outcome.plan.decisions], "summary": summary_dict(outcome)}
    return json.dumps(doc, indent=2, ensure_ascii=False)


def to_sarif(outcome: Outcome) -> str:
    results = []
    for d in outcome.plan.decisions:
        a = d.finding.anchor
        region = {"startLine": a.start_line or a.line, "endLine": a.line}
        results.append({
            "ruleId": str(d.finding.rule_id or d.finding.source),
            "level": _SARIF_LEVEL[d.rating.severity],
            "message": {"text": str(d.finding.review)},  # plain text; a viewer must not render it
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": a.path}, "region": region}}],
            "partialFingerprints": {"sieve/v1": d.fingerprint},
            "properties": {"severity": d.rating.severity, "probabilities": d.rating.probabilities,
                           "posted": d.posted, "skip_reason": d.skip_reason, "source": d.finding.source,
                           "explanation": d.rating.explanation},
        })
    run = {"tool": {"driver": {"name": "sieve", "version": __version__, "informationUri":
                               "https://github.com/sieve-review/sieve", "rules": []}},
           "results": results, "properties": {"model": outcome.model_id, "prompt_version": outcome.prompt_version}}
    doc = {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": [run]}
    return json.dumps(doc, indent=2, ensure_ascii=False)


def to_markdown(outcome: Outcome) -> str:
    """Markdown for a PR description or a job summary: every untrusted piece (path, review, source, reason,
    explanation) goes through bot.render as the posted comments do, so it renders as the plain text it is."""
    lines = [outcome.plan.summary, "", "### Findings", ""]
    for d in outcome.plan.decisions:
        a = d.finding.anchor
        state = "posted" if d.posted else f"not posted — {render.inert(d.skip_reason or 'skipped')}"
        lines.append(f"- **{d.rating.severity}** ({d.rating.probabilities.get(d.rating.severity, 0):.0%}) "
                     f"{render.code(f'{a.path}:{a.line}')} {_one_paragraph(d.finding.review)} "
                     f"_({render.inert(d.finding.source)}; {state})_")
        if d.posted and d.rating.explanation:
            lines.append(f"  - why: {_one_paragraph(d.rating.explanation)}")
    return "\n".join(lines) + "\n"


def _one_paragraph(text: str) -> str:
    """Untrusted prose inert and on one line, so that it stays inside its list item."""
    return render.inert(" ".join(text.split()))


def _cell(text: object) -> Any:
    """One piece of text for rich as data (a ``Text``: never parsed as markup or emoji codes), with its control
    characters shown; rich is imported here, not at start-up, so ``sieve --help`` stays quick."""
    from rich.text import Text

    return Text(printable(text, keep_newlines=True))


def _line(text: str) -> Any:
    """Like :func:`_cell`, on one line."""
    from rich.text import Text

    return Text(one_line(text))


def to_text(outcome: Outcome, color: bool = False) -> str:
    """The terminal report. Every piece is a rich ``Text`` (never markup), so a ``[/]`` in a file name or a tool
    message prints as written; an outcome that was not applied to a host says what *would* be posted."""
    from rich.console import Console
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, width=120, no_color=not color, emoji=False,
                      highlight=False, markup=False)
    posted = "posted" if outcome.applied else "would post"
    table = Table(title=_line(f"Sieve review of {outcome.target}"), show_lines=False)
    for column in ("location", "severity", "p", "review", "source", "status"):
        table.add_column(column, overflow="fold")
    for d in outcome.plan.decisions:
        a = d.finding.anchor
        review = d.finding.review.strip()
        if d.posted and d.rating.explanation:
            review += f"\n↳ {d.rating.explanation.strip()}"
        table.add_row(_line(f"{a.path}:{a.line}"), _line(d.rating.severity),
                      f"{d.rating.probabilities.get(d.rating.severity, 0):.2f}", _cell(review),
                      _line(d.finding.source), _cell(posted if d.posted else (d.skip_reason or "skipped")))
    console.print(table)
    s = summary_dict(outcome)
    counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items())
    done = f"Posted {s['posted']}" if outcome.applied else f"{s['posted']} would be posted"
    console.print(_line(f"Findings per level: {counts}. {done}; below threshold ({outcome.threshold}) "
                        f"{s['below_threshold']}; over the comment cap {s['over_cap']}."))
    console.print(_line(f"Model {outcome.model_id} · prompt {outcome.prompt_version} · {s['seconds']} s"))
    for skip in outcome.skips:
        console.print(_line(f"skipped {skip.where}: {skip.reason}"))
    for warning in outcome.warnings:
        console.print(_line(f"note: {warning}"))
    for error in outcome.errors:
        console.print(_line(f"error (run continued): {error}"))
    return buffer.getvalue()


def render_outcome(outcome: Outcome, fmt: str, color: bool = False) -> str:
    if fmt == "json":
        return to_json(outcome)
    if fmt == "sarif":
        return to_sarif(outcome)
    if fmt == "markdown":
        return to_markdown(outcome)
    return to_text(outcome, color=color)
