"""Plain dataclasses that cross every boundary: diff hunks, anchors, findings, ratings.

No I/O and no SDK objects here. GitHub anchors use ``path``/``line``/``side``/``start_line``;
GitLab anchors use ``new_path``/``old_path``/``new_line``/``old_line``; both are derived from the
same :class:`DiffLine` numbers, which come from the diff itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Side = Literal["RIGHT", "LEFT"]
LineKind = Literal["+", "-", " "]
FileStatus = Literal["added", "deleted", "modified", "renamed", "copied"]


@dataclass(frozen=True)
class DiffLine:
    """One line of a hunk. ``old_lineno`` is None for added lines, ``new_lineno`` for removed ones."""

    kind: LineKind
    text: str
    old_lineno: int | None
    new_lineno: int | None
    no_newline: bool = False  # followed by "\ No newline at end of file"


@dataclass(frozen=True)
class Hunk:
    """A hunk (or a window of a huge hunk) of one file."""

    path: str  # post-image path (pre-image path for deleted files)
    old_path: str | None  # None for added files
    header: str  # the "@@ -a,b +c,d @@ section" line
    old_start: int
    old_count: int
    new_start: int
    new_count: int
    lines: tuple[DiffLine, ...]
    window: int = 0  # index of this window when a huge hunk was split
    windows: int = 1

    @property
    def added_lines(self) -> tuple[int, ...]:
        return tuple(line.new_lineno for line in self.lines if line.kind == "+" and line.new_lineno)

    @property
    def removed_lines(self) -> tuple[int, ...]:
        return tuple(line.old_lineno for line in self.lines if line.kind == "-" and line.old_lineno)

    def text(self) -> str:
        """The hunk as unified-diff text (header plus prefixed lines)."""
        body = "\n".join(f"{line.kind}{line.text}" for line in self.lines)
        return f"{self.header}\n{body}" if body else self.header

    def contains_new_line(self, lineno: int) -> bool:
        return any(line.new_lineno == lineno for line in self.lines if line.kind != "-")

    def contains_old_line(self, lineno: int) -> bool:
        return any(line.old_lineno == lineno for line in self.lines if line.kind == "-")


@dataclass(frozen=True)
class FilePatch:
    """Everything the diff says about one file."""

    path: str
    old_path: str | None
    status: FileStatus
    hunks: tuple[Hunk, ...] = ()
    is_binary: bool = False
    old_mode: str | None = None
    new_mode: str | None = None
    similarity: int | None = None  # rename/copy similarity index, percent

    @property
    def is_rename(self) -> bool:
        return self.status == "renamed"


@dataclass(frozen=True)
class SkippedFile:
    """A file that produced no reviewable hunks, and why (binary, submodule, mode-only, malformed…)."""

    path: str
    reason: str


@dataclass(frozen=True)
class ParsedDiff:
    files: tuple[FilePatch, ...]
    skipped: tuple[SkippedFile, ...] = ()
    warnings: tuple[str, ...] = ()  # e.g. "decoded 3 lines as latin-1", "normalised CRLF line ends"

    @property
    def hunks(self) -> tuple[Hunk, ...]:
        return tuple(h for f in self.files for h in f.hunks)

    def file(self, path: str) -> FilePatch | None:
        for f in self.files:
            if f.path == path:
                return f
        return None


@dataclass(frozen=True)
class Anchor:
    """Where a comment goes. ``line`` is in the post-image for RIGHT, in the pre-image for LEFT.

    ``start_line`` is set for multi-line ranges (same side). GitLab needs both old and new line numbers
    for context lines: ``old_line``/``new_line`` carry them when known.
    """

    path: str
    line: int
    side: Side = "RIGHT"
    start_line: int | None = None
    old_path: str | None = None
    old_line: int | None = None
    new_line: int | None = None


def tool_of(source: str) -> str:
    """The analyser behind a reviewer name (``Finding.source``): ``ruff``, a SARIF driver's name, or "" for LLM and
    local reviewers."""
    if source.startswith("sarif:"):
        return source.split(":", 1)[1]
    return source if source == "ruff" else ""


@dataclass(frozen=True)
class Finding:
    """One review finding from any reviewer, anchored to the diff."""

    anchor: Anchor
    review: str  # the finding's text, shown to the maintainer and to the student
    source: str  # reviewer name: "ruff", "sarif:<tool>", "llm", "local"
    code: str = ""  # the hunk or excerpt the student reads (diff text ending at the commented line)
    rule_id: str | None = None
    suggestion: str | None = None  # replacement text for the anchored line range, if proposed
    hint: str | None = None  # reviewer's own severity guess, if any (never trusted as the rating)
    level: str | None = None  # the tool's own level for the rule (SARIF level, ruff category, security-severity)
    rationale: str = ""  # the rule's documented "why it is bad" (ruff's catalogue, SARIF help): the explainer reads it

    @property
    def tool(self) -> str:
        """The analyser behind the finding ("ruff", a SARIF driver's name); "" for LLM and local reviewers,
        whose text carries no tool metadata."""
        return tool_of(self.source)

    def origin(self) -> str:
        """The finding's origin as the student reads it (prompt v4): tool, rule and level; "" if none."""
        from bot.prompt import origin_text

        return origin_text(self.tool, self.rule_id if self.tool else "", self.level if self.tool else "")


@dataclass(frozen=True)
class MemoryNote:
    """What the team's memory (bot.memory) did to a rating: the comment says so when it moved the level, the JSON
    output always."""

    entry: str  # the entry's id (``sieve feedback memory revoke ID``)
    scope: str  # "ruff S101 in tests/"
    direction: int  # +1: toward posting, -1: away from it
    target: str  # the level it pulled toward
    voters: int  # distinct trusted maintainers who agreed
    against: int  # distinct trusted maintainers who disagreed
    before: str  # the student's level
    before_probabilities: dict[str, float]
    text: str  # "rated trivial, not major: 2 maintainers 👎'd ruff S101 in tests/"
    moved: bool  # the level changed


@dataclass(frozen=True)
class Rating:
    """The student's judgement of one finding."""

    probabilities: dict[str, float]  # critical, major, minor, trivial → probability, sums to 1
    severity: str  # argmax label
    model_id: str
    prompt_version: str
    truncated: bool = False  # the input was cut to fit the context (commented lines kept)
    explanation: str | None = None
    tokens: int = 0  # prompt tokens the model read for this finding (after prefix reuse)
    memory_note: MemoryNote | None = None  # set when team memory adjusted the student's probabilities


@dataclass(frozen=True)
class Skip:
    """Something that was not reviewed or not posted, and why — never silently dropped."""

    where: str  # path, path:line or reviewer name
    reason: str


@dataclass
class ReviewerResult:
    findings: list[Finding] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
