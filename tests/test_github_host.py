"""GitHubHost with the real PyGithub against the validating fake GitHub (tests/fake_github.py).

Diffs are made by real git; findings and ratings are plain dataclasses and plans come from bot.plan, so the
rater is not needed. Every test's fake checks all requests/responses against GitHub's OpenAPI description.
"""

from __future__ import annotations

import logging
import re

import pytest

from bot import markers
from bot.errors import HostError, RateLimitError
from bot.findings import Anchor, Finding, Rating
from bot.hosts.base import HOSTS, MergeRequestRef, StatusSpec
from bot.hosts.github import GitHubHost, parse_github_ref, ref_from_actions_env
from bot.hosts.github_entry import GITHUB
from bot.plan import PlanConfig, plan
from bot.severity import Severity
from tests.fake_github import SPEC_PATH, FakeGitHub, Fault
from tests.gitrepo import make_repo

pytestmark = pytest.mark.skipif(not SPEC_PATH.exists(), reason=f"shared API description missing: {SPEC_PATH}")

TOKEN = "ghp_" + "A1b2C3d4" * 5
BOT = "sieve-bot"
REF = MergeRequestRef("github", "octo/app", 7)


# ---------------------------------------------------------------- real git changes
def _base_lines(n: int) -> list[str]:
    return [f"def f{i}(x):\n    return x + {i}\n" for i in range(n)]


def make_change(tmp_path, n_funcs: int = 60, edits: tuple[int, ...] = (3, 10, 20)):
    """A real repository: base commit, then a commit that inserts a risky line in some functions."""
    repo = make_repo(tmp_path / "repo")
    repo.write("app.py", "".join(_base_lines(n_funcs)))
    base = repo.commit("base")
    lines = _base_lines(n_funcs)
    for i in edits:
        lines[i] = f"def f{i}(x):\n    eval(x)  # edit {i}\n    return x + {i}\n"
    repo.write("app.py", "".join(lines))
    head = repo.commit("change")
    return repo, base, head


def findings_for(repo, base: str, head: str) -> list[Finding]:
    """One finding per added line (what a reviewer would produce), anchored on the post-image line."""
    from bot import diff as diffmod

    parsed = diffmod.parse(repo.diff(base, head))
    out = []
    for hunk in parsed.hunks:
        for line in hunk.lines:
            if line.kind == "+":
                out.append(Finding(anchor=Anchor(hunk.path, line.new_lineno), source="ruff", rule_id="S307",
                                   review=f"Use of eval on input: {line.text.strip()}", code=hunk.text()))
    return out


def rating(severity: str = "critical") -> Rating:
    probs = {"critical": 0.05, "major": 0.05, "minor": 0.05, "trivial": 0.05}
    probs[severity] = 0.85
    return Rating(probabilities=probs, severity=severity, model_id="student-1", prompt_version="p1")


# ---------------------------------------------------------------- fixtures
@pytest.fixture
def fake():
    with FakeGitHub("octo", "app") as server:
        server.add_token(TOKEN, BOT)
        server.associations.update({"maint": "MEMBER", "stranger": "NONE"})
        yield server


def host_for(fake: FakeGitHub, sleeps: list[float] | None = None, **kw) -> GitHubHost:
    record = sleeps if sleeps is not None else []
    options = {"timeout": 2, "write_pause": 1.0, "sleep": record.append, **kw}
    return GitHubHost(kw.pop("token", TOKEN), base_url=fake.base_url, **options)


def open_pull(fake: FakeGitHub, repo, base: str, head: str, number: int = 7, **kw):
    files = {"app.py": repo.show(head, "app.py")}
    return fake.add_pull(number, diff=repo.diff(base, head), head_sha=head, base_sha=base, files=files, **kw)


def run_review(host: GitHubHost, findings, ratings=None, status: StatusSpec | None = None, ref=REF):
    mr = host.fetch(ref)
    config = PlanConfig(threshold=Severity.MINOR, max_comments=100, commit=mr.head_sha, max_body=GITHUB.max_body)
    p = plan(findings, ratings or [rating() for _ in findings], config, mr.existing)
    return mr, p, host.apply(mr, p, status)


def state(fake: FakeGitHub) -> dict:
    """What a maintainer sees: comments (path, line, body), the summary without its per-run counts, statuses."""
    comments = sorted((c["path"], c["line"], c["body"]) for c in fake.review_comments.values())
    summaries = [re.sub(r"Posted \d+ new comment\(s\), kept \d+, resolved \d+\. ", "",
                        markers.without_footer(c["body"])) for c in fake.issue_comments.values()]
    statuses = {sha: [(s["context"], s["state"]) for s in items[:1]] for sha, items in fake.statuses.items()}
    return {"comments": comments, "summaries": summaries, "statuses": statuses}


