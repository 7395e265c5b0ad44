"""The real `sieve` command on real diffs made by git in the test, rated by the real packaged student."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gitrepo import GitRepo

BASE = '''import json


def load(path):
    with open(path) as handle:
        return json.load(handle)
'''

CHANGED = '''import json
import os


def load(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except:
        return None


def run(cmd):
    return eval(cmd)


def size(path):
    return os.path.getsize(pth)
'''


def sieve(*args: str, cwd: Path, stdin: bytes | None = None, env: dict | None = None):
    """Run the installed command exactly as a user would."""
    exe = Path(sys.executable).with_name("sieve")
    full_env = {**os.environ, **(env or {})}
    full_env.pop("GITHUB_EVENT_PATH", None)
    full_env.pop("CI_MERGE_REQUEST_IID", None)
    return subprocess.run([str(exe), *args], cwd=cwd, input=stdin, capture_output=True, timeout=300, env=full_env)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> GitRepo:
    r = GitRepo(tmp_path_factory.mktemp("cli") / "repo")
    r.write("app/io.py", BASE)
    r.write("logo.png", bytes(range(256)) * 4)
    r.commit("base")
    r.write("app/io.py", CHANGED)
    r.write("logo.png", bytes(reversed(range(256))) * 4)
    r.write("notes/latin.txt", "caf\xe9\n".encode("latin-1"))
    r.git("add", "-A")
    return r


@pytest.fixture(scope="module")
def patch(repo: GitRepo) -> bytes:
    return repo.git("diff", "--cached", "--no-color", "--binary")


@pytest.fixture(scope="module")
def json_run(repo: GitRepo, patch: bytes, tmp_path_factory):
    path = tmp_path_factory.mktemp("out") / "change.patch"
    path.write_bytes(patch)
    done = sieve("review", "--diff", str(path), "--format", "json", "--model", "base", "--no-explain",
                 cwd=repo.root)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def test_json_has_one_object_per_finding_on_changed_lines(json_run, repo: GitRepo):
    findings = json_run["findings"]
    rules = {f["rule_id"] for f in findings}
    assert {"E722", "S307", "F821"} <= rules
    post_image = (repo.root / "app/io.py").read_text().splitlines()
    for f in findings:
        assert set(f) >= {"path", "line", "side", "severity", "probabilities", "review", "source", "posted",
                          "skip_reason"}
        assert f["path"] == "app/io.py" and f["side"] == "RIGHT"
        assert abs(sum(f["probabilities"].values()) - 1.0) < 1e-4
        assert f["severity"] == max(f["probabilities"], key=f["probabilities"].get)
        assert (f["skip_reason"] is None) == f["posted"]
    undefined = next(f for f in findings if f["rule_id"] == "F821")
    assert "pth" in post_image[undefined["line"] - 1]


def test_binary_file_is_reported_as_skipped_not_lost(json_run):
    skipped = {s["where"]: s["reason"] for s in json_run["summary"]["skipped"]}
    assert skipped.get("logo.png") == "binary file"
    assert json_run["summary"]["model"] == "smollm2-base" or json_run["summary"]["model"]


def test_stdin_and_text_output_with_cap(repo: GitRepo, patch: bytes):
    done = sieve("review", "-", "--model", "base", "--no-explain", "--max-comments", "1", "--threshold", "trivial",
                 cwd=repo.root, stdin=patch)
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode()
    assert "app/io.py" in out and "over the comment cap (1)" in out
    assert "Posted 1" in out


def test_fail_on_gives_exit_code_1(repo: GitRepo, patch: bytes):
    done = sieve("review", "-", "--model", "base", "--no-explain", "--fail-on", "trivial", "--format", "sarif",
                 cwd=repo.root, stdin=patch)
    assert done.returncode == 1
    sarif = json.loads(done.stdout)
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"]
    assert "--fail-on" in done.stderr.decode()


@pytest.mark.parametrize("stdin, message", [
    (b"", "the diff is empty"),
    (b"hello, this is not a diff\n", "no file headers"),
])
def test_bad_input_is_one_clear_line(tmp_path: Path, stdin: bytes, message: str):
    done = sieve("review", "-", "--model", "base", cwd=tmp_path, stdin=stdin)
    err = done.stderr.decode()
    assert done.returncode == 2
    assert message in err and "Traceback" not in err
    assert err.startswith("error: ")


def test_missing_model_and_bad_config_are_clear(repo: GitRepo, patch: bytes, tmp_path: Path):
    done = sieve("review", "-", "--model", str(tmp_path / "nowhere"), cwd=repo.root, stdin=patch)
    assert done.returncode == 2 and "Traceback" not in done.stderr.decode()
    assert "nowhere" in done.stderr.decode()
    (tmp_path / ".sieve.toml").write_text("treshold = 'major'\n")
    done = sieve("review", "-", cwd=tmp_path, stdin=patch)
    assert done.returncode == 2 and "treshold" in done.stderr.decode()
    done = sieve("review", "-", "--threshold", "severe", cwd=repo.root, stdin=patch)
    assert done.returncode == 2 and "unknown severity" in done.stderr.decode()


def test_markdown_with_explanations_for_posted_findings(repo: GitRepo, patch: bytes, tmp_path: Path):
    out = tmp_path / "review.md"
    done = sieve("review", "-", "--model", "base", "--format", "markdown", "--out", str(out),
                 "--threshold", "critical", "--max-comments", "2", cwd=repo.root, stdin=patch)
    assert done.returncode == 0, done.stderr.decode()
    text = out.read_text()
    assert text.startswith("## Sieve review") and "<!-- sieve:summary -->" in text
    assert text.count("(ruff; posted)") <= 2
