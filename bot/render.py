"""Comment and summary text (pure). Hosts differ only in the suggestion syntax (``flavor``).

Everything a pull request can influence — file names, review texts, rule ids, tool messages, the model's
explanation — is untrusted and rendered *inert*: names go into code spans whose fence outlasts any backtick run in
them, prose has every markdown and HTML character backslash-escaped, and mentions, issue references and bare URLs
are broken with an invisible zero-width space so that GitHub and GitLab neither link nor notify; a Sieve marker
in such text is escaped or broken like the rest. Only suggestions stay verbatim (they must apply as written):
inside a fence longer than any backtick run in them they are code, and since bot.markers reads only the marker
that ends a comment, a marker in a suggestion is never read.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace
from typing import Literal

from bot.findings import Finding, Rating, Skip
from bot.severity import LABELS

Flavor = Literal["github", "gitlab", "local"]

#: Items listed per section of the summary; the rest are counted.
MAX_LISTED = 50
_MARGIN = 1_000  # room for what a host adds (its fallback notes) and for characters a host counts twice

BADGES = {"critical": "🔴 **Critical**", "major": "🟠 **Major**", "minor": "🟡 **Minor**", "trivial": "⚪ **Trivial**"}


_ZWSP = "\u200b"  # zero-width space: breaks @mentions, #references and autolinks without a visible change
_SPECIAL = re.compile(r"([\\`*_{}\[\]<>!&#|~$])")  # characters that can open markup (all are escapable)
_LINE_START = re.compile(r"(?m)^([ \t]*)([-+=]|\d{1,9}(?=[.)]))")  # list items, setext underlines, 1. / 1)
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
#: what GitHub and GitLab turn into mentions and references (@user, #1, !1, $1, &1, ~label, %milestone) or links
_REFERENCE = re.compile(r"(@|[#!$&](?=\d)|[~%](?=[\w\"])|:(?=//)|(?i:\bwww)(?=\.))")


def _printable(text: str, *, keep_newlines: bool) -> str:
    """Control characters and bidirectional overrides written out (``\\n``, ``\\u202e``) so that they show."""
    out = []
    for char in text.replace("\r\n", "\n").replace("\r", "\n"):
        hidden = unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI
        if not hidden or (keep_newlines and char in "\n\t"):
            out.append(char)
        else:
            out.append(repr(char)[1:-1] if char.isascii() else f"\\u{ord(char):04x}")
    return "".join(out)


def inert(text: str) -> str:
    """Untrusted prose as markdown that renders as the same plain text: no markup, link, image, HTML, mention."""
    text = _SPECIAL.sub(r"\\\1", _printable(text, keep_newlines=True))
    text = _LINE_START.sub(lambda m: f"{m.group(1)}{m.group(2)}\\" if m.group(2)[0].isdigit()
                           else f"{m.group(1)}\\{m.group(2)}", text)
    return _REFERENCE.sub(lambda m: m.group(1) + _ZWSP, text)


def code(text: str) -> str:
    """Untrusted text (a path, a rule id) as one inline code span it cannot close: nothing in it renders, and a
    Sieve marker in it is broken (an invisible zero-width space after ``<!--``) so it never reads as one."""
    text = _printable(text, keep_newlines=False).replace("<!--", "<!--" + _ZWSP)
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"


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
    parts = [f"{BADGES[rating.severity]} · {inert(finding.source)}"
             + (f" {code(finding.rule_id)}" if finding.rule_id else ""), "", inert(finding.review.strip())]
    if rating.explanation:
        parts += ["", f"_Why {rating.severity}:_ {inert(rating.explanation.strip())}"]
    if rating.memory_note is not None and rating.memory_note.moved:  # the team's reactions changed the level
        parts += ["", f"_Team memory:_ {inert(rating.memory_note.text)}"]
    body = "\n".join(parts) + suggestion_block(finding, flavor)
    footer = (f"\n\n<sub>Severity by {code(rating.model_id)} ({probability_line(rating)}). "
              "React 👍 if this was useful, 👎 if not; reply `/sieve severity <level>` to correct it.</sub>\n")
    return body + footer + marker_text


def body_limit(max_body: int | None) -> int | None:
    """Characters a body may have on a host that accepts ``max_body`` (its host entry says), less a margin
    (None: no limit, e.g. a local report)."""
    return None if max_body is None else max_body - _MARGIN


def fit_comment(finding: Finding, rating: Rating, marker_text: str, flavor: Flavor,
                max_body: int | None = None) -> tuple[str, bool]:
    """An inline comment within the host's limit ``max_body``: a long suggestion is dropped first (True is returned
    so the summary can count it), then the review text is cut. The marker is always kept whole."""
    body = comment_body(finding, rating, marker_text, flavor)
    limit = body_limit(max_body)
    if limit is None or len(body) <= limit:
        return body, False
    dropped = finding.suggestion is not None
    bare = replace(finding, suggestion=None)
    body = comment_body(bare, rating, marker_text, flavor)
    if len(body) > limit:
        room = max(200, len(finding.review) - (len(body) - limit) - 40)
        cut = replace(bare, review=finding.review[:room].rstrip() + " … (cut to fit)")
        body = comment_body(cut, rating, marker_text, flavor)
    return body, dropped


def fit_text(body: str, limit: int | None, marker: str = "") -> str:
    """Cut ``body`` to ``limit`` characters, saying so, with ``marker`` (if in it) kept at the very end."""
    if limit is None or len(body) <= limit:
        return body
    tail = "\n\n_(cut to fit the host's size limit)_" + (f"\n\n{marker}" if marker and marker in body else "")
    head = body.replace(marker, "") if marker else body
    return head[: max(0, limit - len(tail))].rstrip() + tail


def _listed(items: list[str], what: str) -> list[str]:
    """The first MAX_LISTED items, then one line counting the rest."""
    shown = items[:MAX_LISTED]
    if len(items) > MAX_LISTED:
        shown.append(f"- … and {len(items) - MAX_LISTED} more {what}")
    return shown


def summary_body(*, counts: dict[str, int], posted: int, kept: int, resolved: int,
                 below: list[tuple[Finding, Rating]], over_cap: list[tuple[Finding, Rating]],
                 skips: list[Skip], model_id: str, threshold: str, mode: str, commit: str,
                 marker: str, dropped_suggestions: int = 0, limit: int | None = None) -> str:
    """The summary comment, edited in place on every run; long lists show their first items and count the
    rest, and the whole stays within ``limit`` characters."""
    table = "| level | findings |\n|---|---|\n" + "".join(f"| {BADGES[lvl]} | {counts.get(lvl, 0)} |\n"
                                                         for lvl in LABELS)
    lines = ["## Sieve review", "", table,
             f"Posted {posted} new comment(s), kept {kept}, resolved {resolved}. "
             f"Threshold: **{threshold}** ({'probability mass' if mode == 'mass' else 'argmax'}); "
             f"model {code(model_id)}; commit {code(commit[:12] or 'local')}."]
    for title, items in (("below the threshold", below), ("over the comment cap", over_cap)):
        if items:
            lines += ["", f"<details><summary>{len(items)} finding(s) {title}</summary>", ""]
            lines += _listed([f"- {code(f'{f.anchor.path}:{f.anchor.line}')} {BADGES[r.severity]} "
                              f"{inert(_one_line(f.review))}" for f, r in items], "finding(s)")
            lines += ["", "</details>"]
    if skips:
        lines += ["", f"<details><summary>{len(skips)} item(s) not reviewed</summary>", ""]
        lines += _listed([f"- {code(s.where)}: {inert(_one_line(s.reason, 300))}" for s in skips], "item(s)")
        lines += ["", "</details>"]
    if dropped_suggestions:
        lines += ["", (f"{dropped_suggestions} suggestion(s) were too long for a comment on this host and were "
                       "left out of their comment(s).")]
    lines += ["", "React 👍/👎 on Sieve's comments: your reactions train the next model.", "", marker]
    return fit_text("\n".join(lines), limit, marker)


_POSTED = re.compile(r"^Posted \d+ new comment\(s\)", re.M)


def recount(summary: str, posted: int) -> str:
    """The summary with its "Posted N new comment(s)" line saying how many the host really took."""
    return _POSTED.sub(f"Posted {posted} new comment(s)", summary, count=1)


def with_failures(summary: str, failures: list[str], allowed: bool = False, limit: int | None = None) -> str:
    """The summary with a section saying which reviewer (or the rater) failed and why, above its marker."""
    lines = _listed([f"- {inert(_one_line(f, 300))}" for f in failures], "failure(s)")
    verdict = "the run passes anyway (allow_reviewer_failure)" if allowed else "the run fails"
    section = (f"**⚠️ Incomplete review:** {len(failures)} part(s) failed, so findings may be missing; "
               f"{verdict}.\n\n" + "\n".join(lines))
    head, marker, tail = summary.rpartition("<!-- sieve:summary -->")
    whole = f"{head}{section}\n\n{marker}{tail}" if marker else f"{summary}\n\n{section}"
    return fit_text(whole, limit, "<!-- sieve:summary -->")


def _one_line(text: str, limit: int = 140) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
