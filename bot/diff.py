"""Unified diff bytes → hunks with line numbers, plus the files that cannot be reviewed and why.

Pure: no I/O. Real merge-request diffs are messy (CRLF, latin-1 bytes, binary patches, submodules,
mail headers, prose around a pasted patch, hunks whose counts lie), so the parser is a single
streaming pass that counts hunk lines by the hunk header — never by what a line looks like — and
fences every file off from the others: a malformed hunk skips its own file with the line number and
keeps every other file. Every file in the input comes back as a :class:`FilePatch` with hunks or as
a :class:`SkippedFile` with a reason, so nothing is dropped silently.

``unidiff`` (a dependency of the project) is the reference this parser is tested against; it is not
used here because one bad hunk makes it reject the whole patch (and older releases return no files
for a CRLF patch), and because this single pass is faster than it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from bot.anchors import anchor_for, excerpt, find_line
from bot.errors import ConfigError, DiffError
from bot.findings import DiffLine, FilePatch, Hunk, ParsedDiff, SkippedFile
from bot.paths import display_path, path_problem

__all__ = ["anchor_for", "excerpt", "find_line", "parse"]

_HUNK_RE = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(?: ?(.*))?$")
_BINARY_RE = re.compile(r"Binary files (.+?) and (.+?) differ$")
_SUBMODULE_RE = re.compile(r"Submodule (.+?) (?:[0-9a-f]{7,}\.\.\.?[0-9a-f]{7,}|contains )")
_PREFIXES = frozenset("abciow12")  # git's a/ b/, mnemonic c/ i/ o/ w/, and --no-index 1/ 2/
_ESCAPE_RE = re.compile(rb"\\(?:([0-7]{3})|(.))", re.DOTALL)
_ESCAPES = {b"n": b"\n", b"t": b"\t", b"a": b"\a", b"b": b"\b", b"f": b"\f", b"r": b"\r", b"v": b"\v"}
_QUOTED_RE = re.compile(r'"(?:[^"\\]|\\.)*"')
_DEV_NULL = "/dev/null"
_SYMLINK, _GITLINK = "120000", "160000"
_PREAMBLES = ("diff ", "Index: ", "=====", "=== ")  # lines that introduce a file in svn, hg, bzr, GNU diff


class _Malformed(Exception):
    """A hunk that breaks the grammar; ``at`` is the 0-based index of the offending input line."""

    def __init__(self, at: int, detail: str) -> None:
        super().__init__(detail)
        self.at, self.detail = at, detail


@dataclass
class _FileInfo:
    """What the headers of one file said, filled in while reading them."""

    old: str | None = None
    new: str | None = None
    git: bool = False
    status: str = "modified"
    old_mode: str | None = None
    new_mode: str | None = None
    similarity: int | None = None
    binary: bool = False
    hunks: list[Hunk] = field(default_factory=list)


def parse(data: bytes, *, window_lines: int = 400, window_overlap: int = 20) -> ParsedDiff:
    """Parse a unified diff (git, hg, svn, bzr, GNU diff, mbox patches) into reviewable hunks.

    Hunks longer than ``window_lines`` are split into windows overlapping by ``window_overlap`` lines
    so that a reviewer or the student never has to read a 12 000-line hunk at once.
    """
    if window_lines < 2 or not 0 <= window_overlap < window_lines:
        raise ConfigError(f"diff windows need window_lines >= 2 and 0 <= window_overlap < window_lines "
                          f"(got {window_lines} and {window_overlap})", hint="fix the window settings")
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if not data.strip():
        raise DiffError("the diff is empty — nothing to review")
    lines, warnings = _decode(data)
    parser = _Parser(lines, window_lines, window_overlap)
    parser.run()
    parser.raise_if_nothing()
    return ParsedDiff(files=tuple(parser.files), skipped=tuple(parser.skipped),
                      warnings=tuple(warnings + parser.warnings))


def _decode(data: bytes) -> tuple[list[str], list[str]]:
    """Bytes → lines without line ends. UTF-8, with latin-1 for the lines that are not; CRLF → LF."""
    warnings: list[str] = []
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        lines = data.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        lines, bad, first = [], 0, 0
        for number, raw in enumerate(data.split(b"\n"), 1):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                lines.append(raw.decode("latin-1"))
                bad, first = bad + 1, first or number
        warnings.append(f"decoded {bad} line(s) as latin-1 because they are not valid UTF-8 (first: line {first})")
    if lines and lines[-1] == "":
        lines.pop()
    if b"\r\n" in data:
        crlf = 0
        for k, line in enumerate(lines):
            if line.endswith("\r"):
                lines[k] = line[:-1]
                crlf += 1
        warnings.append(f"normalised {crlf} CRLF line end(s) to LF; line texts are given without the CR")
    return lines, warnings


def _unquote(name: str) -> str:
    """Undo git's C-style quoting ("a/with space\\303\\251.txt"); unquoted names pass through."""
    if len(name) < 2 or name[0] != '"' or name[-1] != '"':
        return name
    raw = _ESCAPE_RE.sub(lambda m: bytes([int(m[1], 8) & 0xFF]) if m[1] else _ESCAPES.get(m[2], m[2]),
                         name[1:-1].encode("utf-8", "surrogatepass"))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _quoted_token(text: str) -> tuple[str, str]:
    """Split a leading C-quoted token off ``text``; returns (token with quotes, rest)."""
    match = _QUOTED_RE.match(text)
    return (match[0], text[match.end():].lstrip(" ")) if match else (text, "")


