"""Every bad input is one clear line and a non-zero exit (never a traceback, never "internal error"), found
before the expensive work; a file whose name no file system can hold is skipped with its reason, not fatal.

Each case runs the installed `sieve` command as a user would, in a fresh folder.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot import store as store_module
from bot.cli import main
from bot.errors import StoreError
from bot.store import Store

GOOD = "diff --git a/ok.py b/ok.py\n--- a/ok.py\n+++ b/ok.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"


def quoted_patch(path: str) -> str:
    """A git diff of one file, its name in git's C quoting (``\\000`` is a NUL byte)."""
    name = path.replace("\\", "\\\\") if "\\000" not in path else path
    return f'diff --git "a/{name}" "b/{name}"\n--- "a/{name}"\n+++ "b/{name}"\n@@ -1 +1 @@\n-x = 1\n+x = 2\n'


def sieve(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("sieve")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SIEVE_", "GITHUB_", "GITLAB_", "CI_"))}
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
                          env={**clean, **(env or {})})


def one_clear_line(done: subprocess.CompletedProcess[str], *fragments: str, code: int = 64) -> str:
    """One ``error:`` line holding every fragment; exit 64 (usage or configuration) unless ``code`` says else."""
    err = done.stderr.strip()
    assert done.returncode == code, (done.returncode, err)
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in err and "internal error" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def manifest_folder(root: Path, **entries: object) -> Path:
    folder = root / "m"
    folder.mkdir(parents=True)
    (folder / "adapter.gguf").write_bytes(b"GGUF")
    (folder / "manifest.json").write_text(json.dumps({"name": "m", "base": "smollm2",
                                                      "prompt_version": "sieve-severity-v3", **entries}))
    return folder


# (name, .sieve.toml text or None, extra args, environment, expected fragments)
CASES = [
    ("empty threshold flag", None, ["--threshold", ""], {}, ["--threshold was given an empty value"]),
    ("threshold none", 'threshold = "none"\n', [], {}, ["setting threshold", "unknown severity",
                                                         "critical, major, minor, trivial"]),
    ("timeout nan", "timeout = nan\n", [], {}, ["setting timeout = NaN", "expected a number"]),
    ("sieve = 1", "sieve = 1\n", [], {}, ["sieve = 1", "is not a table"]),
    ("lexical flase", 'lexical = "flase"\n', [], {}, ["setting lexical", "expected true or false"]),
    ("max_comments 2.9", "max_comments = 2.9\n", [], {}, ["max_comments = 2.9", "expected a whole number"]),
    ("max_comments true", "max_comments = true\n", [], {}, ["max_comments = true", "expected a whole number"]),
    ("rater bogus", 'rater = "bogus"\n', [], {}, ["unknown rater 'bogus'", "llamacpp, openai"]),
    ("ignore table", "ignore = {a = 1}\n", [], {}, ["setting ignore", "expected a list of strings"]),
    ("reviewers empty", "reviewers = []\n", [], {}, ["reviewers is empty"]),
    ("max_diff_bytes -1", "max_diff_bytes = -1\n", [], {}, ["max_diff_bytes is -1", "≥ 1"]),
    ("unknown llm option", "[reviewers.llm]\nmax_input_tokenz = 5\n", [], {},
     ["unknown key reviewers.llm.max_input_tokenz", "max_input_tokens"]),
    ("llm option of the wrong type", "[reviewers.llm]\nmax_input_tokens = \"many\"\n", [], {},
     ["reviewers.llm.max_input_tokens", "expected a whole number"]),
    ("unknown reviewer table", "[reviewers.lint]\nx = 1\n", [], {}, ["unknown reviewer 'lint'"]),
    ("bad github table", "[github]\ntrusted_users = \"octo\"\n", [], {},
     ["github.trusted_users", "expected a list of whole numbers", "GET /users/LOGIN"]),
    ("max_comments flag", None, ["--max-comments", "2.9"], {}, ["--max-comments \"2.9\"", "whole number"]),
    ("env bool", None, [], {"SIEVE_LEXICAL": "flase"}, ["SIEVE_LEXICAL=\"flase\"", "true or false"]),
]