# ---------------------------------------------------------------- references
def test_parse_refs_and_actions_env(tmp_path):
    assert parse_github_ref("octo/app#7") == REF
    assert parse_github_ref("https://github.com/octo/app/pull/7") == REF
    with pytest.raises(Exception, match="OWNER/REPO#NUMBER"):
        parse_github_ref("octo/app")
    event = tmp_path / "event.json"
    event.write_text('{"action": "opened", "pull_request": {"number": 7}}')
    env = {"GITHUB_EVENT_PATH": str(event), "GITHUB_REPOSITORY": "octo/app"}
    assert ref_from_actions_env(env) == REF
    event.write_text('{"workflow_run": {"pull_requests": [{"number": 7}]}}')
    assert ref_from_actions_env(env) == REF
    event.write_text('{"workflow_run": {"pull_requests": []}}')
    with pytest.raises(Exception, match="--github"):
        ref_from_actions_env(env)
    assert "github" in HOSTS.names()


# ---------------------------------------------------------------- review, re-run, push
def test_first_review_is_one_batched_review_plus_summary_and_status(fake, tmp_path):
    repo, base, head = make_change(tmp_path)
    open_pull(fake, repo, base, head)
    host = host_for(fake)
    found = findings_for(repo, base, head)
    mr = host.fetch(REF)
    after_fetch = len(fake.requests)
    p = plan(found, [rating() for _ in found], PlanConfig(commit=head), mr.existing)
    result = host.apply(mr, p, StatusSpec("failure", "3 finding(s)"))
    assert mr.diff == repo.diff(base, head) and mr.head_sha == head and not mr.is_fork
    assert result.created == len(found) == 3 and result.writes <= 3
    writes = fake.writes()
    assert [w[0] for w in writes] == ["POST", "POST", "POST"]
    assert writes[0][1].endswith("/pulls/7/reviews") and "/statuses/" in writes[2][1]
    assert result.writes == len(writes) and result.api_calls == len(fake.requests) - after_fetch
    bodies = [c["body"] for c in fake.review_comments.values()]
    assert all(markers.decode(b) for b in bodies)
    assert {c["line"] for c in fake.review_comments.values()} == {f.anchor.line for f in found}
    assert len(fake.issue_comments) == 1 and markers.is_summary(next(iter(fake.issue_comments.values()))["body"])
    assert host.read_file(mr, "app.py") == repo.show(head, "app.py")
    assert host.read_file(mr, "missing.py") is None


def test_rerun_same_head_posts_nothing_new(fake, tmp_path):
    repo, base, head = make_change(tmp_path)
    open_pull(fake, repo, base, head)
    found = findings_for(repo, base, head)
    run_review(host_for(fake), found, status=StatusSpec("failure", "3 finding(s)"))
    before = len(fake.review_comments)
    fake.reset_log()
    _mr, p, result = run_review(host_for(fake), found, status=StatusSpec("failure", "3 finding(s)"))
    assert len(p.keep) == 3 and not p.create
    assert len(fake.review_comments) == before and result.created == 0
    assert result.writes <= 1  # only the summary edit ("posted 0, kept 3")
    fake.reset_log()
    run_review(host_for(fake), found, status=StatusSpec("failure", "3 finding(s)"))
    assert fake.writes() == []  # unchanged summary: nothing is written at all


def test_push_posts_new_marks_vanished_outdated_and_keeps_unchanged(fake, tmp_path):
    repo, base, head = make_change(tmp_path, edits=(3, 10))
    open_pull(fake, repo, base, head)
    run_review(host_for(fake), findings_for(repo, base, head))
    first = {c["id"]: c["body"] for c in fake.review_comments.values()}
    fake.add_review_comment(7, "maint", "Good catch, will fix", path="app.py", line=None,
                            in_reply_to=min(first))  # someone replied to the first comment
    lines = _base_lines(60)
    lines[10] = "def f10(x):\n    eval(x)  # edit 10\n    return x + 10\n"
    lines[30] = "def f30(x):\n    exec(x)  # new\n    return x + 30\n"
    repo.write("app.py", "".join(lines))
    head2 = repo.commit("push")
    fake.push(7, diff=repo.diff(base, head2), head_sha=head2, files={"app.py": repo.show(head2, "app.py")})
    _mr, p, result = run_review(host_for(fake), findings_for(repo, base, head2))
    assert result.created == 1 and result.resolved == 1 and len(p.keep) == 1
    replied = fake.review_comments[min(first)]
    assert "~~" in replied["body"] and "**Outdated:**" in replied["body"] and markers.decode(replied["body"])
    assert len(fake.review_comments) == 4  # nothing deleted: 2 old + 1 reply + 1 new
    _mr2, p2, result2 = run_review(host_for(fake), findings_for(repo, base, head2))
    assert not p2.create and not p2.resolve and result2.created == 0  # outdated mark is recognised