def _split_git_names(rest: str) -> tuple[str, str]:
    """The two names of a ``diff --git`` line; ambiguous with spaces, so ---/+++ and rename lines win."""
    if rest.startswith('"'):
        first, second = _quoted_token(rest)
        return first, second
    if rest.endswith('"') and ' "' in rest:
        cut = rest.rindex(' "')
        return rest[:cut], rest[cut + 1:]
    half = len(rest) // 2
    if len(rest) % 2 == 1 and rest[half] == " ":
        left, right = rest[:half], rest[half + 1:]
        if left == right or (left[2:] == right[2:] and left[1:2] == right[1:2] == "/"):
            return left, right
    cut = rest.find(" b/")
    if cut < 0:
        cut = rest.find(" ")
    return (rest[:cut], rest[cut + 1:]) if cut >= 0 else (rest, rest)


def _has_prefix(name: str) -> bool:
    return len(name) > 2 and name[1] == "/" and name[0] in _PREFIXES


def _header_name(text: str) -> str:
    """A ---/+++ line's name without the timestamp GNU diff, hg and svn append after a tab."""
    if text.startswith('"'):
        return _unquote(_quoted_token(text)[0])
    return text.split("\t", 1)[0].rstrip(" ") if "\t" in text else text


def _plain_names(old: str, new: str) -> tuple[str, str]:
    """Strip directory prefixes from non-git headers: a/ b/, or `diff -r dir1 dir2` first components."""
    real = [n for n in (old, new) if n != _DEV_NULL]
    if real and all(_has_prefix(n) for n in real) and (len(real) == 1 or old[0] != new[0]):
        return tuple(n if n == _DEV_NULL else n[2:] for n in (old, new))  # type: ignore[return-value]
    if len(real) == 2 and "/" in old and "/" in new:
        (h1, t1), (h2, t2) = old.split("/", 1), new.split("/", 1)
        if t1 == t2 and h1 != h2:
            return t1, t2
    return old, new


