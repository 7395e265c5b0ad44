"""examples/github/sieve-retrain.yml copied unchanged into a team's repository that is not Sieve, and run as written.

The repository (a bare git repository, the remote the job clones and pushes to) holds the team's student in
sieve-models/team/ (a copy of the shipped smollm2 student); the Actions cache holds the feedback store the nightly
harvest keeps, written through Sieve's real store from shared review items with a maintainer's verdicts. The job
really installs the training libraries into the runner's Sieve, really trains (2 steps), exports a GGUF adapter,
rates both students through llama.cpp and really pushes with git. Opening the pull request is GitHub's own tool,
``gh``: here a recording stand-in (tests/gh_standin.py) that keeps the pull requests it opened and refuses a head
branch the remote lacks. Sieve comes from its pinned reference, resolved to a copy of this working tree.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.gitrepo import make_repo
from tests.runner import ROOT, GitHubRun, run_github_job, run_gitlab_job, runner_env
from tests.team_feedback import shared_items, write_store
from training.examples import severity_split

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not severity_split("train").is_file(), reason="shared severity data is absent")]

SNIPPET = ROOT / "examples" / "github" / "sieve-retrain.yml"
TOKEN = "ghs_" + "T5" * 18
BRANCH = "sieve/retrain-team"
TINY = "--max-steps 2 --grad-accum 1 --examples 8 --exam-size 4 --shipped-limit 6 --min-heldout 4"
STEP = "Train a candidate and examine it"


def team_repository(root: Path) -> tuple[Path, str]:
    """The team's repository as a bare remote: the workflow copied in, their student in sieve-models/team/."""
    work = make_repo(root / "work")
    work.write(".sieve.toml", 'models_dir = "sieve-models"\nmodel = "team"\n')
    work.write("shop/app.py", "def total(items):\n    return sum(items)\n")
    work.write(".github/workflows/sieve-retrain.yml", SNIPPET.read_bytes())
    shutil.copytree(ROOT / "models" / "smollm2-student", work.root / "sieve-models" / "team")
    sha = work.commit("the team's student and Sieve's retraining workflow, unchanged")
    assert not (work.root / "action.yml").exists()  # not Sieve
    bare = root / "shop.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work.root), str(bare)], check=True, timeout=120)
    return bare, sha


def store_cache(root: Path, items: int) -> dict[str, Path]:
    """The Actions cache after the nightly harvest: sieve-feedback.db under a `sieve-feedback-*` key."""
    folder = root / "cache-sieve-feedback-17"
    folder.mkdir(parents=True)
    write_store(folder / "sieve-feedback.db", shared_items(items) if items else [])
    return {"sieve-feedback-17": folder}


def gh_stand_in(root: Path) -> Path:
    folder = root / "gh-bin"
    folder.mkdir(parents=True)
    (folder / "gh").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "tests" / "gh_standin.py"}" "$@"\n')
    (folder / "gh").chmod(0o755)
    return folder


def retrain(runner, tmp_path: Path, name: str, caches: dict[str, Path], min_gain: str = "",
            options: str = TINY) -> tuple[object, dict, Path]:
    """One run of the workflow's job; returns (job result, the stand-in's state, the workspace)."""
    bare, sha = tmp_path / "shop.git", tmp_path / "sha"
    values = {"github.repository": "octo/shop", "github.token": TOKEN, "github.run_id": f"90{len(name)}",
              "github.ref_name": "main", "inputs.min-gain": min_gain, "inputs.train-options": options,
              "runner.os": "Linux", "runner.arch": "X64"}
    state = tmp_path / "gh-state.json"
    path = f"{gh_stand_in(tmp_path / ('gh-' + name))}:{runner_env(runner.home)['PATH']}"
    run = GitHubRun(runner, SimpleNamespace(root=bare), sha.read_text(), values, "http://127.0.0.1:9",
                    "schedule", {"schedule": "29 4 * * 1"}, caches=caches,
                    env={"PATH": path, "GH_STANDIN_STATE": str(state), "GH_STANDIN_REMOTE": str(bare)})
    job = run_github_job(run, tmp_path / "work" / ".github" / "workflows" / "sieve-retrain.yml", "retrain",
                         tmp_path / name)
    gh = json.loads(state.read_text()) if state.is_file() else {"pulls": [], "calls": []}
    return job, gh, tmp_path / name / "workspace"


