"""The GitLab merge-request job end to end: `sieve review` with no arguments inside a (simulated) MR pipeline,
the real python-gitlab client against the fake GitLab, ruff findings rated by the packaged student."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot import markers
from tests.fake_gitlab import FakeGitLab
from tests.gitrepo import GitRepo

TOKEN = "glpat-ciTOKEN0123456789abcdef"

BASE = "import subprocess\n\n\ndef run(cmd):\n    return subprocess.run(cmd)\n"
HEAD = ("import subprocess\n\n\ndef run(cmd):\n    return subprocess.run(cmd, shell=True)\n\n\n"
        "def parse(text):\n    try:\n        return eval(text)\n    except:\n        return None\n")


def run_job(fake: FakeGitLab, project_id: int, tmp: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "SIEVE_", "CI_"))}
    env.update({"CI": "true", "GITLAB_CI": "true", "CI_MERGE_REQUEST_IID": "3", "CI_PROJECT_ID": str(project_id),
                "CI_API_V4_URL": fake.url + "/api/v4", "SIEVE_GITLAB_TOKEN": TOKEN})
    exe = Path(sys.executable).with_name("sieve")
    return subprocess.run([str(exe), "review", "--model", "smollm2", "--no-explain", "--threshold", "trivial",
                           "--fail-on", "critical"], cwd=tmp, env=env, capture_output=True, timeout=300)


@pytest.fixture()
def world(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.write("tool/run.py", BASE)
    base = repo.commit("base")
    repo.write("tool/run.py", HEAD)
    head = repo.commit("head")
    with FakeGitLab() as fake:
        bot = fake.add_user("sieve-bot", TOKEN)
        dev = fake.add_user("dev", "dev-token")
        project = fake.add_project("team/tool", repo.root, {bot["id"]: 30, dev["id"]: 40})
        mr = fake.add_mr(project, 3, base, head, dev)
        yield fake, project, mr, tmp_path


def test_merge_request_job_posts_once_and_is_idempotent(world):
    fake, project, mr, tmp = world
    first = run_job(fake, project["id"], tmp)
    out = first.stdout.decode() + first.stderr.decode()
    assert first.returncode in (0, 1), out
    assert TOKEN not in out
    threads = [d for d in mr.discussions if not d["individual_note"]]
    rules = {markers.decode(d["notes"][0]["body"]).rule_id for d in threads}
    assert {"S602", "S307", "E722"} <= rules
    for d in threads:
        position = d["notes"][0]["position"]
        assert position["new_path"] == "tool/run.py" and position["head_sha"] == mr.head
    summaries = [d for d in mr.discussions if d["individual_note"]]
    assert len(summaries) == 1 and "Sieve review" in summaries[0]["notes"][0]["body"]
    assert fake.statuses and fake.statuses[-1]["name"] == "sieve"
    writes_before = len(fake.writes())
    second = run_job(fake, project["id"], tmp)
    assert second.returncode == first.returncode
    assert len([d for d in mr.discussions if not d["individual_note"]]) == len(threads)
    new_writes = fake.writes()[writes_before:]
    assert all("discussions" not in path or method != "POST" for method, path, _ in new_writes)


def test_missing_token_is_one_clear_line(world):
    fake, project, _, tmp = world
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "SIEVE_", "CI_", "GITLAB_"))}
    env.update({"CI_MERGE_REQUEST_IID": "3", "CI_PROJECT_ID": str(project["id"]), "CI_API_V4_URL": fake.url + "/api/v4"})
    exe = Path(sys.executable).with_name("sieve")
    done = subprocess.run([str(exe), "review", "--model", "smollm2"], cwd=tmp, env=env, capture_output=True, timeout=120)
    assert done.returncode == 64  # a setting is missing: usage or configuration
    assert "SIEVE_GITLAB_TOKEN" in done.stderr.decode() and "Traceback" not in done.stderr.decode()
