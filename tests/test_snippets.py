"""The copy-paste snippets (examples/github/*.yml, examples/gitlab-ci.yml), copied unchanged into a project that is
not Sieve and run job by job as a runner would, against the fake GitHub and the fake GitLab.

The project is a throwaway git repository with a `.sieve.toml` of its own (threshold major, fail_on critical) and
a change that runs a shell command: the default student rates it critical. Sieve comes from its pinned reference,
resolved to a copy of this working tree (tests/runner.py says what is real and what is stood in for); the copy is
installed once per session by the Action's own install step, into a fresh HOME.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from bot import markers
from tests.fake_github import SPEC_PATH, FakeGitHub
from tests.fake_gitlab import FakeGitLab
from tests.gitrepo import GitRepo, make_repo
from tests.runner import GITHUB_SNIPPETS, GITLAB_SNIPPET, GitHubRun, run_github_job, run_gitlab_job

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not SPEC_PATH.exists(), reason=f"API description missing: {SPEC_PATH}")]

TOKEN = "ghs_" + "S9" * 18
READ_TOKEN = "ghs_" + "R3" * 18
GITLAB_TOKEN = "glpat-snipTOKEN0123456789ab"
SETTINGS = 'threshold = "major"\nfail_on = "critical"\n'
BEFORE = "import subprocess\n\n\ndef run(cmd):\n    return subprocess.run(cmd)\n"
AFTER = ("import subprocess\n\n\ndef run(cmd):\n    return subprocess.run(cmd, shell=True)\n\n\n"
         "def total(items):\n    return sum(items) + shipping_fee\n")


def project(root: Path) -> tuple[GitRepo, str, str]:
    """A shop's repository with Sieve's snippets copied in on main, and a pull request's branch on top."""
    repo = make_repo(root)
    repo.write(".sieve.toml", SETTINGS)
    repo.write("shop/run.py", BEFORE)
    for snippet in GITHUB_SNIPPETS:
        repo.write(f".github/workflows/{snippet.name}", snippet.read_bytes())
    repo.write(".gitlab-ci.yml", GITLAB_SNIPPET.read_bytes())
    base = repo.commit("add Sieve: its snippets, unchanged")
    repo.git("checkout", "-q", "-b", "feature")
    repo.write("shop/run.py", AFTER)
    head = repo.commit("run commands through the shell")
    repo.git("checkout", "-q", "main")
    assert not (root / "action.yml").exists() and not (root / "pyproject.toml").exists()  # not Sieve
    return repo, base, head


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=120).stdout.strip()


def values(api: str, base: str, head: str, token: str) -> dict[str, str]:
    """What GitHub fills the snippets' expressions with, for pull request 3 of octo/shop."""
    return {"github.repository": "octo/shop", "github.api_url": api, "github.token": token,
            "secrets.SIEVE_MARKER_KEY": "marker-key-for-tests",
            "github.event.pull_request.number": "3", "github.event.pull_request.head.sha": head,
            "github.event.pull_request.base.sha": base, "github.event.workflow_run.head_sha": head,
            "github.event.workflow_run.id": "4242", "github.run_id": "4243", "inputs.since": "",
            "runner.os": "Linux", "runner.arch": "X64"}


def pull_event(head: str, base: str, head_repo: str) -> dict:
    return {"action": "synchronize", "number": 3,
            "pull_request": {"number": 3, "draft": False, "head": {"sha": head, "repo": {"full_name": head_repo}},
                             "base": {"sha": base, "repo": {"full_name": "octo/shop"}}}}


def _workflow(repo: GitRepo, name: str) -> Path:
    return repo.root / ".github" / "workflows" / name


def test_review_then_feedback_as_copied(installed_runner, tmp_path: Path) -> None:
    """sieve-review.yml's `review` job posts with the settings of the project's .sieve.toml (the Action's inputs are
    empty), fails on the critical finding and sets the status; sieve-feedback.yml then harvests a 👍."""
    repo, base, head = project(tmp_path / "shop")
    with FakeGitHub("octo", "shop") as fake:
        fake.add_token(TOKEN, "github-actions[bot]", actions=True)
        fake.add_pull(3, diff=repo.diff(base, head), head_sha=head, base_sha=base, head_repo="octo/shop",
                      files={"shop/run.py": repo.show(head, "shop/run.py")})
        run = GitHubRun(installed_runner, repo, head, values(fake.base_url, base, head, TOKEN), fake.base_url,
                        "pull_request", pull_event(head, base, "octo/shop"))
        job = run_github_job(run, _workflow(repo, "sieve-review.yml"), "review", tmp_path / "review")
        sieve = job.step("Sieve")
        assert sieve.returncode == 1, job.log  # fail_on = "critical" met
        assert "fail-on" in sieve.stderr and TOKEN not in job.log
        assert int(sieve.outputs["critical"]) >= 1 and "critical=" in job.step("Counts").stdout
        saved = json.loads((tmp_path / "review" / "runner-temp" / "sieve-review.json").read_text())
        assert saved["summary"]["threshold"] == "major", saved["summary"]  # .sieve.toml decides, not an input
        assert saved["summary"]["model"].startswith("default@")
        assert len(fake.reviews) == 1 and fake.review_comments and len(fake.issue_comments) == 1
        assert fake.statuses[head][-1]["state"] == "failure"
        first = min(fake.review_comments)
        assert markers.decode(fake.review_comments[first]["body"]).model.startswith("default@")
        fake.react("pulls", first, "octo", "+1")  # the owner agrees

        nightly = GitHubRun(installed_runner, repo, base, values(fake.base_url, base, head, TOKEN), fake.base_url,
                            "schedule", {"schedule": "17 3 * * *"})
        harvest = run_github_job(nightly, _workflow(repo, "sieve-feedback.yml"), "collect", tmp_path / "feedback")
    assert harvest.ok, harvest.log
    assert re.search(r"posted=\d+ .*up=1", harvest.step("Collect").stdout), harvest.log
    db = nightly.artifacts["sieve-feedback"] / "sieve-feedback.db"
    with sqlite3.connect(db) as con:
        assert con.execute("select count(*) from votes").fetchone()[0] == 1