# ---------------------------------------------------------------- crash safety
def test_crash_between_writes_then_rerun_equals_clean_run(tmp_path):
    repo, base, head = make_change(tmp_path)
    found = findings_for(repo, base, head)
    status = StatusSpec("failure", "3 finding(s)")

    def fresh_fake():
        server = FakeGitHub("octo", "app").start()
        server.add_token(TOKEN, BOT)
        open_pull(server, repo, base, head)
        return server

    clean = fresh_fake()
    try:
        run_review(host_for(clean), found, status=status)
        expected, n_writes = state(clean), len(clean.writes())
    finally:
        clean.stop()
    assert n_writes == 3
    for n in range(1, n_writes + 1):
        for kind in ("reset", "reset-after"):
            server = fresh_fake()
            try:
                server.faults.append(Fault(kind, write_number=n))
                with pytest.raises(HostError):
                    run_review(host_for(server, max_retries=0), found, status=status)
                run_review(host_for(server), found, status=status)
                assert state(server) == expected, (n, kind)
            finally:
                server.stop()


def test_reset_after_a_landed_review_is_not_posted_twice(fake, tmp_path):
    repo, base, head = make_change(tmp_path)
    open_pull(fake, repo, base, head)
    fake.faults.append(Fault("reset-after", method="POST", path=r"/reviews$"))
    result = run_review(host_for(fake), findings_for(repo, base, head))[2]
    assert len(fake.review_comments) == 3 and len(fake.reviews) == 1
    assert result.created == 3


# ---------------------------------------------------------------- fallbacks and permissions
def test_line_outside_diff_falls_back_to_file_then_summary(fake, tmp_path):
    repo, base, _ = make_change(tmp_path, edits=(3, 10, 20))
    repo.write("util.py", "def helper(x):\n    return eval(x)\n")
    head = repo.commit("add util")
    fake.add_pull(7, diff=repo.diff(base, head), head_sha=head, base_sha=base)
    found = findings_for(repo, base, head)
    assert [f.anchor.path for f in found] == ["app.py"] * 3 + ["util.py"] * 2
    to_file_level = found[1].anchor.line
    fake.reject_lines |= {("app.py", to_file_level), ("util.py", 2)}  # GitHub refuses these lines
    fake.reject_files.add("util.py")  # ... and a file-level comment on util.py too
    _mr, _p, result = run_review(host_for(fake), found)
    assert result.created == 3 and result.file_level == 1 and result.to_summary == 1
    file_level = [c for c in fake.review_comments.values() if c["subject_type"] == "file"]
    assert len(file_level) == 1 and file_level[0]["line"] is None and markers.decode(file_level[0]["body"])
    summary = next(iter(fake.issue_comments.values()))["body"]
    assert "util.py:2" in summary and "would not place" in summary and "return eval(x)" in summary
    assert markers.decode(summary.replace(markers.SUMMARY_MARKER, "")) is None  # no stray finding marker
    assert len(fake.review_comments) == 4  # nothing lost: 3 inline + 1 file-level + 1 in the summary


def test_the_fake_rejects_requests_github_would_reject(fake, tmp_path):
    import requests

    repo, base, head = make_change(tmp_path)
    open_pull(fake, repo, base, head)
    auth = {"Authorization": f"token {TOKEN}"}
    requests.post(f"{fake.base_url}/repos/octo/app/pulls/7/reviews", json={"event": "SHOUT"}, headers=auth,
                  timeout=5)
    requests.post(f"{fake.base_url}/repos/octo/app/statuses/{head}", json={"state": "fine"}, headers=auth,
                  timeout=5)
    assert len(fake.errors) >= 2 and any("SHOUT" in e or "event" in e for e in fake.errors)
    fake.errors.clear()


