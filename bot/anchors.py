"""Diff line numbers → comment anchors and excerpts (pure). Used by every reviewer and host.

Split from :mod:`bot.diff` (which re-exports these names): parsing turns bytes into hunks; this module
answers "where does a comment on this line go, and what code did the student read".
"""

from __future__ import annotations

from bot.errors import DiffError
from bot.findings import Anchor, DiffLine, FilePatch, Hunk, Side

__all__ = ["anchor_for", "excerpt", "find_line"]


def _hunks_of(target: Hunk | FilePatch) -> tuple[Hunk, ...]:
    return target.hunks if isinstance(target, FilePatch) else (target,)


def _matches(line: DiffLine, new_line: int | None, old_line: int | None) -> bool:
    if new_line is not None:
        return line.kind != "-" and line.new_lineno == new_line and (old_line is None or line.old_lineno == old_line)
    return line.kind != "+" and line.old_lineno == old_line


def find_line(target: Hunk | FilePatch, new_line: int | None = None,
              old_line: int | None = None) -> tuple[Hunk, int] | None:
    """The hunk and index of a diff line, by post-image (``new_line``) or pre-image (``old_line``) number.

    ``old_line`` alone prefers a removed line over a context line with that old number. When windows
    overlap, the window giving the line the most preceding context wins (better excerpts).
    """
    if new_line is None and old_line is None:
        return None
    for wanted in ((None,) if new_line is not None else ("-", " ")):
        best: tuple[Hunk, int] | None = None
        for hunk in _hunks_of(target):
            for index, line in enumerate(hunk.lines):
                if (_matches(line, new_line, old_line) and (wanted is None or line.kind == wanted)
                        and (best is None or index > best[1])):
                    best = (hunk, index)
        if best is not None:
            return best
    return None


def anchor_for(target: Hunk | FilePatch, new_line: int | None = None, old_line: int | None = None, *,
               start_line: int | None = None) -> Anchor:
    """Build a comment anchor from diff line numbers, valid for GitHub and GitLab alike.

    Added and context lines anchor on RIGHT (post-image numbers), removed lines on LEFT. Context lines
    carry both numbers because GitLab needs both. ``start_line`` makes a multi-line range; it must be
    on the same side and in the same hunk, as GitHub requires.
    """
    path = _hunks_of(target)[0].path if _hunks_of(target) else getattr(target, "path", "?")
    found = find_line(target, new_line, old_line)
    if found is None:
        where = f"new line {new_line}" if new_line is not None else f"old line {old_line}"
        raise DiffError(f"{path}: {where} is not part of the diff",
                        hint="comments can only be placed on lines inside a hunk")
    hunk, index = found
    line = hunk.lines[index]
    side: Side = "LEFT" if line.kind == "-" else "RIGHT"
    number = line.old_lineno if side == "LEFT" else line.new_lineno
    assert number is not None
    start = None
    if start_line is not None and start_line != number:
        span = hunk.lines[:index]
        ok = any((l.old_lineno if side == "LEFT" else l.new_lineno) == start_line and
                 (l.kind == "-" if side == "LEFT" else l.kind != "-") for l in span)
        if not ok:
            raise DiffError(f"{hunk.path}: range start {start_line} is not before line {number} in the same hunk",
                            hint="a multi-line comment must stay inside one hunk and on one side")
        start = start_line
    return Anchor(path=hunk.path, line=number, side=side, start_line=start, old_path=hunk.old_path or hunk.path,
                  old_line=line.old_lineno, new_line=line.new_lineno)


def excerpt(hunk: Hunk | FilePatch, line: int, side: Side = "RIGHT", after: int = 0) -> str:
    """The hunk header and lines up to the commented line (plus ``after`` more).

    This is the form of a GitHub review comment's ``diff_hunk`` — the code the student was trained on.
    """
    found = find_line(hunk, new_line=line) if side == "RIGHT" else find_line(hunk, old_line=line)
    if found is None:
        path = _hunks_of(hunk)[0].path if _hunks_of(hunk) else "?"
        raise DiffError(f"{path}: {side} line {line} is not part of the diff",
                        hint="excerpts can only be cut from lines inside a hunk")
    owner, index = found
    shown = owner.lines[:index + 1 + max(after, 0)]
    return owner.header + "".join(f"\n{item.kind}{item.text}" for item in shown)
