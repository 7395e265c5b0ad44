"""A failing reviewer never gives a green check: the real `sieve review` against the fake GitHub and GitLab.

Each run below has its only reviewer fail (a SARIF file that cannot be read, an LLM endpoint nobody listens
on). The run must still post what it has (the summary, saying which reviewer failed and why), set a failing
status, and exit non-zero — unless ``--allow-reviewer-failure`` is given.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from bot import cli, markers
from tests.fake_github import SPEC_PATH, FakeGitHub
from tests.fake_gitlab import FakeGitLab
from tests.gitrepo import GitRepo, make_repo

GH_TOKEN = "ghp_" + "F4il" * 9
GL_TOKEN = "glpat-failTOKEN0123456789ab"


def _change(root: Path) -> tuple[GitRepo, str, str]:
    repo = make_repo(root)
    repo.write("app.py", "def f(x):\n    return x\n")
    base = repo.commit("base")
    repo.write("app.py", "def f(x):\n    return eval(x)\n")
    return repo, base, repo.commit("change")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def github(tmp_path, monkeypatch):
    if not SPEC_PATH.exists():
        pytest.skip(f"shared API description missing: {SPEC_PATH}")
    repo, base, head = _change(tmp_path / "repo")
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_EVENT_PATH", "CI_MERGE_REQUEST_IID", "SIEVE_GITHUB_TOKEN", "GH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITHUB_TOKEN", GH_TOKEN)
    with FakeGitHub("octo", "app") as fake:
        fake.add_token(GH_TOKEN, "sieve-bot")
        fake.add_pull(3, diff=repo.diff(base, head), head_sha=head, base_sha=base)
        yield fake, head


def _review_github(fake: FakeGitHub, *extra: str) -> int:
    return cli.main(["review", "--github", "octo/app#3", "--github-url", fake.base_url, "--fail-on", "critical",
                     "--model", "smollm2", *extra])


def test_an_unreadable_sarif_file_fails_the_run_status_and_summary(github, tmp_path, capsys):
    fake, head = github
    (tmp_path / "broken.sarif").write_text("{ not json")
    code = _review_github(fake, "--sarif", str(tmp_path / "broken.sarif"))
    err = capsys.readouterr().err
    assert code != 0 and "error: the review is incomplete: reviewer sarif:" in err and "Traceback" not in err
    status = fake.statuses[head][0]
    assert status["state"] == "failure" and "incomplete" in status["description"]
    summary = next(c["body"] for c in fake.issue_comments.values() if markers.is_summary(c["body"]))
    assert "Incomplete review" in summary and "reviewer sarif:" in summary and "broken.sarif" in summary
    assert GH_TOKEN not in summary + err


def test_allow_reviewer_failure_lets_the_run_pass_and_still_says_so(github, tmp_path, capsys):
    fake, head = github
    code = _review_github(fake, "--sarif", str(tmp_path / "missing.sarif"), "--allow-reviewer-failure")
    assert code == 0 and "warning: reviewer sarif:" in capsys.readouterr().err
    assert fake.statuses[head][0]["state"] == "success"
    summary = next(c["body"] for c in fake.issue_comments.values() if markers.is_summary(c["body"]))
    assert "Incomplete review" in summary and "passes anyway" in summary


def test_an_unreachable_llm_fails_the_gitlab_job(tmp_path, monkeypatch, capsys):
    repo = GitRepo(tmp_path / "repo")
    repo.write("app.py", "def f(x):\n    return x\n")
    base = repo.commit("base")
    repo.write("app.py", "def f(x):\n    return eval(x)\n")
    head = repo.commit("change")
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_EVENT_PATH", "CI_MERGE_REQUEST_IID", "SIEVE_GITLAB_TOKEN", "SIEVE_LLM_API_KEY",
                 "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITLAB_TOKEN", GL_TOKEN)
    (tmp_path / ".sieve.toml").write_text("[sieve]\ntimeout = 2\n")
    with FakeGitLab() as fake:
        bot = fake.add_user("sieve-bot", GL_TOKEN)
        project = fake.add_project("group/app", repo.root, {bot["id"]: 30})
        fake.add_mr(project, 5, base, head, bot)
        code = cli.main(["review", "--gitlab", "group/app!5", "--gitlab-url", fake.url, "--reviewers", "llm",
                         "--llm-base-url", f"http://127.0.0.1:{_closed_port()}/v1", "--llm-model", "m",
                         "--model", "smollm2"])
        err = capsys.readouterr().err
        assert code != 0 and "reviewer llm:" in err and "could not be reached" in err
        assert [s["status"] for s in fake.statuses] == ["failed"]
        mr = fake.mrs[(project["id"], 5)]
        summary = [d["notes"][0]["body"] for d in mr.discussions if markers.is_summary(d["notes"][0]["body"])]
        assert len(summary) == 1 and "reviewer llm:" in summary[0]


def test_a_local_review_with_a_failing_reviewer_exits_non_zero(tmp_path, monkeypatch, capsys):
    repo, base, head = _change(tmp_path / "repo")
    patch = tmp_path / "change.patch"
    patch.write_bytes(repo.diff(base, head))
    monkeypatch.chdir(tmp_path)
    code = cli.main(["review", "--diff", str(patch), "--sarif", str(tmp_path / "nope.sarif"), "--model", "smollm2"])
    captured = capsys.readouterr()
    assert code == 2 and "the review is incomplete" in captured.err


def _sarif(path: Path, message: str = "eval of untrusted input") -> Path:
    path.write_text(json.dumps({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "bandit", "rules": []}},
        "results": [{"ruleId": "B307", "level": "error", "message": {"text": message}, "locations": [
            {"physicalLocation": {"artifactLocation": {"uri": "app.py"}, "region": {"startLine": 2}}}]}]}]}))
    return path


def test_a_passing_rerun_clears_the_failed_status_it_left(github, tmp_path, capsys):
    """Without fail_on a clean run sets no status of its own, but it replaces the red one a failed run left."""
    fake, head = github
    assert cli.main(["review", "--github", "octo/app#3", "--github-url", fake.base_url, "--model", "base",
                     "--sarif", str(tmp_path / "missing.sarif")]) == 2
    assert fake.statuses[head][0]["state"] == "failure"
    capsys.readouterr()
    assert cli.main(["review", "--github", "octo/app#3", "--github-url", fake.base_url, "--model", "base",
                     "--sarif", str(_sarif(tmp_path / "ok.sarif"))]) == 0
    assert fake.statuses[head][0]["state"] == "success"


def test_an_oversized_diff_gets_a_summary_and_a_failing_status(github, tmp_path, capsys, monkeypatch):
    fake, head = github
    monkeypatch.setenv("SIEVE_MAX_DIFF_BYTES", "40")
    code = cli.main(["review", "--github", "octo/app#3", "--github-url", fake.base_url, "--model", "base",
                     "--sarif", str(_sarif(tmp_path / "ok.sarif"))])
    err = capsys.readouterr().err
    assert code == 2 and "over max_diff_bytes" in err and "Traceback" not in err
    summary = next(c["body"] for c in fake.issue_comments.values() if markers.is_summary(c["body"]))
    assert "not reviewed" in summary and r"over max\_diff\_bytes" in summary  # inert markdown
    assert fake.statuses[head][0]["state"] == "failure"


def test_an_oversized_diff_on_gitlab_gets_a_summary_and_a_failing_status(tmp_path, monkeypatch, capsys):
    repo, base, head = _change(tmp_path / "repo")
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_EVENT_PATH", "CI_MERGE_REQUEST_IID", "SIEVE_GITLAB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITLAB_TOKEN", GL_TOKEN)
    monkeypatch.setenv("SIEVE_MAX_DIFF_BYTES", "40")
    with FakeGitLab() as fake:
        bot = fake.add_user("sieve-bot", GL_TOKEN)
        project = fake.add_project("group/app", repo.root, {bot["id"]: 30})
        fake.add_mr(project, 5, base, head, bot)
        code = cli.main(["review", "--gitlab", "group/app!5", "--gitlab-url", fake.url, "--model", "base",
                         "--sarif", str(_sarif(tmp_path / "ok.sarif"))])
        assert code == 2 and "over max_diff_bytes" in capsys.readouterr().err
        assert [s["status"] for s in fake.statuses] == ["failed"]
        mr = fake.mrs[(project["id"], 5)]
        summary = [d["notes"][0]["body"] for d in mr.discussions if markers.is_summary(d["notes"][0]["body"])]
        assert len(summary) == 1 and "not reviewed" in summary[0]


def test_a_wrong_bot_login_is_one_line_that_keeps_its_brackets(github, tmp_path, capsys):
    fake, _ = github
    (tmp_path / ".sieve.toml").write_text('[github]\nbot_login = "sieve-app[bot]"\n')
    code = cli.main(["review", "--github", "octo/app#3", "--github-url", fake.base_url, "--model", "base",
                     "--sarif", str(_sarif(tmp_path / "ok.sarif")), "--format", "json"])
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert 'github.bot_login = "sieve-bot" ([github] table' in err and "sieve-app[bot]" in err
    assert fake.writes() == []
