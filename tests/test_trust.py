"""Whose 👍/👎 count: write access according to the host (GitHub's collaborator permission, GitLab's access level)
or a numeric user id in ``trusted_users``; each user is looked up once per run; an unclear permission answer makes
the voter *unknown* (not trusted, and reported by collect, export and stats)."""

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
    items = {i.comment_id: i for i in host_for(gh, trusted_users=(gh.user("lead")["id"],)).feedback("octo/app")}
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
    lead = gh.user("lead")["id"]
    Path(tmp_path / ".sieve.toml").write_text(f'[github]\nbot_login = "sieve-app[bot]"\ntrusted_users = [{lead}]\n')
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


# ---------------------------------------------------------------- trust by stable user id
@pytest.mark.parametrize("section,lookup", [("github", "GET /users/LOGIN"), ("gitlab", "/api/v4/users?username=LOGIN")])
def test_a_login_in_trusted_users_is_refused_with_where_to_find_the_id(tmp_path, monkeypatch, capsys, section,
                                                                       lookup):
    monkeypatch.chdir(tmp_path)
    Path(tmp_path / ".sieve.toml").write_text(f'[{section}]\ntrusted_users = ["lead", 42]\n')
    assert cli.main(["feedback", "collect", f"--{section}", "octo/app", "--db", str(tmp_path / "f.db")]) == 64
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"error: setting {section}.trusted_users is")
    assert "numeric ids, not their logins" in err and lookup in err and "Traceback" not in err
    assert not (tmp_path / "f.db").exists()  # refused before anything ran


def _collect(tmp_path: Path, gh: FakeGitHub, monkeypatch, toml: str = "") -> list[str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    Path(tmp_path / ".sieve.toml").write_text(toml)
    return ["feedback", "collect", "--github", "octo/app", "--github-url", gh.base_url, "--db", str(tmp_path / "f.db")]


def _export(tmp_path: Path, capsys) -> tuple[list[dict], str]:
    out = tmp_path / "out.jsonl"
    capsys.readouterr()
    assert cli.main(["feedback", "export", "--out", str(out), "--db", str(tmp_path / "f.db")]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()], capsys.readouterr().err


@github_only
def test_a_renamed_maintainers_old_login_trusts_nobody_else(gh, tmp_path, monkeypatch, capsys):
    """The maintainer (id 9001, trusted) renames "lead" to "lead-2"; a stranger registers "lead" (id 9002)."""
    repo, base, head = make_change(tmp_path)
    open_pull(gh, repo, base, head)
    run_review(host_for(gh), findings_for(repo, base, head))
    first, second = sorted(gh.review_comments)[:2]
    gh.set_user_id("lead-2", 9001)
    gh.set_user_id("lead", 9002)
    gh.set_permission("lead-2", "read")
    gh.set_permission("lead", "read")
    gh.react("pulls", first, "lead-2", "+1")
    gh.react("pulls", second, "lead", "-1")
    assert cli.main(_collect(tmp_path, gh, monkeypatch, "[github]\ntrusted_users = [9001]\n")) == 0
    rows, _ = _export(tmp_path, capsys)
    assert [(r["vote"], r["trust"]) for r in rows] == [(1, "trusted")]  # lead-2's 👍; the new "lead" is nobody
    from bot.store import open_store

    store = open_store(tmp_path / "f.db", read_only=True)
    voters = {(r["voter"], r["voter_id"], r["trusted"]) for r in store.query("SELECT * FROM votes")}
    store.close()
    assert voters == {("lead-2", 9001, 1), ("lead", 9002, 0)}  # the store keeps the login and the id


@github_only
def test_permission_404_for_everyone_makes_voters_unknown_and_says_why(gh, tmp_path, monkeypatch, capsys):
    repo, base, head = make_change(tmp_path)
    open_pull(gh, repo, base, head)
    run_review(host_for(gh), findings_for(repo, base, head))
    gh.hide_permission()  # GitHub answers 404 for every voter
    comments = sorted(gh.review_comments)
    for login, cid in (("rita", comments[0]), ("alice", comments[1]), ("bob", comments[1]), ("rita", comments[2])):
        gh.react("pulls", cid, login, "+1")
    assert cli.main(_collect(tmp_path, gh, monkeypatch)) == 0
    captured = capsys.readouterr()
    assert "3 with permission unknown" not in captured.out and "4 with permission unknown" in captured.out
    notes = [line for line in captured.err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "permission unknown for 3 voter(s) (alice, bob, rita): GitHub answered 404" in notes[0]
    assert "trusted_users" in notes[0]
    rows, err = _export(tmp_path, capsys)
    assert rows == [] and "0 from users without write access" not in err
    assert "left out as not trusted: 0 vote(s) or correction(s) from users without write access and 4 from users " \
           "whose permission is unknown" in err and len(err.splitlines()) == 1
    capsys.readouterr()
    assert cli.main(["feedback", "stats", "--db", str(tmp_path / "f.db")]) == 0
    assert "4 from users whose permission is unknown" in capsys.readouterr().err


@github_only
def test_a_permission_value_sieve_does_not_know_is_unknown_not_a_no(gh, tmp_path):
    repo, base, head = make_change(tmp_path)
    open_pull(gh, repo, base, head)
    run_review(host_for(gh), findings_for(repo, base, head))
    first = min(gh.review_comments)
    gh.set_permission("carol", "write", permission="custom-writer")
    gh.set_permission("dan", "read")
    for login in ("carol", "dan"):
        gh.react("pulls", first, login, "+1")
    item = next(i for i in host_for(gh).feedback("octo/app") if i.comment_id == str(first))
    seen = {v.user: (v.trusted, v.trust_unknown, v.user_id) for v in item.votes}
    assert seen["dan"] == (False, "", gh.user("dan")["id"])  # a clear no
    assert seen["carol"][0] is False and "'custom-writer'" in seen["carol"][1]


@github_only
def test_a_403_on_permissions_is_still_a_clear_error(gh, tmp_path, monkeypatch, capsys):
    from tests.fake_github import Fault

    repo, base, head = make_change(tmp_path)
    open_pull(gh, repo, base, head)
    run_review(host_for(gh), findings_for(repo, base, head))
    gh.react("pulls", min(gh.review_comments), "rita", "+1")
    gh.faults.append(Fault("readonly", path="/collaborators/", times=99))
    assert cli.main(_collect(tmp_path, gh, monkeypatch)) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "403" in err and "metadata: read" in err and "numeric ids" in err


def test_gitlab_trust_by_id_and_an_unknown_access_level(tmp_path: Path):
    with FakeGitLab() as fake:
        world = World(tmp_path, fake)
        odd = fake.add_user("odd", "odd-token")
        world.project["members"][odd["id"]] = 35  # an access level GitLab may add one day
        review(world, world.host())
        first = discussions(world)[0]["notes"][0]
        for user in (odd, world.stranger, world.dev):
            fake.award(first, user, "thumbsup")
        host = world.host(trusted_users=(world.stranger["id"],))
        item = next(i for i in host.feedback("group/sub/app") if i.comment_id == str(first["id"]))
        seen = {v.user: (v.trusted, v.user_id, v.trust_unknown) for v in item.votes}
        assert seen["stranger"] == (True, world.stranger["id"], "")  # by id, without a member lookup
        assert seen["dev"] == (True, world.dev["id"], "")
        assert seen["odd"][:2] == (False, odd["id"]) and "access level 35" in seen["odd"][2]
        assert not [r for r in fake.requests if f"/members/all/{world.stranger['id']}" in r[1]]
