"""Nothing a pull request contains or a host does makes Sieve lose feedback or leave a wrong summary or status.

Each test is one probe that failed before: a duplicate a maintainer reacted to, racing runs on two heads, other
workflows writing as ``github-actions[bot]``, a wrong ``bot_login``, a 1 MB review text, a comment the host
refuses everywhere, a red status after a passing re-run. Real PyGithub / python-gitlab against the fake hosts.
"""

from __future__ import annotations

import random
import string

import pytest
import requests

from bot import markers
from bot.errors import ConfigError
from bot.findings import Finding
from bot.hosts.base import StatusSpec
from bot.hosts.github import GitHubHost
from bot.hosts.gitlab import GitLabHost
from bot.plan import PlanConfig, plan
from bot.severity import Severity
from tests.fake_github import SPEC_PATH, FakeGitHub
from tests.fake_gitlab import FakeGitLab
from tests.test_github_host import BOT, REF, TOKEN, findings_for, host_for, make_change, open_pull, rating, run_review
from tests.test_gitlab_host import TOKEN as GL_TOKEN
from tests.test_gitlab_host import World, head_app, rate
from tests.test_gitlab_host import findings_for as gl_findings
from tests.test_gitlab_host import review as gl_review

github_only = pytest.mark.skipif(not SPEC_PATH.exists(), reason=f"shared API description missing: {SPEC_PATH}")

ACTIONS = "ghs_" + "Rl" * 18  # Sieve's job token
OTHER_JOB = "ghs_" + "Ot" * 18  # another workflow's token: the same github-actions[bot] account
ACTIONS_BOT = "github-actions[bot]"
KEY = "k3y-for-this-repository-only"


@pytest.fixture
def gh():
    with FakeGitHub("octo", "app") as server:
        server.add_token(TOKEN, BOT)
        server.add_token(ACTIONS, ACTIONS_BOT, actions=True)
        server.add_token(OTHER_JOB, ACTIONS_BOT, actions=True)
        server.set_permission("maint", "write")
        yield server


@pytest.fixture
def world(tmp_path):
    with FakeGitLab() as fake:
        yield World(tmp_path, fake)


def _summaries(fake: FakeGitHub) -> list[dict]:
    return [c for c in fake.issue_comments.values() if markers.is_summary(c["body"])]


def _copies(fake: FakeGitHub, fingerprint: str) -> list[dict]:
    return [c for c in fake.review_comments.values() if (markers.decode(c["body"]) or None)
            and markers.decode(c["body"]).fingerprint == fingerprint]


# ---------------------------------------------------------------- 1. removing a duplicate never loses feedback
@github_only
def test_github_a_duplicate_someone_reacted_to_is_never_removed(gh, tmp_path):
    repo, base, head = make_change(tmp_path)
    open_pull(gh, repo, base, head)
    host = host_for(gh)
    found = findings_for(repo, base, head)
    run_review(host, found)
    first = min(gh.review_comments)
    original = gh.review_comments[first]
    copy = gh.add_review_comment(7, BOT, original["body"], path=original["path"], line=original["line"])
    gh.react("pulls", copy["id"], "maint", "+1")  # the maintainer's 👍 landed on the newer copy
    _, again, result = run_review(host_for(gh), found)
    assert again.create == ()
    fingerprint = markers.decode(original["body"]).fingerprint
    kept = _copies(gh, fingerprint)
    assert [c["id"] for c in kept] == [copy["id"]]  # the copy with the reaction stays, the bare one goes
    assert gh.reactions[("pulls", copy["id"])][0]["content"] == "+1"
    assert any("removed" in note for note in result.notes)