class _Parser:
    """One streaming pass over the decoded lines; collects files, skips and warnings."""

    def __init__(self, lines: list[str], window_lines: int, window_overlap: int) -> None:
        self.lines, self.n = lines, len(lines)
        self.window_lines, self.window_overlap = window_lines, window_overlap
        self.files: list[FilePatch] = []
        self.skipped: list[SkippedFile] = []
        self.warnings: list[str] = []
        self.orphan_hunks = 0
        self.ignored = 0
        self.context_format = False
        self.index_path: str | None = None

    def run(self) -> None:
        """Dispatch on what starts each file; anything else is text around the diff and is ignored."""
        lines, n, i = self.lines, self.n, 0
        while i < n:
            line = lines[i]
            if line.startswith("diff --git "):
                i = self._git_file(i)
            elif line.startswith(("diff --cc ", "diff --combined ")):
                i = self._combined(i)
            elif line.startswith("--- ") and i + 1 < n and lines[i + 1].startswith("+++ "):
                i = self._plain_file(i)
            elif line.startswith("@@ "):
                i = self._orphan(i)
            else:
                self._loose_line(line)
                i += 1
        if self.ignored and (self.files or self.skipped):
            self.warnings.append(f"ignored {self.ignored} line(s) outside any file (mail headers, prose, trailing text)")
        if self.orphan_hunks and (self.files or self.skipped):
            self.warnings.append(f"ignored {self.orphan_hunks} hunk(s) without a file header")

    def raise_if_nothing(self) -> None:
        """Input that yielded no file at all is not a diff we can review: say what it looked like."""
        if self.files or self.skipped:
            return
        if self.context_format:
            raise DiffError("this is a context-format diff (*** / --- sections); Sieve reads unified diffs",
                            hint="regenerate it with `diff -u` or `git diff`")
        if self.orphan_hunks:
            raise DiffError(f"found {self.orphan_hunks} hunk(s) but no file headers, so no file to comment on",
                            hint="pass the output of `git diff`, which names each file")
        raise DiffError("no file headers found — pass the output of `git diff`")

    def _loose_line(self, line: str) -> None:
        """Lines between files: a few carry a file of their own (binary notes, submodule summaries)."""
        if line.startswith("Binary files "):
            match = _BINARY_RE.match(line)
            if match:
                old, new = _plain_names(_header_name(match[1]), _header_name(match[2]))
                self.skipped.append(SkippedFile(old if new == _DEV_NULL else new, "binary file"))
                return
        elif line.startswith("Submodule "):
            match = _SUBMODULE_RE.match(line)
            if match:
                self.skipped.append(SkippedFile(_unquote(match[1]), "submodule"))
                return
        elif line.startswith("Index: "):
            self.index_path = line[7:].strip()
        elif line.startswith("Cannot display: file marked as a binary type") and self.index_path:
            self.skipped.append(SkippedFile(self.index_path, "binary file"))
            self.index_path = None
            return
        elif line.startswith("***************"):
            self.context_format = True
        if line and not line.startswith(_PREAMBLES):
            self.ignored += 1

    def _git_file(self, i: int) -> int:
        """A ``diff --git`` file: extended header lines, then hunks or a binary patch."""
        lines, n = self.lines, self.n
        first, second = _split_git_names(lines[i][11:])
        first, second = _unquote(first), _unquote(second)
        prefixed = _has_prefix(first) and _has_prefix(second)
        info = _FileInfo(old=first[2:] if prefixed else first, new=second[2:] if prefixed else second, git=True)
        i += 1
        while i < n:
            line = lines[i]
            if line.startswith(("@@ ", "diff ")) or not _git_header_line(line, info, prefixed):
                break
            i += 1
            if line == "GIT binary patch":
                while i < n and not lines[i].startswith("diff "):
                    i += 1
                break
        return self._read_hunks(i, info)

    def _plain_file(self, i: int) -> int:
        """A ---/+++ pair without a git header (GNU diff, hg, svn, bzr, pasted patches)."""
        old = _header_name(self.lines[i][4:])
        new = _header_name(self.lines[i + 1][4:])
        old, new = _plain_names(_unquote(old), _unquote(new))
        info = _FileInfo(old=old, new=new)
        if old == _DEV_NULL:
            info.status = "added"
        elif new == _DEV_NULL:
            info.status = "deleted"
        return self._read_hunks(i + 2, info)

    def _combined(self, i: int) -> int:
        """Merge-commit diffs have one column per parent; they cannot be anchored on one side: skip."""
        path = _unquote(self.lines[i].split(" ", 2)[2])
        i += 1
        while i < self.n and not self.lines[i].startswith("diff "):
            i += 1
        self.skipped.append(SkippedFile(path, "combined merge diff"))
        return i

    def _orphan(self, i: int) -> int:
        """A hunk with no file header before it: step over it by its counts so its body is not misread."""
        self.orphan_hunks += 1
        try:
            return self._read_hunk(i, _FileInfo(), "", None)
        except _Malformed as bad:
            return self._skip_rest(max(bad.at, i + 1))

    def _read_hunks(self, i: int, info: _FileInfo) -> int:
        """Read the file's hunks; a malformed one skips this file (with the line number) and no other."""
        path, old_path = _paths(info)
        try:
            while i < self.n and self.lines[i].startswith("@@ "):
                i = self._read_hunk(i, info, path, old_path)
        except _Malformed as bad:
            self.skipped.append(SkippedFile(path, f"malformed hunk at line {bad.at + 1}: {bad.detail}"))
            return self._skip_rest(bad.at)
        self._finish(info)
        return i

    def _skip_rest(self, i: int) -> int:
        """After a malformed hunk, step to the next file header (the rest of that file is unreliable)."""
        lines, n = self.lines, self.n
        while i < n:
            line = lines[i]
            if line.startswith(("diff ", "Index: ")) or (
                    line.startswith("--- ") and i + 1 < n and lines[i + 1].startswith("+++ ")):
                return i
            i += 1
        return i

    def _finish(self, info: _FileInfo) -> None:
        """File → FilePatch, or SkippedFile when there is nothing to review in it."""
        if not info.git and info.status == "modified" and len(info.hunks) == 1:
            only = info.hunks[0]
            if only.old_start == 0 and only.old_count == 0:
                info.status = "added"
                info.hunks = [replace(h, old_path=None) for h in info.hunks]
            elif only.new_start == 0 and only.new_count == 0:
                info.status = "deleted"
        path, old_path = _paths(info)
        bad_path = path_problem(path) or (path_problem(old_path) if old_path else None)
        if bad_path:  # no file can have this name: shown escaped and shortened, never opened
            self.skipped.append(SkippedFile(display_path(path), bad_path))
            return
        reason = _skip_reason(info)
        if reason:
            self.skipped.append(SkippedFile(path, reason))
            return
        self.files.append(FilePatch(path=path, old_path=old_path, status=info.status,  # type: ignore[arg-type]
                                    hunks=tuple(info.hunks), old_mode=info.old_mode, new_mode=info.new_mode,
                                    similarity=info.similarity))

    def _read_hunk(self, i: int, info: _FileInfo, path: str, old_path: str | None) -> int:
        """Read one hunk, counting body lines by the header (content may look like ---/+++ or headers)."""
        lines, n = self.lines, self.n
        header = lines[i]
        match = _HUNK_RE.match(header)
        if match is None:
            raise _Malformed(i, f"unreadable hunk header {header[:80]!r}")
        old_start, new_start = int(match[1]), int(match[3])
        old_count = 1 if match[2] is None else int(match[2])
        new_count = 1 if match[4] is None else int(match[4])
        old_no, new_no, old_left, new_left = old_start, new_start, old_count, new_count
        body: list[DiffLine] = []
        add = body.append
        i += 1
        while old_left > 0 or new_left > 0:
            if i >= n:
                raise _Malformed(i, f"the diff ends inside the hunk ({old_left} old and {new_left} new "
                                    f"line(s) missing for {header[:60]!r})")
            line = lines[i]
            kind = line[:1]
            if kind == "+" and new_left:
                add(DiffLine("+", line[1:], None, new_no))
                new_no += 1
                new_left -= 1
            elif kind == "-" and old_left:
                add(DiffLine("-", line[1:], old_no, None))
                old_no += 1
                old_left -= 1
            elif (kind == " " or not line) and old_left and new_left:
                add(DiffLine(" ", line[1:], old_no, new_no))
                old_no += 1
                new_no += 1
                old_left -= 1
                new_left -= 1
            elif kind == "\\" and body:
                body[-1] = replace(body[-1], no_newline=True)
            else:
                raise _Malformed(i, f"expected {old_left} more old and {new_left} more new line(s) as the "
                                    f"header {header[:60]!r} says, found {line[:60]!r}")
            i += 1
        if i < n and lines[i][:1] == "\\" and body:
            body[-1] = replace(body[-1], no_newline=True)
            i += 1
        if body:
            ranges = (old_start, old_count, new_start, new_count)
            info.hunks.extend(self._windows(body, ranges, match[5] or "", header, path, old_path))
        return i

    def _windows(self, body: list[DiffLine], ranges: tuple[int, int, int, int], section: str, header: str,
                 path: str, old_path: str | None) -> list[Hunk]:
        """Split a huge hunk into overlapping windows, each with a header giving its own ranges."""
        size = self.window_lines
        if len(body) <= size:
            return [Hunk(path, old_path, header, *ranges, tuple(body))]
        starts = [0]
        while starts[-1] + size < len(body):
            starts.append(starts[-1] + size - self.window_overlap)
        old_start, old_count, new_start, new_count = ranges
        last_old, last_new, seen = old_start - 1, new_start - 1, 0  # numbers of the last line before a window
        out = []
        for index, start in enumerate(starts):
            for line in body[seen:start]:
                last_old = line.old_lineno or last_old
                last_new = line.new_lineno or last_new
            seen = max(seen, start)
            chunk = body[start:start + size]
            olds = [line.old_lineno for line in chunk if line.kind != "+"]
            news = [line.new_lineno for line in chunk if line.kind != "-"]
            w_old = olds[0] if olds else (old_start if old_count == 0 else last_old)
            w_new = news[0] if news else (new_start if new_count == 0 else last_new)
            w_header = f"@@ -{w_old},{len(olds)} +{w_new},{len(news)} @@" + (f" {section}" if section else "")
            out.append(Hunk(path, old_path, w_header, w_old, len(olds), w_new, len(news),  # type: ignore[arg-type]
                            tuple(chunk), window=index, windows=len(starts)))
        return out