@pytest.fixture
def team(tmp_path: Path) -> Path:
    _, sha = team_repository(tmp_path)
    (tmp_path / "sha").write_text(sha)
    return tmp_path


def git(bare: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(bare), *args], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def test_a_promoted_candidate_opens_exactly_one_pull_request_gh_recorded(installed_runner, team: Path) -> None:
    """The gate passes (any gain, any drop allowed): the branch carries sieve-models/team/ with the candidate, one
    pull request has the evaluation table as its body; a second run updates that branch and body, opens nothing."""
    caches = store_cache(team, 40)
    loose = TINY + " --tolerance 1"
    job, gh, workspace = retrain(installed_runner, team, "first", caches, "-1", loose)
    assert job.ok, job.log
    assert TOKEN not in job.log and "Traceback" not in job.log
    assert job.step(STEP).outputs["decision"] == "promote"
    table = (workspace / "sieve-retrain" / "table.md").read_text()
    assert table.startswith("## Sieve student `team`: candidate passes the promotion gate")
    assert "| team feedback (held out) |" in table and "| ruff rules (shipped, held out) |" in table
    creates = [c for c in gh["calls"] if c[:2] == ["pr", "create"]]
    assert len(creates) == 1 and len(gh["pulls"]) == 1, gh["calls"]
    (pull,) = gh["pulls"]
    assert pull["head"] == BRANCH and pull["base"] == "main" and pull["body"] == table
    bare = team / "shop.git"
    files = git(bare, "ls-tree", "-r", "--name-only", BRANCH, "sieve-models/team").splitlines()
    assert {"sieve-models/team/adapter.gguf", "sieve-models/team/manifest.json"} <= set(files)
    manifest = json.loads(git(bare, "show", f"{BRANCH}:sieve-models/team/manifest.json"))
    before = json.loads(git(bare, "show", "main:sieve-models/team/manifest.json"))
    assert manifest["name"] == "team" and manifest["adapter"]["sha256"] != before["adapter"]["sha256"]
    assert manifest["parent"].startswith("team@") and manifest["metrics"]["exam"]["n"] >= 4
    assert git(bare, "rev-list", "--count", f"main..{BRANCH}") == "1"
    first_head = git(bare, "rev-parse", BRANCH)

    again, gh, workspace = retrain(installed_runner, team, "second", caches, "-1", loose)
    assert again.ok, again.log
    assert len(gh["pulls"]) == 1 and len([c for c in gh["calls"] if c[:2] == ["pr", "create"]]) == 1, gh["calls"]
    assert [c for c in gh["calls"] if c[:2] == ["pr", "edit"]] == [["pr", "edit", "1", "--body-file",
                                                                    "sieve-retrain/table.md"]]
    assert "updated pull request #1" in again.step("Open or update the pull request").stdout
    assert gh["pulls"][0]["body"] == (workspace / "sieve-retrain" / "table.md").read_text()
    assert git(bare, "rev-list", "--count", f"main..{BRANCH}") == "1" and git(bare, "rev-parse", BRANCH) != first_head


def test_a_rejected_candidate_opens_nothing_and_pushes_nothing(installed_runner, team: Path) -> None:
    """A gain of more than 1 in macro-F1 cannot be met: the table says so, no branch is pushed, gh is never called."""
    job, gh, workspace = retrain(installed_runner, team, "rejected", store_cache(team, 40), "1")
    assert job.ok, job.log
    assert job.step(STEP).outputs["decision"] == "keep"
    assert "Open or update the pull request" not in [s.name for s in job.steps]
    table = (workspace / "sieve-retrain" / "table.md").read_text()
    assert "candidate fails the promotion gate" in table
    assert "FAILED: macro_f1 must gain more than +1.000" in table
    assert gh["calls"] == [] and git(team / "shop.git", "branch", "--list", BRANCH) == ""
    assert git(workspace, "status", "--porcelain", "sieve-models") == ""  # the team's student untouched


