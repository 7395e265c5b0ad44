"""PURE: the rows of ``sieve feedback import FILE.jsonl`` → the comments and feedback records the store keeps.

For teams whose reactions live elsewhere (another bot, an air-gapped mirror). One JSON object per line:

    {"repo": "org/name", "path": "src/x.py", "line": 12, "tool": "ruff", "rule": "S101",
     "review": "S101 Use of `assert` detected", "code": "", "severity": "major", "reaction": "+1" | "-1",
     "correction": "trivial" | null, "user": "alice", "trusted": true, "at": "2026-11-30T12:00:00Z"}

``code``, ``correction`` and ``at`` may be left out. Rows are checked as strictly as settings are (nothing is
coerced, an unknown key is an error): a bad row is reported with its line number and what is wrong, and the
good rows are imported. Rows about the same finding (same repo, path, line, tool, rule and review) become one
remembered comment with one record per user, so imported rows feed ``sieve feedback export`` and team memory
exactly like harvested ones.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.feedback import CommentInfo, FeedbackRecord
from bot.severity import LABELS

HOST = "import"  # the host column of imported comments
REQUIRED = ("repo", "path", "line", "tool", "rule", "review", "severity", "reaction", "user", "trusted")
OPTIONAL = ("code", "correction", "at", "level")
#: tools whose findings Sieve's own reviewers name this way; any other tool is a SARIF driver
_SOURCES = {"ruff": "ruff", "llm": "llm", "local": "local"}


class RowError(Exception):
    """What is wrong with one row (reported with its line number; never leaves this module)."""


@dataclass(frozen=True)
class BadRow:
    line: int
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}"


def _text(row: dict[str, Any], key: str, *, empty: bool = False) -> str:
    value = row[key]
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise RowError(f"{key} must be {'a' if empty else 'a non-empty'} string, not {json.dumps(value)}")
    return value


def _check(row: Any) -> dict[str, Any]:
    """The row's fields, checked; a RowError naming the first problem."""
    if not isinstance(row, dict):
        raise RowError(f"expected a JSON object, found {type(row).__name__}")
    unknown = sorted(set(row) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise RowError(f"unknown field {unknown[0]!r} (fields: {', '.join(REQUIRED + OPTIONAL)})")
    missing = [key for key in REQUIRED if key not in row]
    if missing:
        raise RowError(f"missing field {missing[0]!r}")
    out = {key: _text(row, key) for key in ("repo", "path", "tool", "review", "user")}
    out["rule"] = _text(row, "rule", empty=True)
    out["code"] = _text(row, "code", empty=True) if row.get("code") is not None else ""
    out["level"] = _text(row, "level", empty=True) if row.get("level") is not None else ""
    line = row["line"]
    if not isinstance(line, int) or isinstance(line, bool) or line < 1:
        raise RowError(f"line must be a whole number ≥ 1, not {json.dumps(line)}")
    out["line"] = line
    for key in ("severity", "correction"):
        value = row.get(key)
        if key == "correction" and value is None:
            out[key] = None
        elif value not in LABELS:
            raise RowError(f"{key} must be one of {', '.join(LABELS)}{' or null' if key == 'correction' else ''}, "
                             f"not {json.dumps(value)}")
        else:
            out[key] = value
    if row["reaction"] not in ("+1", "-1"):
        raise RowError(f'reaction must be "+1" or "-1", not {json.dumps(row["reaction"])}')
    out["vote"] = 1 if row["reaction"] == "+1" else -1
    if not isinstance(row["trusted"], bool):
        raise RowError(f"trusted must be true or false, not {json.dumps(row['trusted'])}")
    out["trusted"] = row["trusted"]
    out["at"] = _when(row.get("at"))
    return out


def _when(value: Any) -> str:
    if value is None:
        return ""
    problem = RowError(f"at must be an ISO 8601 time such as 2026-11-30T12:00:00Z, not {json.dumps(value)}")
    if not isinstance(value, str):
        raise problem
    try:
        datetime.fromisoformat(value.strip())
    except ValueError:
        raise problem from None
    return value.strip()


def source_of(tool: str) -> str:
    """The reviewer name a finding of ``tool`` carries (Finding.source): ruff, llm, local, or sarif:<tool>."""
    return _SOURCES.get(tool, f"sarif:{tool}")


def comment_of(row: dict[str, Any]) -> CommentInfo:
    """The remembered comment a row is about: one per repo, path, line, tool, rule and review."""
    source = source_of(row["tool"])
    ident = "\x1f".join((row["repo"], row["path"], str(row["line"]), source, row["rule"], row["review"]))
    comment_id = hashlib.sha256(ident.encode()).hexdigest()[:20]
    return CommentInfo(host=HOST, repo=row["repo"], number=0, comment_id=comment_id, url="", path=row["path"],
                       line=row["line"], predicted=row["severity"], probabilities={}, model="", prompt_version="",
                       commit="", code=row.get("code") or "", review=row["review"], reviewer=source,
                       created_at=row.get("at") or "", rule_id=row["rule"] or None, level=row.get("level") or None)


def to_records(row: dict[str, Any]) -> tuple[CommentInfo, FeedbackRecord]:
    """A checked row as the remembered comment and the user's record on it."""
    info = comment_of(row)
    record = FeedbackRecord(HOST, row["repo"], info.comment_id, row["user"], row["vote"], row["trusted"],
                            row["correction"], row["at"], info)
    return info, record


def parse_lines(lines: list[bytes]) -> tuple[list[tuple[CommentInfo, FeedbackRecord]], list[BadRow]]:
    """Every good row as (comment, record) and every bad one as (line number, problem); blank lines are skipped."""
    good: list[tuple[CommentInfo, FeedbackRecord]] = []
    bad: list[BadRow] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(BadRow(number, "not UTF-8 text"))
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            bad.append(BadRow(number, f"not JSON ({exc.msg} at column {exc.colno})"))
            continue
        try:
            good.append(to_records(_check(row)))
        except RowError as exc:
            bad.append(BadRow(number, str(exc)))
    return good, bad