def _git_header_line(line: str, info: _FileInfo, prefixed: bool) -> bool:
    """Apply one git extended header line to ``info``; False when the line is not a header line."""
    if line.startswith("index "):
        parts = line.split()
        if len(parts) == 3:
            info.old_mode, info.new_mode = info.old_mode or parts[2], info.new_mode or parts[2]
    elif line.startswith(("--- ", "+++ ")):
        name = _header_name(line[4:])
        if name == _DEV_NULL:
            info.status = "added" if line[0] == "-" else "deleted"
        else:
            name = name[2:] if prefixed and _has_prefix(name) else name
            if line[0] == "-":
                info.old = name
            else:
                info.new = name
    elif line.startswith(("Binary files ", "GIT binary patch")):
        info.binary = True
    else:
        return _git_meta_line(line, info)
    return True


def _git_meta_line(line: str, info: _FileInfo) -> bool:
    """Mode, rename, copy and similarity lines of a git header."""
    key, _, value = line.partition(" ")
    if line.startswith(("old mode ", "new mode ")):
        if key == "old":
            info.old_mode = line[9:]
        else:
            info.new_mode = line[9:]
    elif line.startswith("new file mode "):
        info.status, info.new_mode = "added", line[14:]
    elif line.startswith("deleted file mode "):
        info.status, info.old_mode = "deleted", line[18:]
    elif line.startswith(("rename from ", "copy from ")):
        info.status, info.old = ("renamed" if key == "rename" else "copied"), _unquote(value[5:])
    elif line.startswith(("rename to ", "copy to ")):
        info.new = _unquote(value[3:])
    elif line.startswith("similarity index "):
        digits = line[17:].rstrip("%")
        info.similarity = int(digits) if digits.isdigit() else None
    elif not line.startswith("dissimilarity index "):
        return False
    return True