def test_gitlab_a_duplicate_someone_reacted_to_is_never_removed(world):
    gl_review(world, world.host())
    discussion = next(d for d in world.mr.discussions if markers.decode(d["notes"][0]["body"]))
    note = discussion["notes"][0]
    body = note["body"]
    copy = requests.post(f"{world.fake.url}/api/v4/projects/{world.project['id']}/merge_requests/7/discussions",
                         json={"body": body}, headers={"PRIVATE-TOKEN": GL_TOKEN}, timeout=10).json()["notes"][0]
    copy_note = next(n for d in world.mr.discussions for n in d["notes"] if n["id"] == copy["id"])
    world.fake.award(copy_note, world.dev, "thumbsup")
    gl_review(world, world.host())
    fingerprint = markers.decode(body).fingerprint
    left = [d["notes"][0] for d in world.mr.discussions
            if (markers.decode(d["notes"][0]["body"]) or markers.Marker("", "", {}, "", "", "", "", 0, "", "",
                                                                         "")).fingerprint == fingerprint]
    assert [n["id"] for n in left] == [copy["id"]] and left[0]["_awards"][0]["name"] == "thumbsup"


# ---------------------------------------------------------------- 2. racing runs on two heads
@github_only
def test_github_a_run_for_an_old_head_leaves_the_newest_heads_summary(gh, tmp_path):
    repo, base, head = make_change(tmp_path)
    open_pull(gh, repo, base, head)
    found = findings_for(repo, base, head)
    run_a = host_for(gh)
    mr_a = run_a.fetch(REF)  # run A reviews head 1
    repo.write("app.py", repo.show(head, "app.py").decode() + "def late(x):\n    eval(x)\n")
    head2 = repo.commit("second push")
    gh.push(7, diff=repo.diff(base, head2), head_sha=head2, files={"app.py": repo.show(head2, "app.py")})
    run_b = host_for(gh)
    mr_b = run_b.fetch(REF)  # run B fetched head 2 before A wrote anything
    found2 = findings_for(repo, base, head2)
    plan_a = plan(found, [rating() for _ in found], PlanConfig(commit=mr_a.head_sha), mr_a.existing)
    result_a = run_a.apply(mr_a, plan_a, StatusSpec("failure", "old head"))
    plan_b = plan(found2, [rating() for _ in found2], PlanConfig(commit=mr_b.head_sha), mr_b.existing)
    run_b.apply(mr_b, plan_b, StatusSpec("success", "new head"))
    summaries = _summaries(gh)
    assert result_a.stale and len(summaries) == 1
    assert markers.summary_data(summaries[0]["body"]).commit == head2 and head2[:12] in summaries[0]["body"]
    assert head not in gh.statuses and gh.statuses[head2][0]["state"] == "success"


@github_only
def test_github_of_two_summaries_the_one_about_the_head_is_kept(gh, tmp_path):
    """A run for the old head wrote its summary between the new run's check and write: the new run's wins."""
    repo, base, head = make_change(tmp_path)
    open_pull(gh, repo, base, head)
    seal = markers.Seal("github")
    old = seal.seal("## Sieve review\n\nold\n\n" + markers.SUMMARY_MARKER, markers.SummaryData("0" * 40))
    older = requests.post(f"{gh.base_url}/repos/octo/app/issues/7/comments", json={"body": old}, timeout=5,
                          headers={"Authorization": f"token {TOKEN}"}).json()
    found = findings_for(repo, base, head)
    run_review(host_for(gh), found)
    summaries = _summaries(gh)
    assert len(summaries) == 1 and summaries[0]["id"] == older["id"]  # edited in place: it is the only one
    assert markers.summary_data(summaries[0]["body"]).commit == head
    newer = requests.post(f"{gh.base_url}/repos/octo/app/issues/7/comments", timeout=5,
                          json={"body": seal.seal("## Sieve review\n\nstale\n\n" + markers.SUMMARY_MARKER,
                                                  markers.SummaryData("1" * 40))},
                          headers={"Authorization": f"token {TOKEN}"}).json()
    run_review(host_for(gh), found)
    assert [c["id"] for c in _summaries(gh)] == [older["id"]] and newer["id"] not in gh.issue_comments