@pytest.mark.parametrize("name,toml,args,env,fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_settings_are_one_clear_line(tmp_path: Path, name, toml, args, env, fragments) -> None:
    (tmp_path / "p.diff").write_text(GOOD)
    if toml is not None:
        (tmp_path / ".sieve.toml").write_text(toml)
    one_clear_line(sieve("review", "p.diff", "--model", "smollm2", *args, cwd=tmp_path, env=env), *fragments)


def test_a_bad_timeout_or_host_url_fails_before_any_request(tmp_path: Path) -> None:
    token = {"GITLAB_TOKEN": "t" * 20, "GITHUB_TOKEN": "t" * 20}
    one_clear_line(sieve("review", "--gitlab", "g/p!1", cwd=tmp_path, env={**token, "SIEVE_TIMEOUT": "0"}),
                   "setting timeout is 0.0", "> 0")
    one_clear_line(sieve("review", "--gitlab", "g/p!1", cwd=tmp_path, env={**token, "SIEVE_TIMEOUT": "-5"}),
                   "setting timeout is -5.0")
    one_clear_line(sieve("review", "--github", "o/r#1", cwd=tmp_path, env={**token, "SIEVE_GITHUB_URL": "not-a-url"}),
                   'github_url (github.url) is "not-a-url"', "SIEVE_GITHUB_URL")
    one_clear_line(sieve("review", "--github", "o/r#1", "--github-url", "ftp://x", cwd=tmp_path, env=token),
                   "github_url", "http(s) URL")


def test_a_manifest_of_the_wrong_shape_is_refused_even_with_nothing_to_rate(tmp_path: Path) -> None:
    (tmp_path / "p.diff").write_text(GOOD)  # ok.py is not in the folder: no finding, the rater is never needed
    adapter_string = manifest_folder(tmp_path / "a", adapter="adapter.gguf")
    one_clear_line(sieve("review", "p.diff", "--model", str(adapter_string), cwd=tmp_path),
                   "adapter must be", "adapter.gguf", code=2)
    base_number = manifest_folder(tmp_path / "b", base=7)
    one_clear_line(sieve("review", "p.diff", "--model", str(base_number), cwd=tmp_path), "base must be", "not 7",
                   code=2)  # a broken model folder is a failed part, not a usage error


def test_since_that_is_not_a_date_fails_before_any_request(tmp_path: Path) -> None:
    env = {"GITHUB_TOKEN": "t" * 20, "SIEVE_GITHUB_URL": "http://127.0.0.1:9"}  # nothing listens: never asked
    one_clear_line(sieve("feedback", "collect", "--github", "o/r", "--since", "last tuesday", cwd=tmp_path, env=env),
                   "--since 'last tuesday' is not an ISO 8601 date")


def test_export_into_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    one_clear_line(sieve("feedback", "export", "--out", "out", cwd=tmp_path), "--out out is a folder")
    one_clear_line(sieve("feedback", "export", "--out", "nowhere/x.jsonl", cwd=tmp_path), "does not exist")
    assert not (tmp_path / "sieve-feedback.db").exists()  # refused before the store was opened


@pytest.mark.parametrize("path,reason", [
    ("bad\\000name.py", "NUL byte"),
    ("x" * 300 + ".py", "a part of the path is 303 bytes long, over the 255"),
    ("/".join(["d" * 200] * 25) + ".py", "the path is 5,027 bytes long, over the 4,096"),
])
def test_a_path_no_file_can_have_is_skipped_and_the_rest_reviewed(tmp_path: Path, path: str, reason: str) -> None:
    (tmp_path / "ok.py").write_text("import os\nx = 2\n")
    (tmp_path / "p.diff").write_text(quoted_patch(path) + GOOD.replace("-x = 1\n+x = 2", "-x = 1\n+import os\n+x = 2")
                                     .replace("@@ -1 +1 @@", "@@ -1 +1,2 @@"))
    done = sieve("review", "p.diff", "--model", "smollm2", "--format", "json", "--threshold", "trivial", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    skipped = {s["reason"] for s in summary["summary"]["skipped"]}
    assert any(reason in r for r in skipped), skipped
    assert [f["path"] for f in summary["findings"]] == ["ok.py"]  # ruff still reviewed the good file (F401)


def test_a_locked_store_is_one_clear_line(tmp_path: Path, capsys, monkeypatch) -> None:
    db = tmp_path / "f.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another run holds the write lock (rollback journal: no one may read)
    try:
        with pytest.raises(StoreError, match="stayed locked by another process for 0.2 s"):
            Store(db, lock_timeout=0.2)
        monkeypatch.setattr(store_module, "LOCK_TIMEOUT_S", 0.2)
        assert main(["feedback", "--db", str(db), "stats"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: the feedback store") and "locked" in err and len(err.splitlines()) == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_the_store_lock_while_syncing_is_a_store_error(tmp_path: Path) -> None:
    from bot.feedback import CommentInfo

    db = tmp_path / "f.db"
    Store(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # WAL: readers go on, a second writer waits
    store = Store(db, lock_timeout=0.2)
    try:
        info = CommentInfo(host="github", repo="o/r", number=1, comment_id="1", url="", path="a.py", line=1,
                           predicted="minor", probabilities={}, model="m", prompt_version="v", commit="c",
                           code="", review="r", reviewer="ruff", created_at="")
        with pytest.raises(StoreError, match="locked by another process"):
            store.sync(info, [], "2026-01-01T00:00:00Z")
        assert store.comments() == []
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.close()


def test_file_readers_answer_none_for_names_no_file_can_have(tmp_path: Path) -> None:
    from bot.app import worktree_reader
    from bot.reviewers.base import ReviewContext

    (tmp_path / "ok.py").write_text("x = 1\n")
    for read in (worktree_reader(tmp_path), ReviewContext.from_worktree(tmp_path).read_file):
        assert read("ok.py") == b"x = 1\n"
        assert read("bad\0name.py") is None and read("x" * 300) is None and read("/".join(["d" * 200] * 25)) is None