def test_fork_pull_with_read_only_token_gives_a_clear_error(fake, tmp_path):
    repo, base, head = make_change(tmp_path)
    open_pull(fake, repo, base, head, head_repo="forker/app")
    fake.add_token("ghs_" + "R" * 36, "github-actions[bot]", readonly=True, actions=True)
    host = GitHubHost("ghs_" + "R" * 36, base_url=fake.base_url, timeout=2, sleep=lambda s: None)
    mr = host.fetch(REF)
    assert mr.is_fork
    p = plan(findings_for(repo, base, head), [rating()] * 3, PlanConfig(commit=head), mr.existing)
    with pytest.raises(HostError) as info:
        host.apply(mr, p)
    text = str(info.value)
    assert "403" in text and "read-only" in text and "docs/github.md" in text and "R" * 36 not in text
    assert not fake.review_comments


# ---------------------------------------------------------------- pagination, retries, secrets
def test_pagination_over_three_pages_of_existing_comments(fake, tmp_path):
    repo, base, head = make_change(tmp_path)
    open_pull(fake, repo, base, head)
    run_review(host_for(fake), findings_for(repo, base, head))
    for i in range(7):
        fake.add_review_comment(7, "maint", f"human note {i}", path="app.py", line=None)
    host = host_for(fake, per_page=4)
    fake.reset_log()
    mr = host.fetch(REF)
    pages = [r for r in fake.requests if r[1].startswith("/repos/octo/app/pulls/7/comments")]
    assert len(pages) == 3 and "page=3" in pages[-1][1]
    assert len(mr.existing) == 3 and mr.summary_id


@pytest.mark.parametrize("kind,expected_sleep", [("429", 7.0), ("429-bare", 60.0), ("secondary", 60.0),
                                                  ("primary", None), ("502", 1.0), ("timeout", 1.0)])
def test_faults_are_retried_with_the_right_wait(fake, tmp_path, kind, expected_sleep):
    repo, base, head = make_change(tmp_path)
    open_pull(fake, repo, base, head)
    fake.faults.append(Fault(kind, method="GET", path=r"/pulls/7$", retry_after=7 if kind == "429" else None))
    sleeps: list[float] = []
    mr = host_for(fake, sleeps, timeout=1).fetch(REF)
    assert mr.head_sha == head
    if expected_sleep is None:  # x-ratelimit-reset two seconds ahead
        assert 1.0 <= sleeps[0] <= 4.0
    else:
        assert sleeps[0] == expected_sleep


def test_retries_are_bounded_and_errors_carry_no_token(fake, tmp_path, caplog):
    repo, base, head = make_change(tmp_path)
    open_pull(fake, repo, base, head)
    fake.faults.append(Fault("502", method="GET", path=r"/pulls/7$", times=10))
    sleeps: list[float] = []
    caplog.set_level(logging.DEBUG)
    with pytest.raises(HostError) as info:
        host_for(fake, sleeps, max_retries=3).fetch(REF)
    assert len(sleeps) == 3 and sleeps == [1.0, 2.0, 4.0]
    assert "502" in str(info.value) and TOKEN not in str(info.value) and TOKEN not in caplog.text
    fake.faults[:] = [Fault("429", method="GET", path=r"/pulls/7$", times=10)]
    with pytest.raises(RateLimitError):
        host_for(fake, max_retries=2).fetch(REF)
    fake.faults.clear()
    with pytest.raises(HostError) as bad:
        GitHubHost("ghp_" + "Z" * 36, base_url=fake.base_url, sleep=lambda s: None).fetch(REF)
    assert "401" in str(bad.value) and "Z" * 36 not in str(bad.value)


def test_writes_are_paced(fake, tmp_path):
    repo, base, head = make_change(tmp_path)
    open_pull(fake, repo, base, head)
    sleeps: list[float] = []
    run_review(host_for(fake, sleeps, write_pause=5.0), findings_for(repo, base, head),
               status=StatusSpec("success", "ok"))
    assert len([s for s in sleeps if s > 4.0]) == 2  # three writes, two pauses between them


