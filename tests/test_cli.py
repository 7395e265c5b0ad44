"""The real `sieve` command on real diffs made by git in the test, rated by the real packaged student."""

from __future__ import annotations

import json
import os
import re
import shutil
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
    return subprocess.run([str(exe), *args], cwd=cwd, input=stdin, capture_output=True, timeout=300, env=full_env,
                          check=False)


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
    done = sieve("review", "--diff", str(path), "--format", "json", "--model", "smollm2", "--no-explain",
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
    done = sieve("review", "-", "--model", "smollm2", "--no-explain", "--max-comments", "1", "--threshold", "trivial",
                 cwd=repo.root, stdin=patch)
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode()
    assert "app/io.py" in out and "over the comment cap (1)" in out
    assert "1 would be posted" in out and "Posted" not in out  # a local review posts nothing


def test_fail_on_gives_exit_code_1(repo: GitRepo, patch: bytes):
    done = sieve("review", "-", "--model", "smollm2", "--no-explain", "--fail-on", "trivial", "--format", "sarif",
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
    done = sieve("review", "-", "--model", "smollm2", cwd=tmp_path, stdin=stdin)
    err = done.stderr.decode()
    assert done.returncode == 2
    assert message in err and "Traceback" not in err
    assert err.startswith("error: ")


def test_missing_model_and_bad_config_are_clear(repo: GitRepo, patch: bytes, tmp_path: Path):
    done = sieve("review", "-", "--model", str(tmp_path / "nowhere"), cwd=repo.root, stdin=patch)
    assert done.returncode == 64 and "Traceback" not in done.stderr.decode()  # 64: usage or configuration
    assert "nowhere" in done.stderr.decode()
    (tmp_path / ".sieve.toml").write_text("treshold = 'major'\n")
    done = sieve("review", "-", cwd=tmp_path, stdin=patch)
    assert done.returncode == 64 and "treshold" in done.stderr.decode()
    done = sieve("review", "-", "--threshold", "severe", cwd=repo.root, stdin=patch)
    assert done.returncode == 64 and "unknown severity" in done.stderr.decode()


def test_markdown_with_explanations_for_posted_findings(repo: GitRepo, patch: bytes, tmp_path: Path):
    out = tmp_path / "review.md"
    done = sieve("review", "-", "--model", "smollm2", "--format", "markdown", "--out", str(out),
                 "--threshold", "critical", "--max-comments", "2", cwd=repo.root, stdin=patch)
    assert done.returncode == 0, done.stderr.decode()
    text = out.read_text()
    assert text.startswith("## Sieve review") and "<!-- sieve:summary -->" in text
    assert text.count("(ruff; posted)") <= 2


# ---------------------------------------------------------------- the feedback store and the models folders
@pytest.mark.parametrize("argv", [
    ["feedback", "stats", "--db", "{db}"],  # the form the workflows use
    ["feedback", "--db", "{db}", "stats"],
    ["feedback", "export", "--db", "{db}", "--out", "{out}"],
    ["feedback", "--db", "{db}", "export", "--out", "{out}"],
])
def test_db_is_accepted_before_and_after_the_subcommand(tmp_path: Path, argv: list[str]):
    from bot.store import open_store

    db, out = tmp_path / "store" / "feedback.db", tmp_path / "curriculum.jsonl"
    db.parent.mkdir()
    open_store(db).close()  # what an earlier `sieve feedback collect --db` left
    done = sieve(*[a.format(db=db, out=out) for a in argv], cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert not (tmp_path / "sieve-feedback.db").exists()  # the named store, not the default
    missing = sieve(*[a.format(db=tmp_path / "nope.db", out=out) for a in argv], cwd=tmp_path)
    assert missing.returncode == 64 and f"there is no feedback store at {tmp_path / 'nope.db'}" in missing.stderr.decode()


def _my_models(tmp_path: Path) -> Path:
    """A models folder of the user's own: a copy of the shipped SmolLM2 student under a new name."""
    root = tmp_path / "my-models"
    shutil.copytree(Path(__file__).resolve().parents[1] / "models" / "smollm2-student", root / "mine")
    return root


def test_models_list_shows_yours_and_the_shipped_students(tmp_path: Path):
    root = _my_models(tmp_path)
    done = sieve("models", "list", "--format", "json", cwd=tmp_path, env={"SIEVE_MODELS_DIR": str(root)})
    assert done.returncode == 0, done.stderr.decode()
    listed = {(e["name"], e["source"]) for e in json.loads(done.stdout)}
    assert {("mine", "yours"), ("default", "packaged"), ("smollm2-student", "packaged")} <= listed
    table = sieve("models", "list", "--models-dir", str(root), cwd=tmp_path).stdout.decode()
    assert re.search(r"^mine .* yours$", table, re.MULTILINE) and f"yours: {root}" in table


def test_an_unknown_model_names_both_folders(tmp_path: Path, repo: GitRepo, patch: bytes):
    root = _my_models(tmp_path)
    done = sieve("review", "-", "--models-dir", str(root), "--model", "nosuch", cwd=repo.root, stdin=patch)
    err = done.stderr.decode()
    assert done.returncode == 64 and err.startswith("error: no model 'nosuch'") and "Traceback" not in err
    assert str(root) in err and "mine" in err and "smollm2-student" in err


@pytest.mark.slow
def test_review_with_a_model_from_your_folder(tmp_path: Path, repo: GitRepo, patch: bytes):
    root = _my_models(tmp_path)
    done = sieve("review", "-", "--models-dir", str(root), "--model", "mine", "--format", "json", cwd=repo.root,
                 stdin=patch)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["summary"]["model"].startswith("mine@")


def test_training_writes_only_to_a_folder_the_user_names(tmp_path: Path):
    from training.registry import models_root

    root = Path(__file__).resolve().parents[1]
    assert models_root(str(tmp_path / "a"), environ={}) == tmp_path / "a"
    assert models_root(None, environ={"SIEVE_MODELS_DIR": str(tmp_path / "b")}) == tmp_path / "b"
    assert models_root(None, environ={}) == root / "models"  # a source checkout: the models/ it ships