def test_gitlab_a_run_for_an_old_head_leaves_the_newest_heads_summary(world):
    run_a = world.host()
    mr_a = run_a.fetch(world.ref)
    world.push(head_app("x10 = eval(other_input)\n"))
    run_b = world.host()
    mr_b = run_b.fetch(world.ref)
    from tests.test_gitlab_host import FIRST

    for host, mr in ((run_a, mr_a), (run_b, mr_b)):
        found = gl_findings(mr.diff, FIRST)
        the_plan = plan(found, rate(found), PlanConfig(threshold=Severity.TRIVIAL, commit=mr.head_sha,
                                                       flavor="gitlab"), mr.existing)
        result = host.apply(mr, the_plan, StatusSpec("failure" if host is run_a else "success", "x"))
        assert result.stale == (host is run_a)
    summaries = [d["notes"][0] for d in world.mr.discussions if markers.is_summary(d["notes"][0]["body"])]
    assert len(summaries) == 1 and markers.summary_data(summaries[0]["body"]).commit == world.head
    assert [s["status"] for s in world.fake.statuses] == ["success"]


# ---------------------------------------------------------------- 3. a shared login is not an identity
def _other_workflow(fake: FakeGitHub, body: str, *, inline_at: tuple[str, int] | None = None) -> dict:
    """A comment another workflow posts with its own GITHUB_TOKEN: the same github-actions[bot] account."""
    auth = {"Authorization": f"token {OTHER_JOB}"}
    if inline_at is None:
        return requests.post(f"{fake.base_url}/repos/octo/app/issues/7/comments", json={"body": body},
                             headers=auth, timeout=5).json()
    return fake.add_review_comment(7, ACTIONS_BOT, body, path=inline_at[0], line=inline_at[1])


@github_only
@pytest.mark.parametrize("key", ["", KEY])
def test_github_another_workflows_comments_are_not_sieves(gh, tmp_path, key):
    repo, base, head = make_change(tmp_path)
    open_pull(gh, repo, base, head, title="Fix totals <!-- sieve:summary -->")
    found = findings_for(repo, base, head)
    sieve = GitHubHost(ACTIONS, base_url=gh.base_url, timeout=2, write_pause=0.0, sleep=lambda s: None,
                       marker_key=key)
    mr, first, _ = run_review(sieve, found)
    real = next(c for c in gh.review_comments.values() if markers.decode(c["body"]))
    # a labeller workflow echoes the PR title; a stranger put a summary marker (and a copied marker) at its end
    echoed = _other_workflow(gh, "Labelled by triage. Title: Fix totals\n\n" + markers.SUMMARY_MARKER)
    copied = real["body"][real["body"].rfind("<!-- sieve:v"):]
    forged = _other_workflow(gh, f"Title: LGTM\n\n{copied}", inline_at=(real["path"], real["line"]))
    gh.react("pulls", forged["id"], "octo", "+1")
    mr = sieve.fetch(REF)
    assert {c.id for c in mr.existing} == {str(c["id"]) for c in gh.review_comments.values()
                                             if c["id"] != forged["id"]}
    run_review(sieve, found)
    assert gh.issue_comments[echoed["id"]]["body"].endswith(markers.SUMMARY_MARKER)  # never edited or removed
    assert gh.review_comments[forged["id"]]["body"] == f"Title: LGTM\n\n{copied}"
    assert len(_copies(gh, markers.decode(real["body"]).fingerprint)) == 2  # ours and the untouched forgery
    items = list(sieve.feedback("octo/app"))
    assert forged["id"] not in {int(i.comment_id) for i in items} and len(items) == len(first.create)


@github_only
def test_github_with_a_key_a_seal_recomputed_by_a_stranger_is_refused(gh, tmp_path):
    """Without a key the seal binds the text but anyone can recompute it; with the repository's key nobody can."""
    repo, base, head = make_change(tmp_path)
    open_pull(gh, repo, base, head)
    found = findings_for(repo, base, head)
    sieve = GitHubHost(ACTIONS, base_url=gh.base_url, timeout=2, write_pause=0.0, sleep=lambda s: None,
                       marker_key=KEY)
    target = plan(found, [rating() for _ in found], PlanConfig(commit=head)).create[0]
    unkeyed = markers.Seal("github")  # all a stranger can compute
    _other_workflow(gh, unkeyed.seal(target.body), inline_at=(target.finding.anchor.path, target.finding.anchor.line))
    assert sieve.fetch(REF).existing == ()
    _, p, result = run_review(sieve, found)
    assert result.created == len(found)