# ---------------------------------------------------------------- feedback
def test_feedback_reads_votes_replies_and_trust(fake, tmp_path):
    repo, base, head = make_change(tmp_path)
    open_pull(fake, repo, base, head)
    run_review(host_for(fake), findings_for(repo, base, head))
    ids = sorted(fake.review_comments)
    fake.add_review_comment(7, "maint", "/sieve severity minor", path="app.py", line=None, in_reply_to=ids[0])
    fake.add_review_comment(7, "stranger", "/sieve severity trivial", path="app.py", line=None, in_reply_to=ids[0])
    fake.react("pulls", ids[0], "maint", "+1")
    fake.react("pulls", ids[0], "stranger", "-1")
    fake.react("pulls", ids[0], BOT, "+1")  # the bot's own reaction is ignored
    fake.react("pulls", ids[0], "maint", "heart")  # not a vote
    fake.reset_log()
    items = list(host_for(fake).feedback("octo/app"))
    assert len(items) == 3 and all(i.number == 7 for i in items)
    first = next(i for i in items if i.comment_id == str(ids[0]))
    assert sorted((v.user, v.content, v.trusted) for v in first.votes) == [("maint", "+1", True),
                                                                         ("stranger", "-1", False)]
    assert sorted((r.user, r.body, r.trusted) for r in first.replies) == [
        ("maint", "/sieve severity minor", True), ("stranger", "/sieve severity trivial", False)]
    reaction_calls = [r for r in fake.requests if r[1].endswith("/reactions") or "/reactions?" in r[1]]
    assert len(reaction_calls) == 1  # comments without votes cost no call
    assert list(host_for(fake).feedback("octo/app", since="2999-01-01T00:00:00Z")) == []


# ---------------------------------------------------------------- races, unknown write results, size limits
def _copies(fake: FakeGitHub) -> tuple[dict[str, int], int]:
    """Sieve comments per fingerprint, and the number of summaries."""
    per_print: dict[str, int] = {}
    for c in fake.review_comments.values():
        mark = markers.decode(c["body"])
        if mark:
            per_print[mark.fingerprint] = per_print.get(mark.fingerprint, 0) + 1
    return per_print, sum(markers.is_summary(c["body"]) for c in fake.issue_comments.values())


def test_two_overlapping_runs_leave_one_copy_and_a_third_run_is_clean(fake, tmp_path):
    import threading

    repo, base, head = make_change(tmp_path)
    open_pull(fake, repo, base, head)
    found = findings_for(repo, base, head)
    fake.review_latency = 1.0  # both reviews are in flight at once, as with a quick double push
    fetched = threading.Barrier(2)
    errors: list[BaseException] = []

    def one_run() -> None:
        try:
            host = host_for(fake)
            mr = host.fetch(REF)
            fetched.wait(timeout=30)  # both runs saw an empty pull request
            p = plan(found, [rating() for _ in found], PlanConfig(commit=head), mr.existing)
            host.apply(mr, p, StatusSpec("failure", "3 finding(s)"))
        except BaseException as exc:  # noqa: BLE001 — re-raised below in the test thread
            errors.append(exc)

    runs = [threading.Thread(target=one_run) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=60)
    assert not errors and len(fake.reviews) == 2  # both runs really posted
    per_print, summaries = _copies(fake)
    assert sorted(per_print.values()) == [1, 1, 1] and summaries == 1
    fake.review_latency = 0.0
    fake.reset_log()
    _mr, p, result = run_review(host_for(fake), found, status=StatusSpec("failure", "3 finding(s)"))
    assert not p.create and result.created == 0 and _copies(fake) == (per_print, 1)
    assert not [w for w in fake.writes() if w[0] != "PATCH"]  # at most the summary's counts are edited


def test_a_third_run_removes_what_a_race_left(fake, tmp_path):
    repo, base, head = make_change(tmp_path)
    open_pull(fake, repo, base, head)
    found = findings_for(repo, base, head)
    run_review(host_for(fake), found)
    first = min(fake.review_comments)
    copy = fake.add_review_comment(7, BOT, fake.review_comments[first]["body"], path="app.py", line=None)
    summary = next(iter(fake.issue_comments.values()))
    fake.issue_comments[summary["id"] + 500] = {**summary, "id": summary["id"] + 500}  # a second summary
    _mr, _p, result = run_review(host_for(fake), found)
    assert copy["id"] not in fake.review_comments and first in fake.review_comments
    assert _copies(fake) == ({k: 1 for k in _copies(fake)[0]}, 1)
    assert sum("two runs overlapped" in n for n in result.notes) == 2


def test_a_summary_that_lands_and_then_answers_502_is_not_posted_twice(fake, tmp_path):
    repo, base, head = make_change(tmp_path)
    open_pull(fake, repo, base, head)
    fake.faults.append(Fault("502-after", method="POST", path=r"/issues/7/comments$"))
    sleeps: list[float] = []
    _mr, _p, result = run_review(host_for(fake, sleeps), findings_for(repo, base, head))
    assert _copies(fake)[1] == 1 and 1.0 in sleeps  # retried once in thought: read back, found, not resent
    assert result.summary_url.endswith(f"#issuecomment-{next(iter(fake.issue_comments))}")
    posts = [r for r in fake.requests if r[0] == "POST" and r[1].endswith("/issues/7/comments")]
    assert [r[2] for r in posts] == [502]


