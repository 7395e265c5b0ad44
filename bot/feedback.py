"""PURE: a Sieve comment's reactions and replies → feedback records and training examples. No I/O.

Rules decided here and nowhere else:
- only Sieve's own comments count (written by its identity: ``CommentFeedback.comment.ours``); a marker in
  anyone else's comment is never read, so a stranger cannot plant a training example;
- one record per (comment, user): that user's latest vote (+1 / -1, 0 when they only replied) and their latest
  ``/sieve severity <level>`` correction; the bot's own reactions and replies are ignored;
- trust comes from the host (write access on GitHub, Developer+ on GitLab, or a numeric user id listed in
  ``trusted_users``); untrusted records are kept and marked, never turned into labels unless the caller asks for
  them; a user whose permission the host did not answer clearly is *unknown*: untrusted, and marked as such;
- the label of a comment: the latest trusted correction; else the net trusted vote confirms (+1) or rejects
  (-1) the predicted level. A rejection is exported with ``label`` = the predicted level and ``vote`` = -1 so
  training can use it as a negative; its ``acceptable_labels`` are the other three levels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from bot.hosts.base import CommentFeedback, Reply, Vote
from bot.severity import LABELS

_CORRECTION = re.compile(r"(?im)^\s*/sieve\s+severity\s+([a-z]+)\b")
_LANGS = {".py": "py", ".js": "js", ".ts": "ts", ".tsx": "ts", ".go": "go", ".rs": "rs", ".java": "java",
          ".rb": "rb", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cs": "cs", ".php": "php",
          ".kt": "kt", ".swift": "swift", ".scala": "scala", ".sh": "sh"}


@dataclass(frozen=True)
class CommentInfo:
    """A Sieve comment rebuilt from its marker: everything the training example needs."""

    host: str
    repo: str
    number: int
    comment_id: str
    url: str
    path: str
    line: int
    predicted: str
    probabilities: dict[str, float]
    model: str
    prompt_version: str
    commit: str
    code: str
    review: str
    reviewer: str
    created_at: str = ""
    rule_id: str | None = None  # the marker's rule id (team memory matches findings by tool and rule)
    level: str | None = None  # the tool's own level the marker names (training shows the student its origin)


@dataclass(frozen=True)
class FeedbackRecord:
    """One user's feedback on one comment (the store's key is host, repo, comment_id, voter)."""

    host: str
    repo: str
    comment_id: str
    voter: str
    vote: int  # +1, -1, or 0 (replied with a correction but did not react)
    trusted: bool
    correction: str | None = None  # that user's latest /sieve severity level
    created_at: str = ""
    comment: CommentInfo | None = field(default=None, compare=False)
    voter_id: int | None = None  # the host's numeric user id (the login in ``voter`` is for people to read)
    unknown: bool = False  # not trusted because the host's answer on the user's permission was unclear


def parse_correction(body: str) -> str | None:
    """The level in the last ``/sieve severity <level>`` line of a reply, or None (unknown levels too)."""
    found = [m.lower() for m in _CORRECTION.findall(body or "")]
    found = [level for level in found if level in LABELS]
    return found[-1] if found else None


def comment_from(feedback: CommentFeedback) -> CommentInfo | None:
    """Sieve's own comment rebuilt from its marker; None when it is not Sieve's or carries no readable marker."""
    mark = feedback.comment.marker if feedback.comment.ours else None
    if mark is None:
        return None
    return CommentInfo(host=feedback.host, repo=feedback.repo, number=feedback.number,
                       comment_id=feedback.comment_id, url=feedback.url, path=mark.path, line=mark.line,
                       predicted=mark.severity, probabilities=dict(mark.probabilities), model=mark.model,
                       prompt_version=mark.prompt_version, commit=mark.commit, code=mark.code,
                       review=mark.review, reviewer=mark.source, created_at=feedback.created_at,
                       rule_id=mark.rule_id, level=mark.level)


def records_from(feedback: CommentFeedback, bot_user: str | None = None) -> list[FeedbackRecord]:
    """One record per user who reacted 👍/👎 or replied with a correction (the bot excluded), sorted by user.

    The bot is ``bot_user`` when given, else the comment's own author (Sieve wrote the comment)."""
    info = comment_from(feedback)
    bot_user = bot_user or feedback.comment.author or None
    votes: dict[str, Vote] = {}
    for vote in sorted(feedback.votes, key=lambda v: v.created_at):
        if vote.user and vote.user != bot_user and vote.content in ("+1", "-1"):
            votes[vote.user] = vote
    corrections: dict[str, tuple[str, Reply]] = {}
    for reply in sorted(feedback.replies, key=lambda r: r.created_at):
        level = parse_correction(reply.body)
        if level and reply.user and reply.user != bot_user:
            corrections[reply.user] = (level, reply)
    out = []
    for user in sorted(set(votes) | set(corrections)):
        vote = votes.get(user)
        level, reply = corrections.get(user, (None, None))
        who = vote or reply
        if who is None:  # not reached: every user here voted or corrected
            continue
        out.append(FeedbackRecord(
            feedback.host, feedback.repo, feedback.comment_id, user, _value(vote), who.trusted, level,
            max(vote.created_at if vote else "", reply.created_at if reply else ""), info, voter_id=who.user_id,
            unknown=bool(who.trust_unknown) and not who.trusted))
    return out


