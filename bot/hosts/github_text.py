"""GitHub references and comment text (pure; no PyGithub here): what the GitHub host says and parses."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bot import markers, render
from bot.errors import ConfigError
from bot.hosts.base import MergeRequestRef
from bot.plan import PlannedComment

#: GitHub's longest body of a comment, a review or a summary, in characters (its host entry's max_body).
MAX_BODY = 65_536
OUTDATED_MARK = "<!-- sieve:outdated -->"
_REF_RE = re.compile(r"^(?:https?://[^/]+/)?([\w.-]+/[\w.-]+?)(?:#|/pull/|/pulls/)(\d+)/?$")
_LINE_ERRORS = ("must be part of the diff", "could not be resolved", "line must be", "is not part of the diff",
                "start_line must", "is too long")  # the last: a body over GitHub's limit (bisected like a line)


def parse_github_ref(text: str) -> MergeRequestRef:
    """``owner/repo#123`` (or a pull request URL) → a reference; a clear error otherwise."""
    match = _REF_RE.match(text.strip())
    if not match:
        raise ConfigError(f"not a GitHub pull request reference: {text!r}",
                          hint="write it as OWNER/REPO#NUMBER, e.g. octo/app#12")
    return MergeRequestRef("github", match.group(1), int(match.group(2)))


def ref_from_actions_env(environ: Mapping[str, str]) -> MergeRequestRef:
    """The pull request of a GitHub Actions run (pull_request, pull_request_target or workflow_run event)."""
    path, repo = environ.get("GITHUB_EVENT_PATH"), environ.get("GITHUB_REPOSITORY")
    if not path or not repo:
        raise ConfigError("GITHUB_EVENT_PATH and GITHUB_REPOSITORY are not set",
                          hint="run inside GitHub Actions or pass --github OWNER/REPO#N")
    try:
        with open(path, encoding="utf-8") as handle:
            event = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the Actions event file {path}: {exc}") from None
    number = (event.get("pull_request") or {}).get("number")
    if number is None and "workflow_run" in event:
        prs = event["workflow_run"].get("pull_requests") or []
        number = prs[0].get("number") if prs else None
        if number is None:
            raise ConfigError("this workflow_run event names no pull request (GitHub leaves it empty for forks)",
                              hint="pass --github OWNER/REPO#N with the number saved by the pull_request job")
    if number is None:
        raise ConfigError(f"the {environ.get('GITHUB_EVENT_NAME', 'current')} event is not about a pull request",
                          hint="trigger the workflow on pull_request, or pass --github OWNER/REPO#N")
    return MergeRequestRef("github", repo, int(number))


def review_comment_payload(comment: PlannedComment) -> dict[str, Any]:
    """One entry of ``comments`` in a create-review request (multi-line ranges with start_line/start_side)."""
    a = comment.finding.anchor
    entry: dict[str, Any] = {"path": a.path, "line": a.line, "side": a.side, "body": comment.body}
    if a.start_line is not None and a.start_line < a.line:
        entry["start_line"], entry["start_side"] = a.start_line, a.side
    return entry


def outdated_body(body: str, reason: str) -> str:
    """Mark a comment outdated in place: struck-through header, the reason, and the marker kept."""
    if OUTDATED_MARK in body:
        return body
    lines = body.split("\n")
    head = lines[0].strip()
    struck = f"~~{head}~~" if head and not head.startswith("<!--") else head
    return "\n".join([struck, "", f"**Outdated:** {reason}.", OUTDATED_MARK, *lines[1:]])


def summary_with(summary: str, unplaced: list[PlannedComment]) -> str:
    """The summary plus the comments GitHub accepted neither on a line nor on the file (markers removed), the
    first ``MAX_LISTED`` of them, each cut to a few thousand characters, the whole within GitHub's limit."""
    limit = render.body_limit(MAX_BODY)
    if not unplaced:
        return render.fit_text(summary, limit, markers.SUMMARY_MARKER)
    items = []
    for c in unplaced[: render.MAX_LISTED]:
        text = render.fit_text(markers.without_footer(c.body).strip(), 4_000)
        items.append(f"#### {render.code(f'{c.finding.anchor.path}:{c.finding.anchor.line}')}\n\n{text}")
    if len(unplaced) > render.MAX_LISTED:
        items.append(f"… and {len(unplaced) - render.MAX_LISTED} more")
    section = ("\n\n<details><summary>" + f"{len(unplaced)} comment(s) GitHub would not place on the diff"
               + "</summary>\n\n" + "\n\n".join(items) + "\n\n</details>\n")
    if markers.is_summary(summary):
        head = summary.rstrip()[: -len(markers.SUMMARY_MARKER)]
        whole = head + section.strip() + "\n\n" + markers.SUMMARY_MARKER
    else:
        whole = summary + section
    return render.fit_text(whole, limit, markers.SUMMARY_MARKER)


def _is_line_error(text: str) -> bool:
    lowered = text.lower()
    return any(key in lowered for key in _LINE_ERRORS)


def _login(item: dict[str, Any]) -> str:
    return ((item.get("user") or {}).get("login")) or ""


def _next_link(header: str) -> str | None:
    """The ``rel="next"`` URL of a Link header, if any."""
    for part in header.split(","):
        match = re.search(r'<([^>]+)>;\s*rel="next"', part)
        if match:
            return match.group(1)
    return None


def _pr_number(url: str | None) -> int:
    match = re.search(r"/pulls/(\d+)$", url or "")
    return int(match.group(1)) if match else 0


def _iso(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
