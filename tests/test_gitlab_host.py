"""GitLabHost driven through the real python-gitlab client against the fake GitLab, with diffs made by real git."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bot import diff as diffmod
from bot.errors import ConfigError, EndpointError, RateLimitError
from bot.findings import Anchor, Finding, Rating
from bot.hosts.base import HOSTS, StatusSpec
from bot.hosts.gitlab import GitLabHost, parse_gitlab_ref, ref_from_ci_env, url_from_ci_env
from bot.hosts.gitlab_entry import GITLAB
from bot.plan import PlanConfig, plan
from bot.severity import Severity
from tests.fake_gitlab import FakeGitLab
from tests.gitrepo import GitRepo

TOKEN = "glpat-botTOKEN0123456789abcd"
ROOT = Path(__file__).resolve().parents[1]

BASE_APP = "".join(f"x{i} = {i}\n" for i in range(1, 41))


def head_app(eval_line: str = "x10 = eval(user_input)\n") -> str:
    lines = [f"x{i} = {i}\n" for i in range(1, 41)]
    lines[9] = eval_line
    del lines[29]  # x30 removed
    lines[20:20] = ["y1 = 1\n", "y2 = 2\n"]
    return "".join(lines)


class World:
    """A git repo, a fake GitLab with one merge request, and a host bound to it."""

    def __init__(self, tmp: Path, fake: FakeGitLab) -> None:
        self.repo = GitRepo(tmp / "repo")
        self.repo.write("app.py", BASE_APP)
        self.base = self.repo.commit("base")
        self.repo.write("app.py", head_app())
        self.repo.write("new.py", "def f():\n    return os.system(cmd)\n\n")
        self.head = self.repo.commit("head")
        self.fake = fake
        self.bot = fake.add_user("sieve-bot", TOKEN)
        self.dev = fake.add_user("dev", "dev-token")
        self.stranger = fake.add_user("stranger", "stranger-token")
        self.project = fake.add_project("group/sub/app", self.repo.root, {self.bot["id"]: 30, self.dev["id"]: 30})
        self.mr = fake.add_mr(self.project, 7, self.base, self.head, self.dev)
        self.ref = parse_gitlab_ref("group/sub/app!7")
        self.sleeps: list[float] = []

    def host(self, **kw: object) -> GitLabHost:
        options = {"url": self.fake.url, "write_pause": 0.0, "sleep": self.sleeps.append, "timeout": 5.0, **kw}
        return GitLabHost(TOKEN, **options)  # type: ignore[arg-type]

    def push(self, content: str) -> None:
        self.repo.write("app.py", content)
        self.head = self.repo.commit("push")
        self.fake.push(self.mr, self.head)


def findings_for(mr_diff: bytes, wanted: list[tuple[str, dict, str, str | None]]) -> list[Finding]:
    """Findings anchored with bot.diff on the fetched diff; ``None`` kwargs → an anchor outside the diff."""
    parsed = diffmod.parse(mr_diff)
    out = []
    for path, where, review, suggestion in wanted:
        patch = parsed.file(path)
        if "outside" in where:
            out.append(Finding(Anchor(path, where["outside"]), review, "llm", code="x1 = 1"))
            continue
        anchor = diffmod.anchor_for(patch, **where)
        code = diffmod.excerpt(patch, anchor.line, anchor.side)
        out.append(Finding(anchor, review, "llm", code=code, suggestion=suggestion))
    return out


FIRST = [("app.py", {"new_line": 10}, "eval on user input runs arbitrary code", None),
         ("app.py", {"new_line": 12, "old_line": 12}, "x12 shadows a module name", None),
         ("app.py", {"old_line": 30}, "x30 is still used by the report", None),
         ("app.py", {"new_line": 22, "start_line": 21}, "use one tuple", "y = (1, 2)"),
         ("new.py", {"new_line": 2}, "shell injection through cmd", None),
         ("app.py", {"outside": 1}, "x1 is never read", None)]


def rate(findings: list[Finding], level: str = "major") -> list[Rating]:
    probs = {"critical": 0.1, "major": 0.1, "minor": 0.1, "trivial": 0.1}
    probs[level] = 0.7
    return [Rating(dict(probs), level, "student-v1", "p1") for _ in findings]


def review(world: World, host: GitLabHost, wanted=FIRST, status: StatusSpec | None = None):
    mr = host.fetch(world.ref)
    findings = findings_for(mr.diff, wanted)
    config = PlanConfig(threshold=Severity.TRIVIAL, commit=mr.head_sha, flavor="gitlab", max_body=GITLAB.max_body)
    the_plan = plan(findings, rate(findings), config, mr.existing)
    return mr, the_plan, host.apply(mr, the_plan, status)


def discussions(world: World) -> list[dict]:
    return [d for d in world.mr.discussions if not d["individual_note"]]


@pytest.fixture()
def world(tmp_path: Path):
    with FakeGitLab() as fake:
        yield World(tmp_path, fake)


def test_registered_and_refs():
    assert "gitlab" in HOSTS.names()
    assert parse_gitlab_ref("group/sub/project!45") == parse_gitlab_ref(
        "https://gitlab.example.org/group/sub/project/-/merge_requests/45")
    with pytest.raises(ConfigError, match="group/project!45"):
        parse_gitlab_ref("project#45")
    env = {"CI_MERGE_REQUEST_IID": "3", "CI_PROJECT_ID": "99", "CI_API_V4_URL": "https://git.example.org/api/v4"}
    assert ref_from_ci_env(env).repo == "99" and ref_from_ci_env(env).number == 3
    assert url_from_ci_env(env) == "https://git.example.org"
    with pytest.raises(ConfigError, match="merge_request_event"):
        ref_from_ci_env({"CI_PROJECT_ID": "99"})


def test_fetch_reassembles_the_git_diff(world: World):
    host = world.host()
    mr = host.fetch(world.ref)
    assert (mr.base_sha, mr.head_sha, mr.start_sha) == (world.base, world.head, world.base)
    ours, gits = diffmod.parse(mr.diff), diffmod.parse(world.repo.diff("-M", world.base, world.head))
    assert [(f.path, f.old_path, f.status, [h.text() for h in f.hunks]) for f in ours.files] == \
           [(f.path, f.old_path, f.status, [h.text() for h in f.hunks]) for f in gits.files]
    assert host.read_file(mr, "new.py") == b"def f():\n    return os.system(cmd)\n\n"
    assert host.read_file(mr, "missing.py") is None


def test_first_review_positions_match_git(world: World):
    host = world.host()
    _, _, result = review(world, host, status=StatusSpec("failure", "1 critical"))
    assert (result.created, result.file_level, result.to_summary) == (6, 1, 0)
    positions = {d["notes"][0]["body"].split("\n")[2]: d["notes"][0]["position"] for d in discussions(world)}
    assert {k: (p.get("old_line"), p.get("new_line"))
            for k, p in positions.items() if p["position_type"] == "text"} == {
        "eval on user input runs arbitrary code": (None, 10),  # added line: new_line only
        "x12 shadows a module name": (12, 12),  # context line: both numbers
        "x30 is still used by the report": (30, None),  # removed line: old_line only
        "use one tuple": (None, 22),
        "shell injection through cmd": (None, 2)}
    tuple_pos = positions["use one tuple"]
    assert tuple_pos["line_range"]["start"]["new_line"] == 21 and tuple_pos["head_sha"] == world.head
    assert positions["x1 is never read"]["position_type"] == "file"
    summary = [d for d in world.mr.discussions if d["individual_note"]]
    assert len(summary) == 1 and "Sieve review" in summary[0]["notes"][0]["body"]
    assert world.fake.statuses == [{"id": world.fake.statuses[0]["id"], "sha": world.head, "status": "failed",
                                    "name": "sieve", "description": "1 critical"}]
    assert result.writes == 8  # 6 discussions + summary + status, nothing else


def test_rerun_is_idempotent(world: World):
    host = world.host()
    review(world, host)
    before = len(world.mr.discussions)
    _, again, result = review(world, world.host())
    assert again.create == () and result.created == 0
    assert len(world.mr.discussions) == before
    assert result.writes <= 1  # at most the summary edit
    _, _, third = review(world, world.host())
    assert third.writes == 0  # the summary text did not change either


def test_push_posts_new_resolves_gone_and_never_deletes(world: World):
    host = world.host()
    review(world, host)
    x30 = next(d for d in discussions(world) if "x30" in d["notes"][0]["body"])
    world.fake.reply(world.mr, x30, world.dev, "it is not, see report.py")
    world.push(head_app("x10 = int(user_input)\n"))
    wanted = [w for w in FIRST if "eval" not in w[2] and "x30" not in w[2]]
    wanted.append(("app.py", {"new_line": 10}, "int() raises on bad input", None))
    _, _, result = review(world, world.host(), wanted)
    assert (result.created, result.resolved) == (1, 2)
    assert x30["notes"][0]["resolved"] is True and len(x30["notes"]) == 2
    assert not [r for r in world.fake.requests if r[0] == "DELETE"]
    assert len(discussions(world)) == 7


def test_crash_between_writes_then_rerun_matches_a_clean_run(world: World, tmp_path: Path):
    world.fake.fail_writes_after = 2
    with pytest.raises(EndpointError):
        review(world, world.host(max_retries=1))
    assert len(world.mr.discussions) == 2
    world.fake.fail_writes_after = None
    review(world, world.host())
    bodies = sorted(d["notes"][0]["body"].split("\n")[2] for d in world.mr.discussions)
    assert len(bodies) == 7 and len(set(bodies)) == 7  # 6 findings + summary, no duplicates


def test_line_code_retry_when_the_instance_demands_it(world: World):
    world.fake.line_code_required = True
    _, _, result = review(world, world.host())
    assert (result.created, result.file_level) == (6, 1)
    posts = [r for r in world.fake.requests if r[0] == "POST" and r[1].endswith("/discussions")]
    assert [r[2] for r in posts].count(400) == 1  # refused once, then every position carried a line_code
    assert all("line_code" in d["notes"][0]["position"] for d in discussions(world)
               if d["notes"][0]["position"]["position_type"] == "text")


def test_refused_position_falls_back_and_nothing_is_lost(world: World):
    host = world.host()
    mr = host.fetch(world.ref)
    outside = [("app.py", {"outside": 1}, "x1 is never read", None), ("app.py", {"outside": 2}, "x2 too", None)]
    findings = findings_for(mr.diff, outside)
    the_plan = plan(findings, rate(findings), PlanConfig(threshold=Severity.TRIVIAL, flavor="gitlab"), ())
    world.fake.file_positions = False  # an instance that refuses file-level positions as well
    result = host.apply(mr, the_plan)
    assert (result.created, result.file_level, result.to_summary) == (2, 2, 0)
    general = [d for d in world.mr.discussions if d["notes"][0]["position"] is None and not d["individual_note"]]
    assert len(general) == 2 and all("could not anchor" in d["notes"][0]["body"] for d in general)
    assert any("refused" in n for n in result.notes)


def test_a_push_between_fetch_and_apply_leaves_the_writing_to_the_newer_run(world: World):
    host = world.host()
    mr = host.fetch(world.ref)
    findings = findings_for(mr.diff, FIRST[:2])
    the_plan = plan(findings, rate(findings), PlanConfig(threshold=Severity.TRIVIAL, flavor="gitlab"), ())
    world.push(head_app("x10 = 10\n"))
    result = host.apply(mr, the_plan)
    assert result.stale and result.created == 0 and world.fake.writes() == []
    assert any("moved on" in n for n in result.notes)


def test_429_without_headers_backs_off_exponentially(world: World):
    world.fake.inject("429", "GET", "/discussions$", times=3)
    host = world.host()
    host.fetch(world.ref)
    assert world.sleeps == [1.0, 2.0, 4.0]
    world.sleeps.clear()
    world.fake.inject("429-retry-after", "GET", "/diffs$", times=1)
    host.fetch(world.ref)
    assert world.sleeps == [1.0]


def test_429_budget_spent_is_a_clear_error_without_the_token(world: World):
    world.fake.inject("429", "GET", "merge_requests/7$", times=10)
    with pytest.raises(RateLimitError) as caught:
        world.host(max_retries=2).fetch(world.ref)
    assert "rate-limiting" in str(caught.value) and TOKEN not in str(caught.value)


def test_502_and_timeouts_are_retried(world: World):
    world.fake.inject("502", "POST", "/discussions$", times=1)
    world.fake.timeout_delay = 0.6
    world.fake.inject("timeout", "GET", "merge_requests/7$", times=1)
    host = world.host(timeout=0.3)
    _, _, result = review(world, host)
    assert result.created == 6 and len(discussions(world)) == 6
    assert host.counters.retries == 2


def test_pagination_over_three_pages(tmp_path: Path):
    with FakeGitLab(max_per_page=3) as fake:
        world = World(tmp_path, fake)
        review(world, world.host())
        pages_before = len([r for r in fake.requests if r[0] == "GET" and r[1].endswith("/discussions")])
        _, again, result = review(world, world.host())
        pages = len([r for r in fake.requests if r[0] == "GET" and r[1].endswith("/discussions")]) - pages_before
        assert pages == 3 and again.create == () and result.created == 0  # 7 discussions / 3 per page


def test_feedback_reads_votes_replies_and_trust(world: World):
    review(world, world.host())
    eval_note = next(d for d in discussions(world) if "eval" in d["notes"][0]["body"])
    note = eval_note["notes"][0]
    world.fake.award(note, world.dev, "thumbsup")
    world.fake.award(note, world.stranger, "thumbsdown")
    world.fake.award(note, world.bot, "thumbsup")  # the bot's own: ignored
    world.fake.award(note, world.dev, "rocket")  # not a vote
    world.fake.reply(world.mr, eval_note, world.stranger, "/sieve severity trivial")
    found = {f.comment_id: f for f in world.host().feedback("group/sub/app")}
    assert len(found) == 6
    fb = found[str(note["id"])]
    assert sorted((v.user, v.content, v.trusted) for v in fb.votes) == [("dev", "+1", True),
                                                                         ("stranger", "-1", False)]
    assert [(r.user, r.body, r.trusted) for r in fb.replies] == [("stranger", "/sieve severity trivial", False)]
    assert fb.url.endswith(f"/-/merge_requests/7#note_{note['id']}") and fb.number == 7


def test_gitlab_ci_template_validates():
    tool = ROOT / ".venv" / "bin" / "check-jsonschema"
    if not tool.exists() and not shutil.which("check-jsonschema"):
        pytest.skip("check-jsonschema is not installed (pip install check-jsonschema)")
    done = subprocess.run([str(tool) if tool.exists() else "check-jsonschema", "--builtin-schema", "vendor.gitlab-ci",
                           str(ROOT / "examples" / "gitlab-ci.yml")], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    text = (ROOT / "examples" / "gitlab-ci.yml").read_text()
    assert '$CI_PIPELINE_SOURCE == "merge_request_event"' in text and "SIEVE_GITLAB_TOKEN" in text


# --- races, unknown write results, size limits ---------------------------------------------------------------

def _copies(world: World) -> tuple[dict[str, int], int]:
    from bot import markers

    per_print: dict[str, int] = {}
    summaries = 0
    for d in world.mr.discussions:
        body = d["notes"][0]["body"]
        summaries += markers.is_summary(body)
        mark = markers.decode(body)
        if mark:
            per_print[mark.fingerprint] = per_print.get(mark.fingerprint, 0) + 1
    return per_print, summaries


def test_two_overlapping_runs_leave_one_copy_and_a_third_run_is_clean(world: World):
    import threading

    world.fake.write_latency = 0.2  # every write takes a while: the two runs interleave
    fetched = threading.Barrier(2)
    errors: list[BaseException] = []

    def one_run() -> None:
        try:
            host = world.host()
            mr = host.fetch(world.ref)
            fetched.wait(timeout=30)
            findings = findings_for(mr.diff, FIRST)
            the_plan = plan(findings, rate(findings), PlanConfig(threshold=Severity.TRIVIAL, commit=mr.head_sha,
                                                                 flavor="gitlab"), mr.existing)
            host.apply(mr, the_plan)
        except BaseException as exc:  # noqa: BLE001 — re-raised below in the test thread
            errors.append(exc)

    runs = [threading.Thread(target=one_run) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=120)
    assert not errors
    assert len([r for r in world.fake.requests if r[0] == "POST" and r[1].endswith("/discussions")]) >= 12
    per_print, summaries = _copies(world)
    assert sorted(per_print.values()) == [1] * 6 and summaries == 1
    world.fake.write_latency = 0.0
    before = len(world.fake.requests)
    _, again, result = review(world, world.host())
    assert again.create == () and result.created == 0 and _copies(world) == (per_print, 1)
    assert [r[0] for r in world.fake.requests[before:] if r[0] != "GET"] in ([], ["PUT"])


def test_a_summary_that_lands_and_then_answers_502_is_not_posted_twice(world: World):
    world.fake.inject("502-after", "POST", "/notes$")
    _, _, result = review(world, world.host())
    assert _copies(world)[1] == 1 and result.created == 6
    assert [r[2] for r in world.fake.requests if r[0] == "POST" and r[1].endswith("/notes")] == [502]


def test_the_fake_refuses_notes_over_gitlabs_limit(world: World):
    import requests

    url = f"{world.fake.url}/api/v4/projects/{world.project['id']}/merge_requests/7/notes"
    refused = requests.post(url, json={"body": "x" * 1_000_001}, headers={"PRIVATE-TOKEN": TOKEN}, timeout=10)
    assert refused.status_code == 400 and "too long" in refused.text
    assert requests.post(url, json={"body": "x" * 1_000}, headers={"PRIVATE-TOKEN": TOKEN}, timeout=10).ok


def test_a_duplicate_the_other_run_removed_meanwhile_is_skipped_not_an_error(world: World):
    """Two runs clean up the same duplicates: asking for the award emoji of a note the other run has just removed
    answers 404, which means "gone", not "check the project path"."""
    from bot.hosts.base import ApplyResult

    host = world.host()
    mr, _, _ = review(world, host)
    base = f"/projects/{world.project['id']}/merge_requests/{mr.ref.number}"
    seen = host._read_back(base, mr.ref.repo)
    note_id, key, _, commit = next(s for s in seen if s[1] != "summary")
    gone = max(s[0] for s in seen) + 1000  # a later copy of the same finding, already deleted
    result = ApplyResult()
    host._drop_duplicates(base, [*seen, (gone, key, False, commit)], result, mr.head_sha)
    assert result.notes == [] and any(s[0] == note_id for s in host._read_back(base, mr.ref.repo))
