"""What every reviewer shares: the protocol, the context it reads files through, and anchoring.

A reviewer turns a :class:`ParsedDiff` into findings anchored to *added* lines of the diff. Tools
such as ruff or a SARIF producer look at whole files and report on any line; only what lands on a
line this merge request added can be commented inline, so everything else is dropped here and
summarised as one :class:`Skip` per file and reason (never one per line, never silently).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from bot.diff import anchor_for, excerpt
from bot.errors import ReviewerError
from bot.findings import Anchor, Finding, Hunk, ParsedDiff, ReviewerResult, Skip
from bot.registry import Registry


@dataclass(frozen=True)
class ReviewContext:
    """What a reviewer may read besides the diff.

    ``read_file`` returns the post-image (head) content of a repository path, or None when it is not
    available (deleted, outside the checkout, too large for the host API). Reviewers never open files
    themselves, so the same reviewer runs on a local worktree, a CI checkout or a host's file API.
    """

    read_file: Callable[[str], bytes | None] = field(default=lambda path: None)
    repo_root: Path | None = None
    head_sha: str | None = None

    @classmethod
    def from_worktree(cls, root: str | Path, head_sha: str | None = None) -> ReviewContext:
        """Read post-images from a checked-out working tree at ``root`` (paths may not escape it)."""
        base = Path(root).resolve()

        def read_file(path: str) -> bytes | None:
            try:  # a name no file system can hold (NUL byte, too long) is simply not there
                candidate = (base / path).resolve()
                if not candidate.is_relative_to(base) or not candidate.is_file():
                    return None
                return candidate.read_bytes()
            except (OSError, ValueError):
                return None

        return cls(read_file=read_file, repo_root=base, head_sha=head_sha)


@runtime_checkable
class Reviewer(Protocol):
    """Anything with a name that turns a diff into findings."""

    name: str

    def review(self, diff: ParsedDiff, ctx: ReviewContext) -> ReviewerResult: ...


#: name → factory(config=None) → Reviewer. Real reviewers register on import of ``bot.reviewers``.
REVIEWERS: Registry[Reviewer] = Registry("reviewer")


def code_for(hunk: Hunk, line: int) -> str:
    """The hunk text ending at ``line`` — the form the severity student was trained on."""
    return excerpt(hunk, line, side="RIGHT")


class AddedLines:
    """Index of the diff's added lines: (path, new line number) → the hunk that added it."""

    def __init__(self, diff: ParsedDiff) -> None:
        self._where: dict[tuple[str, int], Hunk] = {}
        for hunk in diff.hunks:
            for lineno in hunk.added_lines:
                self._where.setdefault((hunk.path, lineno), hunk)
        self.paths = frozenset(path for path, _ in self._where)

    def hunk_at(self, path: str, line: int) -> Hunk | None:
        return self._where.get((path, line))

    def first_in(self, path: str, start: int, end: int) -> int | None:
        """The first added line of ``path`` within ``start..end`` (inclusive), if any."""
        for lineno in range(start, max(start, end) + 1):
            if (path, lineno) in self._where:
                return lineno
        return None


def anchor_on(hunk: Hunk, line: int, start_line: int | None = None) -> Anchor:
    """A RIGHT-side anchor on an added line (``start_line`` for a range ending at ``line``)."""
    return anchor_for(hunk, new_line=line, start_line=start_line)


class SkipTally:
    """Counts dropped items per (file, reason) so the result carries one summary Skip for each."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, where: str, reason: str) -> None:
        self._counts[(where, reason)] += 1

    def skips(self, noun: str = "finding") -> list[Skip]:
        out = []
        for (where, reason), count in self._counts.items():
            plural = noun if count == 1 else f"{noun}s"
            out.append(Skip(where=where, reason=f"{count} {plural} dropped: {reason}"))
        return out


def dedupe(findings: list[Finding]) -> list[Finding]:
    """Drop exact repeats (same anchor, text and rule) — tools report some problems twice."""
    seen: set[tuple[object, ...]] = set()
    out = []
    for finding in findings:
        key = (finding.anchor, finding.review, finding.rule_id)
        if key not in seen:
            seen.add(key)
            out.append(finding)
    return out


def line_suggestion(text: str, line: int, edits: list[dict[str, Any]]) -> str | None:
    """The new text of ``line`` after ``edits``, when every edit lies within that line.

    An edit may end at column 1 of the next line (it removes the line break too); the result is
    then the empty string, which a suggestion renders as "delete this line". Ruff columns count
    characters from 1.
    """
    lines = [piece + "\n" for piece in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    if not lines[-1]:
        lines.pop()
    if not 1 <= line <= len(lines):
        return None
    starts = [0]
    for piece in lines:
        starts.append(starts[-1] + len(piece))
    lo, hi = starts[line - 1], starts[line]

    def offset(loc: dict[str, int]) -> int:
        row, col = int(loc["row"]), int(loc["column"])
        if row == len(lines) + 1 and col == 1:
            return starts[-1]
        if not 1 <= row <= len(lines):
            return -1
        return starts[row - 1] + col - 1

    spans = []
    for edit in edits:
        start, end = offset(edit["location"]), offset(edit["end_location"])
        if not lo <= start <= end <= hi:
            return None
        spans.append((start, end, edit.get("content", "")))
    region = text[lo:hi]
    for start, end, content in sorted(spans, reverse=True):
        region = region[: start - lo] + content + region[end - lo:]
    return region.removesuffix("\n")


def none_readable(reviewer: str, paths: list[str], ctx: ReviewContext) -> ReviewerError:
    """The error of a reviewer that could read none of the changed files it reviews. Without their content it
    finds nothing, and an empty result must not pass as a clean review (run in the wrong folder, or without
    ``--repo``), so the run is incomplete instead; a few unreadable files among readable ones are only skipped."""
    shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    what = f"could read none of the {len(paths)} changed file(s) {reviewer} reviews ({shown})"
    if ctx.repo_root is not None:
        return ReviewerError(f"{what} under {ctx.repo_root.resolve()}",
                             hint="run Sieve in the repository's top folder, or pass --repo with the folder that "
                                  "holds the changed files")
    return ReviewerError(f"{what}: the host returned no content for them at the head commit",
                         hint="check that the token may read the repository's contents")


def register_reviewer(name: str, factory: Callable[..., Reviewer]) -> None:
    """Register ``factory`` under ``name`` (tests use this for fakes, the same way real reviewers do)."""
    REVIEWERS.add(name, factory)