def _paths(info: _FileInfo) -> tuple[str, str | None]:
    """(path, old_path): the post-image path, or the pre-image one for deleted files."""
    old = None if info.old in (None, _DEV_NULL) else info.old
    new = None if info.new in (None, _DEV_NULL) else info.new
    if info.status == "deleted":
        return old or new or "", old or new
    if info.status == "added":
        return new or old or "", None
    return new or old or "", old or new


def _skip_reason(info: _FileInfo) -> str | None:
    """Why a file has nothing to review, or None when it has."""
    modes = (info.old_mode, info.new_mode)
    if info.binary:
        return "binary file"
    if _GITLINK in modes or (info.hunks and all(
            line.text.startswith("Subproject commit ") for hunk in info.hunks for line in hunk.lines)):
        return "submodule"
    if _SYMLINK in modes:
        return "symlink"
    if info.hunks:
        return None
    mode_change = (f"mode change {info.old_mode} → {info.new_mode}"
                   if info.old_mode and info.new_mode and info.old_mode != info.new_mode else "")
    if info.status == "added":
        return "empty file"
    if info.status == "deleted":
        return "empty file deleted"
    if info.status in ("renamed", "copied"):
        verb = "renamed" if info.status == "renamed" else "copied"
        return f"{verb} from {info.old} without content changes" + (f", {mode_change}" if mode_change else "")
    if mode_change:
        return f"mode change only {info.old_mode} → {info.new_mode}"
    return "no content changes"
