"""The ruff reviewer on real ``git diff`` output from a throwaway repository."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bot.diff import parse
from bot.errors import ReviewerError
from bot.findings import ParsedDiff
from bot.reviewers import REVIEWERS, ReviewContext, RuffConfig, RuffReviewer
from bot.reviewers.base import line_suggestion
from bot.reviewers.ruff import find_ruff
from tests.gitrepo import GitRepo, make_repo

BASE = '''import json


def load(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except OSError:
        return None


def unused_before(x):
    return undefined_before
'''

HEAD = '''import json
import os


def load(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except:
        return None


def unused_before(x):
    return undefined_before


def ask():
    value = eval(input())
    return valeu
'''


def changed_repo(tmp_path: Path) -> tuple[GitRepo, ParsedDiff]:
    repo = make_repo(tmp_path / "repo")
    repo.write("pkg/mod.py", BASE)
    repo.write("README.md", "hello\n")
    repo.commit("base")
    repo.write("pkg/mod.py", HEAD)
    repo.write("README.md", "hello\nworld\n")
    repo.write("pkg/types.pyi", "def f(x: int) -> Missing: ...\n")
    repo.commit("head")
    return repo, parse(repo.diff("HEAD~1", "HEAD"))


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_findings_only_on_added_lines_with_real_line_numbers(tmp_path: Path) -> None:
    repo, diff = changed_repo(tmp_path)
    result = RuffReviewer().review(diff, ReviewContext.from_worktree(repo.root))
    by_rule = {(f.rule_id, f.anchor.path, f.anchor.line) for f in result.findings}
    assert ("F401", "pkg/mod.py", line_of(HEAD, "import os")) in by_rule
    assert ("E722", "pkg/mod.py", line_of(HEAD, "except:")) in by_rule
    assert ("S307", "pkg/mod.py", line_of(HEAD, "eval(input())")) in by_rule
    assert ("F821", "pkg/mod.py", line_of(HEAD, "return valeu")) in by_rule
    assert ("F821", "pkg/types.pyi", 1) in by_rule
    added = {(h.path, n) for h in diff.hunks for n in h.added_lines}
    for finding in result.findings:
        assert (finding.anchor.path, finding.anchor.line) in added
        assert finding.anchor.side == "RIGHT" and finding.source == "ruff"
        assert finding.review.startswith(f"{finding.rule_id} ")
        # the student's input: hunk text ending at the commented line
        assert finding.code.startswith("@@ ") and finding.code.splitlines()[-1].startswith("+")
    undefined = next(f for f in result.findings if f.rule_id == "F821" and f.anchor.path == "pkg/mod.py")
    assert undefined.review == "F821 Undefined name `valeu`"
    assert undefined.code.endswith("+    return valeu")
    # the pre-existing undefined name is on an unchanged line: dropped, counted once for the file
    assert not any("undefined_before" in f.review for f in result.findings)
    assert [s.where for s in result.skipped] == ["pkg/mod.py"]
    assert result.skipped[0].reason.startswith("1 ruff finding dropped")


def test_fixable_finding_carries_the_replacement_line(tmp_path: Path) -> None:
    repo, diff = changed_repo(tmp_path)
    result = RuffReviewer().review(diff, ReviewContext.from_worktree(repo.root))
    unused = next(f for f in result.findings if f.rule_id == "F401")
    assert unused.suggestion == ""  # delete the line
    assert all(f.suggestion is None for f in result.findings if f.rule_id in ("F821", "S307", "E722"))


def test_unsafe_fix_only_when_asked(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    repo.write("a.py", "def f(x):\n    return x\n")
    repo.commit("base")
    repo.write("a.py", "def f(x):\n    if x == None:\n        return 0\n    return x\n")
    repo.commit("head")
    diff, ctx = parse(repo.diff("HEAD~1", "HEAD")), ReviewContext.from_worktree(repo.root)
    plain = next(f for f in RuffReviewer().review(diff, ctx).findings if f.rule_id == "E711")
    assert plain.suggestion is None
    eager = RuffReviewer(RuffConfig(suggest_unsafe_fixes=True)).review(diff, ctx)
    fixed = next(f for f in eager.findings if f.rule_id == "E711")
    assert fixed.anchor.line == 2 and fixed.suggestion == "    if x is None:"


def test_non_python_and_unavailable_files(tmp_path: Path) -> None:
    repo, diff = changed_repo(tmp_path)
    readable = ReviewContext.from_worktree(repo.root).read_file
    result = RuffReviewer().review(diff, ReviewContext(read_file=lambda p: readable(p) if p == "pkg/mod.py" else None))
    assert result.findings  # the readable file is reviewed
    assert [s.where for s in result.skipped if "unavailable" in s.reason] == ["pkg/types.pyi"]  # README.md: silent


def test_no_changed_file_readable_is_an_error_not_a_clean_result(tmp_path: Path) -> None:
    """Run in the wrong folder (or on a host that gives no content), ruff would find nothing: that must not read
    as a clean review. The error names the files, where they were looked for, and --repo."""
    _, diff = changed_repo(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(ReviewerError, match=r"none of the 2 changed file\(s\) ruff reviews \(pkg/mod.py, "
                                            r"pkg/types.pyi\) under .*elsewhere — .*--repo"):
        RuffReviewer().review(diff, ReviewContext.from_worktree(elsewhere))
    with pytest.raises(ReviewerError, match="the host returned no content"):
        RuffReviewer().review(diff, ReviewContext(read_file=lambda path: None))


def test_syntax_error_on_added_line(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    repo.write("b.py", "x = 1\n")
    repo.commit("base")
    repo.write("b.py", "x = 1\ndef broken(:\n    pass\n")
    repo.commit("head")
    result = RuffReviewer().review(parse(repo.diff("HEAD~1", "HEAD")), ReviewContext.from_worktree(repo.root))
    assert any(f.rule_id == "invalid-syntax" and f.anchor.line == 2 for f in result.findings)


def test_line_suggestion_rejects_edits_beyond_the_line() -> None:
    text = "a = 1\nb = 2\n"
    edit = {"content": "", "location": {"row": 1, "column": 1}, "end_location": {"row": 3, "column": 1}}
    assert line_suggestion(text, 1, [edit]) is None
    inside = {"content": "c", "location": {"row": 2, "column": 1}, "end_location": {"row": 2, "column": 2}}
    assert line_suggestion(text, 2, [inside]) == "c = 2"


def test_missing_ruff_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(ReviewerError, match="pip install ruff"):
        find_ruff()
    with pytest.raises(ReviewerError, match="does not exist"):
        find_ruff(str(tmp_path / "nope"))


def test_bad_rule_selection_is_reported(tmp_path: Path) -> None:
    repo, diff = changed_repo(tmp_path)
    reviewer = REVIEWERS.create("ruff", RuffConfig(select=("NOTARULE",)))
    with pytest.raises(ReviewerError, match="select"):
        reviewer.review(diff, ReviewContext.from_worktree(repo.root))


def test_worktree_context_reads_inside_the_root_only(tmp_path: Path) -> None:
    repo, _ = changed_repo(tmp_path)
    (tmp_path / "outside.py").write_text("secret = 1\n")
    ctx = ReviewContext.from_worktree(repo.root, head_sha="abc123")
    assert ctx.read_file("pkg/mod.py") == HEAD.encode()
    assert ctx.read_file("../outside.py") is None and ctx.read_file("pkg") is None
    assert ctx.read_file("missing.py") is None and ctx.head_sha == "abc123"
    assert {"ruff", "sarif", "llm", "local"} <= set(REVIEWERS.names())


def test_findings_carry_ruffs_own_rationale_for_the_explainer(tmp_path: Path) -> None:
    repo, diff = changed_repo(tmp_path)
    result = RuffReviewer().review(diff, ReviewContext.from_worktree(repo.root))
    unused = next(f for f in result.findings if f.rule_id == "F401")
    # ruff's "Why is this bad?" for F401, as its own `ruff rule F401` documents it
    assert "unused imports" in unused.rationale.lower() and len(unused.rationale) <= 260
    evaluated = next(f for f in result.findings if f.rule_id == "S307")
    assert "eval" in evaluated.rationale and "arbitrary code" in evaluated.rationale