def test_the_fake_refuses_bodies_over_githubs_limit(fake, tmp_path):
    import requests

    repo, base, head = make_change(tmp_path)
    open_pull(fake, repo, base, head)
    auth = {"Authorization": f"token {TOKEN}"}
    url = f"{fake.base_url}/repos/octo/app/issues/7/comments"
    refused = requests.post(url, json={"body": "x" * 65_537}, headers=auth, timeout=5)
    assert refused.status_code == 422 and "too long" in refused.text
    assert requests.post(url, json={"body": "x" * 65_536}, headers=auth, timeout=5).status_code == 201


def test_one_finding_with_a_huge_suggestion_does_not_sink_the_review(fake, tmp_path):
    from dataclasses import replace

    repo, base, head = make_change(tmp_path)
    open_pull(fake, repo, base, head)
    found = findings_for(repo, base, head)
    found[1] = replace(found[1], source="llm", suggestion="    return int(x)  # " + "y" * 80_000)
    _mr, p, result = run_review(host_for(fake), found, status=StatusSpec("failure", "3 finding(s)"))
    assert result.created == 3 and len(fake.review_comments) == 3 and fake.statuses
    assert all(len(c["body"]) <= 65_536 for c in fake.review_comments.values())
    summary = next(iter(fake.issue_comments.values()))["body"]
    assert "1 suggestion(s) were too long" in summary


def test_an_oversized_comment_is_bisected_out_and_kept_in_the_summary(fake, tmp_path):
    """Even past the planner (a body GitHub refuses as too long), the other comments are posted."""
    repo, base, head = make_change(tmp_path)
    open_pull(fake, repo, base, head)
    host = host_for(fake)
    mr = host.fetch(REF)
    found = findings_for(repo, base, head)
    p = plan(found, [rating() for _ in found], PlanConfig(commit=head), mr.existing)
    from dataclasses import replace

    huge = replace(p.create[0], body=p.create[0].body + "z" * 70_000)
    result = host.apply(mr, replace(p, create=(huge, *p.create[1:])))
    assert result.created == 2 and result.to_summary == 1
    summary = next(iter(fake.issue_comments.values()))["body"]
    assert len(summary) <= 65_536 and "cut to fit" in summary


def test_a_pull_request_with_2500_binary_files_gets_a_summary_github_accepts(fake, tmp_path):
    from bot import diff as diffmod
    from bot.findings import Skip

    repo = make_repo(tmp_path / "bin")
    repo.write("a.txt", "a\n")
    base = repo.commit("base")
    for i in range(2500):
        (repo.root / f"img{i:04d}.bin").write_bytes(bytes([0, 1, 2, i % 256]) * 8)
    head = repo.commit("binaries")
    fake.add_pull(7, diff=repo.diff(base, head), head_sha=head, base_sha=base)
    host = host_for(fake)
    mr = host.fetch(REF)
    skips = tuple(Skip(s.path, s.reason) for s in diffmod.parse(mr.diff).skipped)
    assert len(skips) == 2500
    p = plan([], [], PlanConfig(commit=head), mr.existing, skips)
    host.apply(mr, p, StatusSpec("success", "0 finding(s)"))
    summary = next(iter(fake.issue_comments.values()))["body"]
    assert "2500 item(s) not reviewed" in summary and "… and 2450 more item(s)" in summary
    assert len(summary) <= 65_536 and fake.statuses[head][0]["state"] == "success"


def test_feedback_collect_reports_the_real_number_of_api_calls(fake, tmp_path):
    from bot import feedback_app, store

    repo, base, head = make_change(tmp_path)
    open_pull(fake, repo, base, head)
    run_review(host_for(fake), findings_for(repo, base, head))
    fake.react("pulls", min(fake.review_comments), "maint", "+1")
    fake.reset_log()
    db = store.open_store(str(tmp_path / "feedback.db"))
    try:
        stats = feedback_app.collect(host_for(fake), "octo/app", None, db)
    finally:
        db.close()
    assert stats.comments == 3 and stats.api_calls == len(fake.requests) > 0
    assert f"{len(fake.requests)} API call(s)" in str(stats)