def test_gitlab_another_jobs_note_under_the_same_account_is_not_sieves(world):
    mr, first, _ = gl_review(world, world.host(marker_key=KEY))
    real = next(d["notes"][0] for d in world.mr.discussions if markers.decode(d["notes"][0]["body"]))
    copied = real["body"][real["body"].rfind("<!-- sieve:v"):]
    api = f"{world.fake.url}/api/v4/projects/{world.project['id']}/merge_requests/7"
    for body in (f"Deployed preview for: LGTM\n\n{copied}", "Pipeline note: done\n\n" + markers.SUMMARY_MARKER):
        requests.post(f"{api}/notes", json={"body": body}, headers={"PRIVATE-TOKEN": GL_TOKEN}, timeout=10)
    host = world.host(marker_key=KEY)
    mr = host.fetch(world.ref)
    assert len(mr.existing) == len(first.create)
    gl_review(world, host)
    bodies = [d["notes"][0]["body"] for d in world.mr.discussions]
    assert f"Deployed preview for: LGTM\n\n{copied}" in bodies
    assert "Pipeline note: done\n\n" + markers.SUMMARY_MARKER in bodies


# ---------------------------------------------------------------- 4. a wrong bot_login stops on the first run
@github_only
def test_github_a_bot_login_the_token_does_not_write_as_stops_before_writing(gh, tmp_path):
    repo, base, head = make_change(tmp_path)
    open_pull(gh, repo, base, head)
    with pytest.raises(ConfigError, match=r'github.bot_login = "sieve-bot" \(\[github\] table'):
        run_review(host_for(gh, bot_login="someone-else"), findings_for(repo, base, head))
    assert gh.writes() == []


@github_only
def test_github_a_wrong_bot_login_under_an_actions_token_stops_after_one_write(gh, tmp_path):
    repo, base, head = make_change(tmp_path)
    open_pull(gh, repo, base, head)
    found = findings_for(repo, base, head)
    for attempt in range(3):  # the user has not fixed the setting yet: no run duplicates anything
        host = GitHubHost(ACTIONS, base_url=gh.base_url, timeout=2, write_pause=0.0, sleep=lambda s: None,
                          bot_login="sieve-app[bot]")
        with pytest.raises(ConfigError) as caught:
            run_review(host, found)
        assert 'set github.bot_login = "github-actions[bot]" ([github] table' in str(caught.value)
        assert len(gh.review_comments) == len(found) and _summaries(gh) == []


def test_gitlab_a_bot_login_the_token_does_not_write_as_stops_before_writing(world):
    with pytest.raises(ConfigError, match=r'gitlab.bot_login = "sieve-bot" \(\[gitlab\] table'):
        gl_review(world, world.host(bot_username="other-bot"))
    assert world.fake.writes() == []


# ---------------------------------------------------------------- 7. bounded markers; refused posts held
def _noise(n: int = 1_000_000) -> str:
    """A megabyte of text that does not compress (a tool dumping a blob into its message)."""
    alphabet = string.ascii_letters + string.digits + "+/"
    return "".join(random.Random(7).choices(alphabet, k=n))


def _huge(repo, base, head) -> list[Finding]:
    found = findings_for(repo, base, head)[:1]
    return [Finding(found[0].anchor, _noise() + " eval is dangerous", "ruff", rule_id="S307", code=found[0].code)]


