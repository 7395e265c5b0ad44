"""The composite action and the workflows: schema validation, and the Action's review step run for real.

The review step of action.yml is taken from the file itself and run with bash — the same command the Action
runs — against the validating fake GitHub, with a synthetic GITHUB_EVENT_PATH, the real ``sieve`` CLI, the
ruff reviewer and the packaged base model as the rater.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fake_github import SPEC_PATH, FakeGitHub
from tests.gitrepo import make_repo

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
LEVELS = ("critical", "major", "minor", "trivial")


def _check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess:
    exe = BIN / "check-jsonschema"
    if not exe.exists():
        pytest.skip("check-jsonschema is not installed (pip install 'sieve-review[dev]')")
    return subprocess.run([str(exe), "--builtin-schema", schema, str(path)], check=False, capture_output=True, text=True,
                          timeout=120)


def test_action_validates_against_the_actions_schema():
    done = _check_jsonschema("vendor.github-actions", ROOT / "action.yml")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_validate_against_the_workflow_schema(workflow):
    done = _check_jsonschema("vendor.github-workflows", workflow)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_can_fail(tmp_path):
    broken = tmp_path / "action.yml"
    broken.write_text("name: x\nruns:\n  using: composite\n  steps: [{run: echo}]\n")  # no shell, no description
    assert _check_jsonschema("vendor.github-actions", broken).returncode != 0


def test_action_interface_and_least_permissions():
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert {"github-token", "threshold", "fail-on", "reviewers", "llm-base-url", "llm-model", "model",
            "max-comments"} <= set(action["inputs"])
    assert set(LEVELS) <= set(action["outputs"])
    uses = [s.get("uses", "") for s in action["runs"]["steps"]]
    assert any(u.startswith("actions/cache@") for u in uses)
    review = yaml.safe_load((ROOT / ".github/workflows/sieve-review.yml").read_text())
    assert review["permissions"] == {"contents": "read"}
    assert review["jobs"]["review"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert review["jobs"]["fork"]["permissions"]["pull-requests"] == "read"
    fork = yaml.safe_load((ROOT / ".github/workflows/sieve-fork-review.yml").read_text())
    trigger = fork[True] if True in fork else fork["on"]  # YAML 1.1 reads the key `on` as True
    assert "workflow_run" in trigger
    for step in fork["jobs"]["post"]["steps"]:  # the write job never checks out the pull request's code
        assert "head" not in str(step.get("with", {}).get("ref", ""))


def _review_step() -> dict:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    return next(s for s in action["runs"]["steps"] if s.get("id") == "review")


def _change(tmp_path: Path):
    repo = make_repo(tmp_path / "repo")
    repo.write("shop.py", "def total(items):\n    return sum(items)\n")
    base = repo.commit("base")
    repo.write("shop.py", "def total(items):\n    return sum(items) + shipping_fee\n")
    return repo, base, repo.commit("use an undefined name")


@pytest.mark.slow
@pytest.mark.skipif(not SPEC_PATH.exists(), reason=f"shared API description missing: {SPEC_PATH}")
@pytest.mark.skipif(not (BIN / "sieve").exists(), reason="the sieve CLI is not installed in this environment")
def test_the_actions_review_step_posts_to_github(tmp_path):
    step = _review_step()
    repo, base, head = _change(tmp_path)
    token = "ghs_" + "Q7" * 18
    event = tmp_path / "event.json"
    event.write_text('{"action": "synchronize", "pull_request": {"number": 3}}')
    output = tmp_path / "github_output"
    output.write_text("")
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    with FakeGitHub("octo", "shop") as fake:
        fake.add_token(token, "github-actions[bot]", actions=True)
        fake.add_pull(3, diff=repo.diff(base, head), head_sha=head, base_sha=base,
                      files={"shop.py": repo.show(head, "shop.py")})
        inputs = {"SIEVE_ACTION_BIN": str(BIN), "SIEVE_ACTION_THRESHOLD": "trivial", "SIEVE_ACTION_FAIL_ON": "",
                  "SIEVE_ACTION_REVIEWERS": "ruff", "SIEVE_ACTION_LLM_BASE_URL": "", "SIEVE_ACTION_LLM_MODEL": "",
                  "SIEVE_ACTION_MODEL": "base", "SIEVE_ACTION_MAX_COMMENTS": "25"}
        assert set(inputs) | {"GITHUB_TOKEN"} == set(step["env"])  # every variable the step reads is set here
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "GITHUB_ACTIONS": "true",
               "GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event), "GITHUB_REPOSITORY": "octo/shop",
               "GITHUB_API_URL": fake.base_url, "GITHUB_OUTPUT": str(output), "RUNNER_TEMP": str(tmp_path),
               "GITHUB_TOKEN": token, "SIEVE_EXPLAIN": "false", **inputs}
        done = subprocess.run(["bash", "-c", step["run"]], check=False, cwd=workspace, env=env, capture_output=True, text=True,
                              timeout=540)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert token not in done.stdout + done.stderr
        counts = dict(line.split("=", 1) for line in output.read_text().split())
        assert set(counts) == set(LEVELS) and sum(int(v) for v in counts.values()) >= 1
        comments = list(fake.review_comments.values())
        assert len(fake.reviews) == 1 and comments and all(c["path"] == "shop.py" for c in comments)
        assert any("shipping_fee" in c["body"] for c in comments)
        assert len(fake.issue_comments) == 1