@pytest.mark.parametrize("items, options, says", [
    (None, TINY, "::error::no feedback store: the cache holds no sieve-feedback-* yet"),
    (0, TINY, "holds no feedback to train on"),
    (12, "--max-steps 2", "held-out team feedback item(s) with a label, fewer than --min-heldout 20"),
], ids=["no store in the cache", "empty feedback", "too few held-out items"])
def test_bad_inputs_end_with_one_line_and_no_pull_request(installed_runner, team: Path, items, options,
                                                          says: str) -> None:
    caches = {} if items is None else store_cache(team, items)
    job, gh, _ = retrain(installed_runner, team, "bad", caches, "", options)
    step = job.step(STEP)
    assert step.returncode != 0 and says in step.stdout + step.stderr, job.log
    errors = [line for line in (step.stdout + step.stderr).splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "Traceback" not in job.log, errors
    assert gh["calls"] == [] and git(team / "shop.git", "branch", "--list", BRANCH) == ""


def test_the_gitlab_job_opens_one_merge_request_and_a_rejected_rerun_changes_nothing(installed_runner,
                                                                                     team: Path) -> None:
    """examples/gitlab-ci.yml's sieve-retrain job as written, Sieve installed by its pinned git URL: a promoted
    candidate is pushed (real git, to the bare remote through git's own url.<base>.insteadOf) and one merge request
    is opened by python-gitlab on the fake GitLab with the table as its description; a run whose gain cannot be met
    pushes nothing and opens nothing."""
    from tests.fake_gitlab import FakeGitLab

    bare = team / "shop.git"
    token = "glpat-retrain0123456789ab"
    work = team / "checkout"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, timeout=120)
    (work / ".gitlab-ci.yml").write_bytes((ROOT / "examples" / "gitlab-ci.yml").read_bytes())
    shutil.copy2(store_cache(team, 40)["sieve-feedback-17"] / "sieve-feedback.db", work / "sieve-feedback.db")
    with FakeGitLab(lifetime=1500) as fake:
        bot = fake.add_user("sieve-bot", token)
        project = fake.add_project("team/shop", bare, {bot["id"]: 40})
        ci = {"CI": "true", "GITLAB_CI": "true", "CI_PROJECT_DIR": str(work), "CI_PROJECT_ID": str(project["id"]),
              "CI_PROJECT_PATH": "team/shop", "CI_SERVER_URL": fake.url, "CI_SERVER_HOST": "127.0.0.1",
              "CI_API_V4_URL": fake.url + "/api/v4", "CI_DEFAULT_BRANCH": "main", "CI_PIPELINE_SOURCE": "schedule",
              "SIEVE_TASK": "retrain", "SIEVE_GITLAB_TOKEN": token, "SIEVE_RETRAIN_MIN_GAIN": "-1",
              "SIEVE_RETRAIN_OPTIONS": TINY + " --tolerance 1", "GIT_CONFIG_COUNT": "1",
              "GIT_CONFIG_KEY_0": f"url.{bare}.insteadOf",
              "GIT_CONFIG_VALUE_0": f"https://oauth2:{token}@127.0.0.1/team/shop.git"}
        done = run_gitlab_job(installed_runner, work / ".gitlab-ci.yml", "sieve-retrain", work, ci)
        log = done.stdout[-4000:] + done.stderr[-4000:]
        assert done.returncode == 0, log
        assert token not in done.stdout + done.stderr and "opened merge request !1" in done.stdout, log
        (mr,) = fake.mrs.values()
        assert (mr.source_branch, mr.target_branch, mr.state) == (BRANCH, "main", "opened")
        assert mr.description == (work / "sieve-retrain" / "table.md").read_text()
        assert "candidate passes the promotion gate" in mr.description
        assert any(d["new_path"] == "sieve-models/team/adapter.gguf" for d in mr.diffs)
        pushed = git(bare, "rev-parse", BRANCH)

        subprocess.run(["git", "-C", str(work), "checkout", "-q", "--force", "main"], check=True, timeout=60)
        again = run_gitlab_job(installed_runner, work / ".gitlab-ci.yml", "sieve-retrain", work,
                               {**ci, "SIEVE_RETRAIN_MIN_GAIN": "1"})
        assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
        assert (work / "sieve-retrain" / "decision").read_text().strip() == "keep"
        assert len(fake.mrs) == 1 and git(bare, "rev-parse", BRANCH) == pushed
