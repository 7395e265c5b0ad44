"""The offline default reviewer for Python: ruff on the post-image of the changed files.

Ruff runs ``--isolated`` on copies written to a temporary directory, so the repository's own ruff
configuration, caches and unrelated files play no part, and nothing is written into the checkout.
The default rule selection aims at bugs and security problems, not style: pyflakes (F), bugbear (B),
bandit (S), pylint errors (PLE), syntax errors and a few pycodestyle checks that are real bugs
(``== None``, bare ``except``); the noisiest of those (``assert``, calls in defaults, ``random``,
every ``subprocess`` call) are ignored.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.errors import ReviewerError
from bot.findings import Finding, ParsedDiff, ReviewerResult, Skip
from bot.registry import require
from bot.reviewers.base import (
    REVIEWERS,
    AddedLines,
    ReviewContext,
    SkipTally,
    anchor_on,
    code_for,
    dedupe,
    line_suggestion,
    none_readable,
)
from bot.reviewers.origin import ruff_level, ruff_rationale

PYTHON_SUFFIXES = (".py", ".pyi")


@dataclass(frozen=True)
class RuffConfig:
    select: tuple[str, ...] = field(
        default=("E9", "E711", "E712", "E721", "E722", "F", "B", "S", "PLE"),
        metadata={"help": "ruff rule codes or prefixes to check (passed as --select)"})
    ignore: tuple[str, ...] = field(
        default=("S101", "B008", "S311", "S603", "S607"),
        metadata={"help": "rule codes to leave out (passed as --ignore)"})
    executable: str | None = field(
        default=None, metadata={"help": "path to the ruff executable; default: next to Python, then PATH"})
    timeout_s: float = field(default=120.0, metadata={"help": "seconds before a ruff run is abandoned"})
    suggest_unsafe_fixes: bool = field(
        default=False, metadata={"help": "also offer fixes ruff marks unsafe (may change behaviour)"})

    def __post_init__(self) -> None:
        require(self.timeout_s > 0, "reviewers.ruff.timeout_s", self.timeout_s, "a number of seconds > 0")


class RuffReviewer:
    """Runs ruff on changed Python files; keeps results on added lines."""

    name = "ruff"

    def __init__(self, config: RuffConfig | None = None) -> None:
        self.config = config or RuffConfig()
        self._exe = "ruff"  # the executable the last run used

    def review(self, diff: ParsedDiff, ctx: ReviewContext) -> ReviewerResult:
        added = AddedLines(diff)
        paths = sorted(p for p in added.paths if p.endswith(PYTHON_SUFFIXES))
        result = ReviewerResult()
        if not paths:
            return result
        with tempfile.TemporaryDirectory(prefix="sieve-ruff-") as tmp:
            root = Path(tmp)
            sources: dict[str, str] = {}
            for path in paths:
                content = ctx.read_file(path)
                if content is None:
                    result.skipped.append(Skip(path, "ruff: the file's new content is unavailable"))
                    continue
                text = content.decode("utf-8", errors="replace")
                target = root / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8", newline="")
                sources[path] = text
            if not sources:
                raise none_readable(self.name, paths, ctx)
            diagnostics = self._run(root, sorted(sources))
        tally = SkipTally()
        for diag in diagnostics:
            finding = self._finding(diag, root, added, sources, tally)
            if finding is not None:
                result.findings.append(finding)
        result.findings = dedupe(result.findings)
        result.skipped.extend(tally.skips("ruff finding"))
        return result

    def _run(self, root: Path, rel_paths: list[str]) -> list[dict[str, Any]]:
        """Run ruff once over all files; its JSON report is a list of diagnostics."""
        exe = self._exe = find_ruff(self.config.executable)  # also asked for rule categories (once per process)
        cmd = [exe, "check", "--output-format", "json", "--no-cache", "--exit-zero", "--isolated",
               "--select", ",".join(self.config.select)]
        if self.config.ignore:
            cmd += ["--ignore", ",".join(self.config.ignore)]
        cmd += ["--", *rel_paths]
        try:
            proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True,
                                  timeout=self.config.timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise ReviewerError(f"ruff took longer than {self.config.timeout_s:g} s",
                                hint="raise reviewers.ruff.timeout_s or review fewer files") from None
        except OSError as exc:
            raise ReviewerError(f"could not run ruff at {exe}: {exc}",
                                hint="install it with `pip install ruff`") from None
        if proc.returncode != 0:
            raise ReviewerError(f"ruff failed (exit {proc.returncode}): {proc.stderr.strip()[:500]}",
                                hint="check reviewers.ruff.select / ignore for unknown rule codes")
        try:
            report = json.loads(proc.stdout or "[]")
        except json.JSONDecodeError:
            raise ReviewerError("ruff printed something that is not JSON",
                                hint="use ruff >= 0.5, which supports --output-format json") from None
        return report if isinstance(report, list) else []

    def _finding(self, diag: dict[str, Any], root: Path, added: AddedLines, sources: dict[str, str],
                 tally: SkipTally) -> Finding | None:
        """One ruff diagnostic → a finding on an added line, or a tallied drop."""
        path = _relative(diag.get("filename", ""), root)
        line = int((diag.get("location") or {}).get("row") or 0)
        hunk = added.hunk_at(path, line)
        if hunk is None:
            tally.add(path, "on lines this diff did not add")
            return None
        rule = diag.get("code") or "invalid-syntax"
        return Finding(anchor=anchor_on(hunk, line), review=f"{rule} {diag.get('message', '').strip()}",
                       source=self.name, code=code_for(hunk, line), rule_id=rule,
                       suggestion=self._suggestion(diag.get("fix"), sources[path], line),
                       hint=diag.get("severity"), level=ruff_level(rule, self._exe),
                       rationale=ruff_rationale(rule, self._exe))

    def _suggestion(self, fix: dict[str, Any] | None, text: str, line: int) -> str | None:
        if not fix or not fix.get("edits"):
            return None
        applicability = fix.get("applicability")
        if applicability != "safe" and not (applicability == "unsafe" and self.config.suggest_unsafe_fixes):
            return None
        return line_suggestion(text, line, fix["edits"])


def find_ruff(explicit: str | None = None) -> str:
    """The ruff executable: configured path, else next to this Python, else on PATH."""
    if explicit:
        if Path(explicit).is_file():
            return explicit
        raise ReviewerError(f"ruff executable {explicit!r} does not exist",
                            hint="fix reviewers.ruff.executable or remove it to search PATH")
    name = "ruff.exe" if sys.platform == "win32" else "ruff"
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which("ruff")
    if found:
        return found
    raise ReviewerError("the ruff reviewer needs the `ruff` executable, which was not found",
                        hint="install it with `pip install ruff` (into the same environment as Sieve)")


def _relative(filename: str, root: Path) -> str:
    path = Path(filename)
    if path.is_absolute():
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return path.as_posix()
    return path.as_posix()


@REVIEWERS.register("ruff", options=RuffConfig)
def make_ruff(config: RuffConfig | None = None) -> RuffReviewer:
    return RuffReviewer(config)
