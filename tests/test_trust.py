"""Whose 👍/👎 count: write access according to the host (GitHub's collaborator permission, GitLab's access level)
or a configured ``trusted_users``; each user is looked up once per run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot import cli
from bot.hosts.github import GitHubHost
from tests.fake_github import SPEC_PATH, FakeGitHub
from tests.fake_gitlab import FakeGitLab
from tests.test_github_host import BOT, TOKEN, findings_for, host_for, make_change, open_pull, run_review
from tests.test_gitlab_host import World, discussions, review

github_only = pytest.mark.skipif(not SPEC_PATH.exists(), reason=f"shared API description missing: {SPEC_PATH}")


@pytest.fixture
def gh():
    with FakeGitHub("octo", "app") as server:
        server.add_token(TOKEN, BOT)
        server.associations.update({"mia": "MEMBER"})
        for login, role in {"rita": "maintain", "tom": "triage", "mia": "read", "lead": "read"}.items():
            server.set_permission(login, role)
        yield server


def permission_calls(fake: FakeGitHub) -> list[str]:
    return [r[1] for r in fake.requests if "/collaborators/" in r[1]]


@github_only
def test_github_trust_is_write_access_or_trusted_users_and_looked_up_once(gh, tmp_path):
    repo, base, head = make_change(tmp_path)
    open_pull(gh, repo, base, head)
    run_review(host_for(gh), findings_for(repo, base, head))
    first, second = sorted(gh.review_comments)[:2]
    for login in ("rita", "tom", "mia", "eve", "lead"):
        gh.react("pulls", first, login, "+1")
    gh.react("pulls", second, "rita", "-1")
    gh.add_review_comment(7, "mia", "/sieve severity minor", path="app.py", line=None, in_reply_to=first)
    gh.reset_log()
    items = {i.comment_id: i for i in host_for(gh, trusted_users=("Lead",)).feedback("octo/app")}
    votes = {(v.user, v.trusted) for v in items[str(first)].votes}
    assert votes == {("rita", True), ("tom", False), ("mia", False), ("eve", False), ("lead", True)}
    assert [(v.user, v.trusted) for v in items[str(second)].votes] == [("rita", True)]
    assert [(r.user, r.trusted) for r in items[str(first)].replies] == [("mia", False)]
    calls = permission_calls(gh)
    assert sorted(c.split("/")[-2] for c in calls) == ["eve", "mia", "rita", "tom"]  # once each; lead: none


@github_only
def test_github_settings_table_names_the_bot_and_the_trusted_users(gh, tmp_path, monkeypatch):
    app_token = "ghs_" + "Ap" * 18
    gh.add_token(app_token, "sieve-app[bot]", actions=True)
    repo, base, head = make_change(tmp_path)
    open_pull(gh, repo, base, head)
    run_review(GitHubHost(app_token, base_url=gh.base_url, bot_login="sieve-app[bot]", write_pause=0,
                          sleep=lambda s: None), findings_for(repo, base, head))
    first = min(gh.review_comments)
    gh.react("pulls", first, "lead", "+1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_TOKEN", app_token)
    db, out = tmp_path / "fb.db", tmp_path / "out.jsonl"
    args = ["feedback", "collect", "--github", "octo/app", "--github-url", gh.base_url, "--db", str(db)]
    assert cli.main(args) == 0 and cli.main(["feedback", "export", "--out", str(out), "--db", str(db)]) == 0
    assert out.read_text() == ""  # the Actions bot wrote none of these, and lead has read access only
    Path(tmp_path / ".sieve.toml").write_text('[github]\nbot_login = "sieve-app[bot]"\ntrusted_users = ["lead"]\n')
    assert cli.main(args) == 0 and cli.main(["feedback", "export", "--out", str(out), "--db", str(db)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["trust"] == "trusted" and rows[0]["vote"] == 1


def test_gitlab_trust_is_developer_access_and_looked_up_once(tmp_path: Path):
    with FakeGitLab() as fake:
        world = World(tmp_path, fake)
        lead = fake.add_user("lead", "lead-token")
        reporter = fake.add_user("rep", "rep-token")
        world.project["members"].update({lead["id"]: 40, reporter["id"]: 20})
        review(world, world.host())
        first, second = [d["notes"][0] for d in discussions(world)][:2]
        for user in (lead, reporter, world.stranger):
            fake.award(first, user, "thumbsup")
        fake.award(second, lead, "thumbsdown")
        fake.requests.clear()
        items = {i.comment_id: i for i in world.host().feedback("group/sub/app")}
        assert {(v.user, v.trusted) for v in items[str(first["id"])].votes} == {
            ("lead", True), ("rep", False), ("stranger", False)}
        assert [(v.user, v.trusted) for v in items[str(second["id"])].votes] == [("lead", True)]
        assert len([r for r in fake.requests if "/members/all/" in r[1]]) == 3