@github_only
def test_github_a_one_megabyte_review_posts_once_and_then_stays(gh, tmp_path):
    repo, base, head = make_change(tmp_path)
    open_pull(gh, repo, base, head)
    huge = _huge(repo, base, head)
    _, first, result = run_review(host_for(gh), huge)
    assert result.created == 1 and result.to_summary == 0
    body = next(iter(gh.review_comments.values()))["body"]
    assert len(body) <= 65_536 and markers.decode(body).review_sha == markers.review_sha(huge[0].review)
    before = len(gh.writes())
    _, again, result = run_review(host_for(gh), huge)
    assert again.create == again.update == ()
    assert [w[0] for w in gh.writes()[before:]] == ["PATCH"]  # only the summary's per-run counts change


@github_only
def test_github_a_comment_refused_everywhere_is_in_the_summary_once_and_not_resent(gh, tmp_path):
    repo, base, head = make_change(tmp_path)
    open_pull(gh, repo, base, head)
    found = findings_for(repo, base, head)
    gh.reject_lines.add((found[0].anchor.path, found[0].anchor.line))
    gh.reject_files.add(found[0].anchor.path)
    _, _, result = run_review(host_for(gh), found)
    summary = _summaries(gh)[0]["body"]
    assert result.to_summary == 1 and f"Posted {len(found) - 1} new comment(s)" in summary
    assert summary.count("would not place on the diff") == 1 and any("refused" in n for n in result.notes)
    gh.reset_log()
    host = host_for(gh)
    mr = host.fetch(REF)
    again = plan(found, [rating() for _ in found], PlanConfig(max_comments=100, commit=mr.head_sha), mr.existing,
                 refused=mr.summary_state.refused)
    result = host.apply(mr, again)
    assert again.create == () and len(again.held) == 1
    assert not [r for r in gh.requests if r[0] == "POST"]  # nothing re-sent
    summary = _summaries(gh)[0]["body"]
    assert summary.count("would not place on the diff") == 1 and "Posted 0 new comment(s)" in summary


def test_gitlab_a_one_megabyte_review_posts_once_and_then_stays(world):
    huge = [("app.py", {"new_line": 10}, _noise() + " eval on user input", None)]
    _, _, result = gl_review(world, world.host(), wanted=huge)
    assert result.created == 1 and result.to_summary == 0
    before = len(world.fake.writes())
    _, again, _ = gl_review(world, world.host(), wanted=huge)
    assert again.create == again.update == ()
    assert [w[0] for w in world.fake.writes()[before:]] == ["PUT"]  # only the summary's per-run counts change


# ---------------------------------------------------------------- 9. the status follows the latest run
@github_only
def test_github_a_passing_rerun_replaces_an_earlier_failure(gh, tmp_path):
    repo, base, head = make_change(tmp_path)
    open_pull(gh, repo, base, head)
    found = findings_for(repo, base, head)
    run_review(host_for(gh), found, status=StatusSpec("failure", "review incomplete"))
    run_review(host_for(gh), found, status=StatusSpec("success", "3 finding(s)", only_to_replace=True))
    assert gh.statuses[head][0]["state"] == "success"


@github_only
def test_github_no_status_is_started_where_none_was_asked_for(gh, tmp_path):
    repo, base, head = make_change(tmp_path)
    open_pull(gh, repo, base, head)
    run_review(host_for(gh), findings_for(repo, base, head), status=StatusSpec("success", "3", only_to_replace=True))
    assert head not in gh.statuses


def test_gitlab_a_passing_rerun_replaces_an_earlier_failure(world):
    gl_review(world, world.host(), status=StatusSpec("failure", "review incomplete"))
    gl_review(world, world.host(), status=StatusSpec("success", "6 finding(s)", only_to_replace=True))
    assert [s["status"] for s in world.fake.statuses] == ["failed", "success"]
    fresh = world.fake.statuses.clear() or gl_review(world, world.host(),
                                                     status=StatusSpec("success", "6", only_to_replace=True))
    assert fresh and world.fake.statuses == []


def test_pure_status_for_a_clean_run_only_replaces(tmp_path):
    from bot import app
    from bot import config as cfg
    from bot.outcome import Outcome

    empty = plan([], [], PlanConfig())
    spec = app.status_for(Outcome(plan=empty), cfg.build({}))
    assert spec is not None and spec.state == "success" and spec.only_to_replace

