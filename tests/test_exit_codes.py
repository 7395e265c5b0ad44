"""`sieve`'s exit codes, one meaning each, and a review that could not read the changed files never passing.

0 clean, 1 ``fail_on`` met, 2 incomplete (a part failed), 64 usage or configuration. Each case runs the installed
command in a fresh folder with a real git diff, as a CI job would; the rating cases use the small packaged base.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.errors import EXIT_FAIL_ON, EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE
from tests.gitrepo import make_repo

EXE = Path(sys.executable).with_name("sieve")
CLEAN = "def total(items):\n    return sum(items)\n"
RISKY = "import subprocess\n\n\ndef run(cmd):\n    return subprocess.run(cmd, shell=True)\n"


def sieve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIEVE_", "GITHUB_", "GITLAB_", "CI_"))}
    return subprocess.run([str(EXE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.fixture()
def change(tmp_path: Path):
    """A repository with a risky change to ``app/run.py``, its patch, and a folder that is not the repository."""
    repo = make_repo(tmp_path / "repo")
    repo.write("app/run.py", CLEAN)
    base = repo.commit("base")
    repo.write("app/run.py", RISKY)
    head = repo.commit("shell=True")
    patch = tmp_path / "change.patch"
    patch.write_bytes(repo.diff(base, head))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return repo, patch, elsewhere


def test_the_codes_are_distinct() -> None:
    assert len({EXIT_OK, EXIT_FAIL_ON, EXIT_INCOMPLETE, EXIT_USAGE}) == 4 and EXIT_USAGE == 64


@pytest.mark.parametrize("args, fragment", [
    (["review", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["review", "x.patch", "--format", "yaml"], "invalid choice: 'yaml'"),
    (["review", "x.patch", "--threshold", "severe"], "unknown severity"),
    (["review", "x.patch", "--model", "no-such-student"], "no model 'no-such-student'"),
    (["feedback", "collect", "--github", "o/r", "--since", "yesterday"], "is not an ISO 8601 date"),
], ids=["unknown flag", "bad choice", "bad setting", "unknown model", "bad date"])
def test_usage_and_configuration_errors_exit_64_in_one_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    (tmp_path / "x.patch").write_text("diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n")
    done = sieve(*args, cwd=tmp_path)
    err = done.stderr.strip()
    assert done.returncode == EXIT_USAGE, (done.returncode, err)
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and fragment in err, err


def test_a_bad_setting_in_the_file_exits_64(tmp_path: Path) -> None:
    (tmp_path / ".sieve.toml").write_text('threshold = "severe"\n')
    done = sieve("review", "x.patch", cwd=tmp_path)
    assert done.returncode == EXIT_USAGE and "unknown severity" in done.stderr, done.stderr


def test_review_outside_the_repository_without_repo_is_incomplete_and_names_repo(change) -> None:
    """Run from another folder, ruff can read none of the changed files: not a clean pass but exit 2, with one
    line that says so and names --repo (before, this exited 0 with an empty table)."""
    _, patch, elsewhere = change
    done = sieve("review", "--diff", str(patch), "--model", "smollm2", cwd=elsewhere)
    err = done.stderr.strip()
    assert done.returncode == EXIT_INCOMPLETE, (done.returncode, err)
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert "--repo" in err and "reviewer ruff: could read none of the 1 changed file(s)" in err and "app/run.py" in err
    assert str(elsewhere.resolve()) in err  # where it looked
    allowed = sieve("review", "--diff", str(patch), "--model", "smollm2", "--allow-reviewer-failure", cwd=elsewhere)
    assert allowed.returncode == EXIT_OK and "warning: reviewer ruff:" in allowed.stderr, allowed.stderr


@pytest.mark.slow
def test_the_same_review_with_repo_finds_and_fails_on(change) -> None:
    repo, patch, elsewhere = change
    found = sieve("review", "--diff", str(patch), "--repo", str(repo.root), "--model", "smollm2", "--format", "json",
                  "--threshold", "trivial", cwd=elsewhere)
    assert found.returncode == EXIT_OK and '"rule_id": "S602"' in found.stdout.replace(" ", " "), found.stderr
    failing = sieve("review", "--diff", str(patch), "--repo", str(repo.root), "--model", "smollm2",
                    "--fail-on", "trivial", cwd=elsewhere)
    assert failing.returncode == EXIT_FAIL_ON and "--fail-on" in failing.stderr, failing.stderr


def test_a_failing_reviewer_exits_2(change) -> None:
    repo, patch, _ = change
    done = sieve("review", "--diff", str(patch), "--model", "smollm2", "--sarif", "missing.sarif", cwd=repo.root)
    assert done.returncode == EXIT_INCOMPLETE and "the review is incomplete: reviewer sarif:" in done.stderr
