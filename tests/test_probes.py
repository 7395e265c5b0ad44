"""Every probe input that once ended in ``internal error`` or a silent wrong state, fed through the real CLI.

Each case is one thing a pull request, a setting or a host can contain. The run must end cleanly (exit 0, or 1
for ``fail_on``) or with exactly one ``error:`` line, never a traceback or ``internal error``; secrets never
show. The fakes are the validating GitHub (tests/fake_github.py) and real git diffs.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pytest

from bot import cli, markers
from tests.fake_github import SPEC_PATH, FakeGitHub
from tests.gitrepo import make_repo

pytestmark = pytest.mark.skipif(not SPEC_PATH.exists(), reason=f"shared API description missing: {SPEC_PATH}")

TOKEN = "ghp_" + "Pr0be" * 8
ACTIONS = "ghs_" + "Pb" * 18


def _sarif(path: Path, message: str, uri: str = "app.py", line: int = 2) -> str:
    path.write_text(json.dumps({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "bandit", "rules": []}},
        "results": [{"ruleId": "B307", "level": "error", "message": {"text": message}, "locations": [
            {"physicalLocation": {"artifactLocation": {"uri": uri}, "region": {"startLine": line}}}]}]}]}))
    return str(path)


@pytest.fixture
def world(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    repo.write("app.py", "def f(x):\n    return x\n")
    base = repo.commit("base")
    repo.write("app.py", "def f(x):\n    return eval(x)\n")
    repo.write("assets/a[/].png", b"\x89PNG\r\n\x1a\n\x00\x00")
    head = repo.commit("change")
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_EVENT_PATH", "CI_MERGE_REQUEST_IID", "SIEVE_GITHUB_TOKEN", "GH_TOKEN", "SIEVE_MARKER_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with FakeGitHub("octo", "app") as fake:
        fake.add_token(TOKEN, "sieve-bot")
        fake.add_token(ACTIONS, "github-actions[bot]", actions=True)
        fake.add_pull(3, diff=repo.diff(base, head), head_sha=head, base_sha=base,
                      files={"app.py": repo.show(head, "app.py")}, title="Fix <!-- sieve:summary -->")
        (tmp_path / "change.patch").write_bytes(repo.diff(base, head))
        yield fake, tmp_path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _clean_or_one_line(code: int, out: str, err: str, allowed: tuple[int, ...] = (0, 1, 2, 64)) -> None:
    assert code in allowed, (code, err)
    assert "internal error" not in err and "Traceback" not in err + out
    assert len([line for line in err.splitlines() if line.startswith("error:")]) <= 1
    assert TOKEN not in out + err and ACTIONS not in out + err


def _remote(fake: FakeGitHub, *extra: str) -> tuple[str, ...]:
    return ("review", "--github", "octo/app#3", "--github-url", fake.base_url, "--model", "base", *extra)


def test_a_file_name_with_console_markup_in_a_local_review(world, capsys):
    _, tmp = world
    code, out, err = _run(capsys, "review", "--diff", "change.patch", "--repo", "repo", "--model", "base",
                          "--sarif", _sarif(tmp / "m.sarif", "eval [/] [red]x"))
    _clean_or_one_line(code, out, err, (0,))
    assert "assets/a[/].png" in out and "eval [/] [red]x" in out


def test_a_strangers_summary_marker_in_the_title_under_an_actions_token(world, capsys, monkeypatch):
    fake, tmp = world
    monkeypatch.setenv("GITHUB_TOKEN", ACTIONS)
    code, out, err = _run(capsys, *_remote(fake, "--sarif", _sarif(tmp / "ok.sarif", "eval of input")))
    _clean_or_one_line(code, out, err, (0,))
    assert "SIEVE_MARKER_KEY" in out  # the run says the shared identity wants a key


def test_a_wrong_bot_login(world, capsys):
    fake, tmp = world
    (tmp / ".sieve.toml").write_text('[github]\nbot_login = "someone[bot]"\n')
    code, out, err = _run(capsys, *_remote(fake, "--sarif", _sarif(tmp / "ok.sarif", "eval of input")))
    _clean_or_one_line(code, out, err, (64, 2))
    assert 'github.bot_login = "sieve-bot"' in err and fake.writes() == []


def test_a_one_megabyte_tool_message(world, capsys):
    fake, tmp = world
    blob = "".join(random.Random(3).choices(string.ascii_letters + string.digits, k=1_000_000))
    code, out, err = _run(capsys, *_remote(fake, "--sarif", _sarif(tmp / "big.sarif", blob + " eval")))
    _clean_or_one_line(code, out, err, (0,))
    assert len(fake.review_comments) == 1 and all(len(c["body"]) <= 65_536 for c in fake.review_comments.values())
    code, out, err = _run(capsys, *_remote(fake, "--sarif", str(tmp / "big.sarif")))
    _clean_or_one_line(code, out, err, (0,))
    assert len(fake.review_comments) == 1  # nothing posted twice


def test_an_oversized_diff(world, capsys, monkeypatch):
    fake, tmp = world
    monkeypatch.setenv("SIEVE_MAX_DIFF_BYTES", "64")
    code, out, err = _run(capsys, *_remote(fake, "--sarif", _sarif(tmp / "ok.sarif", "eval of input")))
    _clean_or_one_line(code, out, err, (2,))
    assert any(markers.is_summary(c["body"]) for c in fake.issue_comments.values())


def test_a_login_in_trusted_users(world, capsys):
    fake, tmp = world
    (tmp / ".sieve.toml").write_text('[github]\ntrusted_users = ["octocat"]\n')
    code, out, err = _run(capsys, *_remote(fake))
    _clean_or_one_line(code, out, err, (64, 2))
    assert "trusted_users" in err


def test_a_store_that_is_not_a_database(world, capsys):
    _, tmp = world
    (tmp / "fb.db").write_bytes(b"this is not sqlite at all" * 100)
    for action in (["stats"], ["export", "--out", str(tmp / "x.jsonl")]):
        code, out, err = _run(capsys, "feedback", *action, "--db", str(tmp / "fb.db"))
        _clean_or_one_line(code, out, err, (64, 2))
        assert "fb.db" in err


def test_permission_answers_nobody_can_read(world, capsys):
    fake, tmp = world
    code, out, err = _run(capsys, *_remote(fake, "--sarif", _sarif(tmp / "ok.sarif", "eval of input")))
    _clean_or_one_line(code, out, err, (0,))
    comment = next(iter(fake.review_comments))
    fake.react("pulls", comment, "ghost", "+1")  # a user the permission endpoint answers 404 for
    code, out, err = _run(capsys, "feedback", "collect", "--github", "octo/app", "--github-url", fake.base_url,
                          "--db", str(tmp / "fb.db"))
    _clean_or_one_line(code, out, err, (0,))
    code, out, err = _run(capsys, "feedback", "export", "--out", str(tmp / "x.jsonl"), "--db", str(tmp / "fb.db"))
    _clean_or_one_line(code, out, err, (0,))
    assert "wrote 0 example(s)" in out and ("unknown" in out + err or "untrusted" in out + err)