def _value(vote: Vote | None) -> int:
    if vote is None:
        return 0
    return 1 if vote.content == "+1" else -1


def lang_of(path: str) -> str:
    return _LANGS.get(PurePosixPath(path).suffix.lower(), PurePosixPath(path).suffix.lstrip(".") or "text")


@dataclass(frozen=True)
class Verdict:
    """What the feedback on one comment says: a label and how it was reached."""

    label: str
    acceptable: tuple[str, ...]
    vote: int  # net vote of the counted users: +1 confirmed, -1 rejected, 0 corrected without net vote
    trusted: bool
    correction: str | None


def verdict(info: CommentInfo, votes: list[tuple[int, bool]], corrections: list[tuple[str, bool, str]],
            *, trusted_only: bool = True) -> Verdict | None:
    """The label for one comment from its (vote, trusted) pairs and (level, trusted, at) corrections."""
    def pick(trusted: bool) -> Verdict | None:
        fixes = sorted((c for c in corrections if c[1] == trusted), key=lambda c: c[2])
        net = sum(v for v, t in votes if t == trusted)
        sign = (net > 0) - (net < 0)
        if fixes:
            level = fixes[-1][0]
            return Verdict(level, (level,), sign, trusted, level)
        if sign > 0:
            return Verdict(info.predicted, (info.predicted,), 1, trusted, None)
        if sign < 0:
            return Verdict(info.predicted, tuple(x for x in LABELS if x != info.predicted), -1, trusted, None)
        return None

    return pick(True) or (None if trusted_only else pick(False))


def example(info: CommentInfo, v: Verdict) -> dict[str, Any]:
    """A training example in the shape of ``data/severity/*.jsonl`` plus the feedback fields."""
    return {"id": f"feedback-{info.host}-{info.repo.replace('/', '-')}-{info.comment_id}", "code": info.code,
            "code_kind": "diff_excerpt", "review": info.review, "label": v.label,
            "acceptable_labels": list(v.acceptable), "label_quality": "feedback", "lang": lang_of(info.path),
            "source": info.url, "license": "the repository's own review comments", "orig_label": info.predicted,
            "predicted": info.predicted, "probabilities": info.probabilities, "model": info.model,
            "prompt_version": info.prompt_version, "vote": v.vote, "trust": "trusted" if v.trusted else "untrusted",
            "correction": v.correction, "link": info.url, "origin": origin_of(info), "path": info.path}


def origin_of(info: CommentInfo) -> str:
    """The finding's origin as the student read it when it rated the comment (tool, rule, the tool's level);
    "" for LLM and local reviewers. Markers older than the level field give tool and rule only."""
    from bot.findings import tool_of
    from bot.prompt import origin_text

    tool = tool_of(info.reviewer or "")
    return origin_text(tool, info.rule_id if tool else "", info.level if tool else "")