def test_fork_pair_hands_over_the_findings_and_the_post_applies_fail_on(installed_runner, tmp_path: Path) -> None:
    """From a fork: the read-only dry run meets fail_on (exit 1) yet passes and hands its findings over; the
    workflow_run job posts them, applies fail_on itself (failing status, failing job) and never runs fork code."""
    repo, base, head = project(tmp_path / "shop")
    with FakeGitHub("octo", "shop") as fake:
        fake.add_token(READ_TOKEN, "github-actions[bot]", readonly=True, actions=True)
        fake.add_token(TOKEN, "github-actions[bot]", actions=True)
        fake.add_pull(3, diff=repo.diff(base, head), head_sha=head, base_sha=base, head_repo="someone/shop",
                      files={"shop/run.py": repo.show(head, "shop/run.py")})
        first = GitHubRun(installed_runner, repo, head, values(fake.base_url, base, head, READ_TOKEN), fake.base_url,
                          "pull_request", pull_event(head, base, "someone/shop"))
        dry = run_github_job(first, _workflow(repo, "sieve-review.yml"), "fork", tmp_path / "fork")
        assert dry.ok, dry.log  # the workflow_run job runs only after a successful run
        assert not fake.writes() and READ_TOKEN not in dry.log
        handed = first.artifacts["sieve-review"]
        assert (handed / "exit-code").read_text().strip() == "1"  # fail_on met in the dry run
        assert (handed / "pr-number").read_text().strip() == "3" and (handed / "head-sha").read_text().strip() == head
        findings = json.loads((handed / "review.json").read_text())["findings"]
        assert any(f["severity"] == "critical" for f in findings), findings

        second = GitHubRun(installed_runner, repo, base, values(fake.base_url, base, head, TOKEN), fake.base_url,
                           "workflow_run", {"workflow_run": {"id": 4242, "head_sha": head, "event": "pull_request",
                                                             "conclusion": "success"}}, artifacts=first.artifacts)
        post = run_github_job(second, _workflow(repo, "sieve-fork-review.yml"), "post", tmp_path / "post")
        posting = post.step("Post the review")
        assert posting.returncode == 1, post.log  # fail_on applied by the posting job itself
        assert "fail-on" in posting.stderr and TOKEN not in post.log
        assert len(fake.reviews) == 1 and fake.review_comments and len(fake.issue_comments) == 1
        assert fake.statuses[head][-1]["state"] == "failure"
    workspace = tmp_path / "post" / "workspace"
    assert git(workspace, "rev-parse", "HEAD") == base  # the default branch, never the fork's head


def test_gitlab_review_then_harvest_as_copied(installed_runner, tmp_path: Path) -> None:
    """The GitLab template in a project that is not Sieve: the install line (Sieve's pinned git URL) and the
    review, with the project's .sieve.toml; then the scheduled harvest."""
    repo, base, head = project(tmp_path / "shop")
    with FakeGitLab() as fake:
        bot = fake.add_user("sieve-bot", GITLAB_TOKEN)
        dev = fake.add_user("dev", "dev-token")
        owner = fake.add_user("owner", "owner-token")
        gl_project = fake.add_project("team/shop", repo.root, {bot["id"]: 30, dev["id"]: 30, owner["id"]: 40})
        mr = fake.add_mr(gl_project, 3, base, head, dev)
        work = tmp_path / "checkout"
        git(tmp_path, "clone", "-q", str(repo.root), str(work))
        git(work, "checkout", "-q", head)
        ci = {"CI": "true", "GITLAB_CI": "true", "CI_PROJECT_DIR": str(work), "CI_PROJECT_ID": str(gl_project["id"]),
              "CI_PROJECT_PATH": "team/shop", "CI_SERVER_URL": fake.url, "CI_API_V4_URL": fake.url + "/api/v4",
              "CI_MERGE_REQUEST_IID": "3", "CI_PIPELINE_SOURCE": "merge_request_event",
              "SIEVE_GITLAB_TOKEN": GITLAB_TOKEN}
        review = run_gitlab_job(installed_runner, work / ".gitlab-ci.yml", "sieve-review", work, ci)
        log = review.stdout[-3000:] + review.stderr[-3000:]
        assert review.returncode == 1, log  # fail_on = "critical" met: the job fails
        assert GITLAB_TOKEN not in review.stdout + review.stderr
        (installed,) = installed_runner.venv.glob("lib/python*/site-packages/sieve_review-*.dist-info/direct_url.json")
        origin = json.loads(installed.read_text())  # the job's install line ran: Sieve came from the git URL
        assert origin["vcs_info"]["commit_id"] == installed_runner.commit, origin
        threads = [d for d in mr.discussions if not d["individual_note"]]
        assert threads and fake.statuses and fake.statuses[-1]["status"] == "failed"
        fake.award(threads[0]["notes"][0], owner, "thumbsup")

        nightly = {**ci, "CI_PIPELINE_SOURCE": "schedule", "SIEVE_TASK": "feedback"}
        nightly.pop("CI_MERGE_REQUEST_IID")
        harvest = run_gitlab_job(installed_runner, work / ".gitlab-ci.yml", "sieve-feedback", work, nightly)
    assert harvest.returncode == 0, harvest.stdout[-3000:] + harvest.stderr[-3000:]
    assert re.search(r"posted=\d+ .*up=1", harvest.stdout), harvest.stdout
    assert (work / "sieve-feedback.db").is_file() and (work / "curriculum.jsonl").is_file()


def test_the_harvested_store_reaches_the_next_review_as_copied(installed_runner, tmp_path: Path) -> None:
    """Team memory as shipped: two maintainers 👎 the undefined-name comment on one pull request, the nightly harvest
    keeps the store in the Actions cache, and the next pull request's review restores it: the same rule is no
    longer posted, and the JSON says memory moved it."""
    repo, base, head = project(tmp_path / "shop")
    repo.git("checkout", "-q", "-b", "cart", base)
    repo.write("shop/cart.py", "def cart(items):\n    return sum(items) + handling_fee\n")
    head2 = repo.commit("a cart total")
    repo.git("checkout", "-q", "main")
    caches: dict[str, Path] = {}
    with FakeGitHub("octo", "shop") as fake:
        fake.add_token(TOKEN, "github-actions[bot]", actions=True)
        fake.set_permission("maint", "write")
        fake.add_pull(3, diff=repo.diff(base, head), head_sha=head, base_sha=base, head_repo="octo/shop",
                      files={"shop/run.py": repo.show(head, "shop/run.py")})
        fake.add_pull(4, diff=repo.diff(base, head2), head_sha=head2, base_sha=base, head_repo="octo/shop",
                      files={"shop/cart.py": repo.show(head2, "shop/cart.py")})
        run = GitHubRun(installed_runner, repo, head, values(fake.base_url, base, head, TOKEN), fake.base_url,
                        "pull_request", pull_event(head, base, "octo/shop"), caches=caches)
        first = run_github_job(run, _workflow(repo, "sieve-review.yml"), "review", tmp_path / "review")
        assert first.step("Team memory (the feedback store the nightly harvest keeps; docs/memory.md)").returncode == 0
        turned_down = [cid for cid, c in fake.review_comments.items()
                       if (markers.decode(c["body"]) or None) and markers.decode(c["body"]).rule_id == "F821"]
        assert turned_down, first.log  # posted at threshold major before anyone reacted
        for maintainer in ("octo", "maint"):
            fake.react("pulls", turned_down[0], maintainer, "-1")

        nightly = GitHubRun(installed_runner, repo, base, values(fake.base_url, base, head, TOKEN), fake.base_url,
                            "schedule", {"schedule": "17 3 * * *"}, caches=caches)
        harvest = run_github_job(nightly, _workflow(repo, "sieve-feedback.yml"), "collect", tmp_path / "feedback")
        assert harvest.ok and caches, harvest.log

        second_values = {**values(fake.base_url, base, head2, TOKEN), "github.event.pull_request.number": "4"}
        event = {**pull_event(head2, base, "octo/shop"), "number": 4}
        event["pull_request"]["number"] = 4
        later = GitHubRun(installed_runner, repo, head2, second_values, fake.base_url, "pull_request", event,
                          caches=caches)
        second = run_github_job(later, _workflow(repo, "sieve-review.yml"), "review", tmp_path / "review-4")
    saved = json.loads((tmp_path / "review-4" / "runner-temp" / "sieve-review.json").read_text())
    (finding,) = [f for f in saved["findings"] if f["rule_id"] == "F821"]
    assert finding["memory"] and not finding["posted"], (finding, second.log)
    assert finding["severity"] in ("minor", "trivial")
