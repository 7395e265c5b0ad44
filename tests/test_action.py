"""The composite action and the workflows: schema validation, the wheel's contents, and the Action run as shipped.

The Action's install and review steps are taken from action.yml itself and run with bash, as the runner runs
them: a fresh virtual environment in ``~/.sieve-venv`` (HOME is a temporary folder) and a plain, non-editable
``pip install`` of the action's path (a copy of this checkout's committed files; once per session, see
tests/conftest.py), then the review step with the inputs' defaults — the default student included — against the
validating fake GitHub. pip's cache (the real one) keeps the compiled llama-cpp-python wheel, so the install costs a
minute, not a compile. The inputs default to empty, so a project's .sieve.toml decides (tested here on the step
itself, with this checkout's Sieve).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from bot import markers
from tests.fake_github import SPEC_PATH, FakeGitHub
from tests.gitrepo import make_repo
from tests.runner import GITHUB_SNIPPETS, ROOT, action_step, runner_env, source_copy

BIN = Path(sys.executable).parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml")) + GITHUB_SNIPPETS
LEVELS = ("critical", "major", "minor", "trivial")


def _check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess:
    exe = BIN / "check-jsonschema"
    if not exe.exists():
        pytest.skip("check-jsonschema is not installed (the dev extra: pip install -e '.[dev]')")
    return subprocess.run([str(exe), "--builtin-schema", schema, str(path)], check=False, capture_output=True, text=True,
                          timeout=120)


def test_action_validates_against_the_actions_schema():
    done = _check_jsonschema("vendor.github-actions", ROOT / "action.yml")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: str(p.relative_to(ROOT)))
def test_workflows_validate_against_the_workflow_schema(workflow):
    done = _check_jsonschema("vendor.github-workflows", workflow)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_can_fail(tmp_path):
    broken = tmp_path / "action.yml"
    broken.write_text("name: x\nruns:\n  using: composite\n  steps: [{run: echo}]\n")  # no shell, no description
    assert _check_jsonschema("vendor.github-actions", broken).returncode != 0


def test_action_interface_and_least_permissions():
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert {"github-token", "threshold", "fail-on", "reviewers", "llm-base-url", "llm-model", "model", "models-dir",
            "max-comments", "install-only"} <= set(action["inputs"])
    settings = set(action["inputs"]) - {"github-token", "python-version", "install-only"}
    assert all(action["inputs"][name]["default"] == "" for name in settings)  # empty: .sieve.toml decides
    assert set(LEVELS) <= set(action["outputs"])
    uses = [s.get("uses", "") for s in action["runs"]["steps"]]
    assert any(u.startswith("actions/cache@") for u in uses)
    caches = [s for s in action["runs"]["steps"] if str(s.get("uses", "")).startswith("actions/cache@")]
    assert all("hashFiles" not in s["with"]["key"] for s in caches)  # hashFiles cannot see the action's own files
    review = yaml.safe_load((ROOT / "examples/github/sieve-review.yml").read_text())
    assert review["permissions"] == {"contents": "read"}  # each job's own grant: tests/test_permissions.py
    fork = yaml.safe_load((ROOT / "examples/github/sieve-fork-review.yml").read_text())
    trigger = fork[True] if True in fork else fork["on"]  # YAML 1.1 reads the key `on` as True
    assert "workflow_run" in trigger
    for step in fork["jobs"]["post"]["steps"]:  # the write job never checks out the pull request's code
        assert "head" not in str(step.get("with", {}).get("ref", ""))


def _step(key: str) -> dict:
    return action_step(key)


def _inputs() -> dict[str, str]:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    return {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()}


def test_the_wheel_carries_the_shipped_students(tmp_path):
    """`pip install .` and `pip install dist/*.whl` get models/ as the `sieve_models` folder, byte for byte."""
    source = source_copy(tmp_path / "src")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                           "--wheel-dir", str(tmp_path / "dist"), str(source)], capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("sieve_review-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for folder in ("default", "smollm2-student"):
            manifest = json.loads(archive.read(f"sieve_models/{folder}/manifest.json"))
            shipped = {p.name for p in (ROOT / "models" / folder).iterdir() if p.is_file()}
            assert {f"sieve_models/{folder}/{name}" for name in shipped} <= names
            adapter = archive.read(f"sieve_models/{folder}/{manifest['adapter']['file']}")
            assert adapter == (ROOT / "models" / folder / manifest["adapter"]["file"]).read_bytes()
        assert "sieve_models/default/lexical.json" in names
        # the default student's explainer travels with it (models/default/explain/)
        for name in ("manifest.json", "adapter.gguf"):
            assert archive.read(f"sieve_models/default/explain/{name}") == \
                (ROOT / "models" / "default" / "explain" / name).read_bytes()
        packages = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    on_disk = {str(p.parent.relative_to(ROOT)) for top in ("bot", "training") for p in (ROOT / top).rglob("__init__.py")}
    assert on_disk <= packages, f"packages missing from pyproject's [tool.setuptools] packages: {on_disk - packages}"


@pytest.fixture(scope="module")
def runner_home(installed_runner) -> Path:
    """HOME of a runner after the Action's install step ran, as written, on the action's path."""
    return installed_runner.home


def _change(tmp_path: Path):
    repo = make_repo(tmp_path / "repo")
    repo.write("shop.py", "import subprocess\n\n\ndef total(items):\n    return sum(items)\n")
    base = repo.commit("base")
    repo.write("shop.py", "import subprocess\n\n\ndef total(items):\n    return sum(items) + shipping_fee\n\n\n"
                          "def run(cmd):\n    return subprocess.run(cmd, shell=True)\n")
    return repo, base, repo.commit("an undefined name and a shell")


@pytest.mark.slow
def test_the_installed_copy_ships_its_students_and_keeps_training_out(runner_home, tmp_path):
    venv = runner_home / ".sieve-venv"
    env = runner_env(runner_home)
    mine = tmp_path / "my-models"
    shutil.copytree(ROOT / "models" / "smollm2-student", mine / "mine")
    listed = subprocess.run([str(venv / "bin" / "sieve"), "models", "list", "--format", "json"], capture_output=True,
                            text=True, check=False, timeout=120, env={**env, "SIEVE_MODELS_DIR": str(mine)}, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    found = {(e["name"], e["source"]): e["folder"] for e in json.loads(listed.stdout)}
    assert ("mine", "yours") in found
    for name in ("default", "smollm2-student"):
        assert "site-packages" in found[(name, "packaged")] and found[(name, "packaged")].endswith(f"sieve_models/{name}")
    probe = ("from bot.errors import SieveError\nfrom training.registry import models_root\n"
             "try:\n    models_root()\nexcept SieveError as exc:\n    print(exc)\nelse:\n    print('accepted')\n"
             "print(models_root(r'" + str(mine) + "'))\n")
    done = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=False,
                          timeout=120, env=env, cwd=tmp_path)  # not this checkout: `-c` puts the cwd on sys.path
    assert done.returncode == 0, done.stderr
    refused, accepted = done.stdout.splitlines()
    assert "will not write into the installed package" in refused and accepted == str(mine)


@pytest.mark.slow
@pytest.mark.skipif(not SPEC_PATH.exists(), reason=f"API description missing: {SPEC_PATH}")
def test_the_action_installs_and_reviews_with_the_default_student(runner_home, tmp_path):
    step = _step("review")
    repo, base, head = _change(tmp_path)
    token = "ghs_" + "Q7" * 18
    event = tmp_path / "event.json"
    event.write_text('{"action": "synchronize", "pull_request": {"number": 3}}')
    output = tmp_path / "github_output"
    output.write_text("")
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    inputs = {**_inputs(), "github-token": token, "threshold": "trivial"}  # every other input at its default
    env = {}
    for key, value in step["env"].items():  # `${{ inputs.x }}` as the runner fills it; other values verbatim
        match = re.fullmatch(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", str(value))
        env[key] = inputs[match.group(1)] if match else str(value)
    assert env["SIEVE_ACTION_MODEL"] == "" and env["SIEVE_ACTION_BIN"] == "~/.sieve-venv/bin"
    with FakeGitHub("octo", "shop") as fake:
        fake.add_token(token, "github-actions[bot]", actions=True)
        fake.add_pull(3, diff=repo.diff(base, head), head_sha=head, base_sha=base,
                      files={"shop.py": repo.show(head, "shop.py")})
        runner = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event),
                  "GITHUB_REPOSITORY": "octo/shop", "GITHUB_API_URL": fake.base_url, "GITHUB_OUTPUT": str(output),
                  "RUNNER_TEMP": str(tmp_path)}
        done = subprocess.run(["bash", "-c", step["run"]], check=False, cwd=workspace, capture_output=True, text=True,
                              env=runner_env(runner_home, **runner, **env), timeout=540)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert token not in done.stdout + done.stderr
        counts = dict(line.split("=", 1) for line in output.read_text().split())
        assert set(counts) == set(LEVELS) and sum(int(v) for v in counts.values()) >= 2
        comments = list(fake.review_comments.values())
        assert len(fake.reviews) == 1 and comments and all(c["path"] == "shop.py" for c in comments)
        assert any("shipping_fee" in c["body"].replace("\\_", "_") for c in comments)  # prose escapes `_`
        assert all(markers.decode(c["body"]).model.startswith("default@") for c in comments)
        assert len(fake.issue_comments) == 1


# ---------------------------------------------------------------- settings precedence on the Action path
def _review_step_with(tmp_path: Path, given: dict[str, str], toml: str, env: dict[str, str]) -> dict:
    """The review step as written, with this checkout's Sieve (SIEVE_ACTION_BIN is the only env entry changed),
    inputs as the runner fills them from ``given`` over the defaults, in a workspace holding ``toml`` as
    .sieve.toml; returns the review's JSON. The change has no finding, so no model is loaded."""
    step = _step("review")
    repo = make_repo(tmp_path / "repo")
    repo.write("shop.py", "def total(items):\n    return sum(items)\n")
    base = repo.commit("base")
    repo.write("shop.py", "def total(items):\n    return sum(items) + 1\n")
    head = repo.commit("one more")
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / ".sieve.toml").write_text(toml)
    (tmp_path / "event.json").write_text('{"pull_request": {"number": 3}}')
    (tmp_path / "out").write_text("")
    inputs = {**_inputs(), "github-token": "ghs_" + "E5" * 18, **given}
    filled = {}
    for key, value in step["env"].items():
        match = re.fullmatch(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", str(value))
        filled[key] = inputs[match.group(1)] if match else str(value)
    filled["SIEVE_ACTION_BIN"] = str(BIN)
    with FakeGitHub("octo", "shop") as fake:
        fake.add_token(inputs["github-token"], "github-actions[bot]", actions=True)
        fake.add_pull(3, diff=repo.diff(base, head), head_sha=head, base_sha=base,
                      files={"shop.py": repo.show(head, "shop.py")})
        runner = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request",
                  "GITHUB_EVENT_PATH": str(tmp_path / "event.json"), "GITHUB_REPOSITORY": "octo/shop",
                  "GITHUB_API_URL": fake.base_url, "GITHUB_OUTPUT": str(tmp_path / "out"),
                  "RUNNER_TEMP": str(tmp_path), "PYTHONPATH": str(ROOT)}
        done = subprocess.run(["bash", "-c", step["run"]], check=False, cwd=workspace, capture_output=True,
                              text=True, env={**runner_env(tmp_path), **runner, **filled, **env}, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads((tmp_path / "sieve-review.json").read_text())


@pytest.mark.skipif(not SPEC_PATH.exists(), reason=f"API description missing: {SPEC_PATH}")
def test_empty_inputs_leave_the_settings_to_sieve_toml(tmp_path):
    """With the inputs at their defaults, the project's .sieve.toml decides (before, the input `threshold: minor`
    silently beat the file)."""
    summary = _review_step_with(tmp_path, {}, 'threshold = "major"\nmodel = "smollm2"\n', {})["summary"]
    assert summary["threshold"] == "major"


@pytest.mark.skipif(not SPEC_PATH.exists(), reason=f"API description missing: {SPEC_PATH}")
@pytest.mark.parametrize("given, env, expected", [
    ({}, {"SIEVE_THRESHOLD": "critical"}, "critical"),  # SIEVE_* beats the file
    ({"threshold": "trivial"}, {"SIEVE_THRESHOLD": "critical"}, "trivial"),  # an input (a flag) beats both
], ids=["env over file", "input over env"])
def test_inputs_beat_the_environment_which_beats_the_file(tmp_path, given, env, expected):
    summary = _review_step_with(tmp_path, given, 'threshold = "major"\nmodel = "smollm2"\n', env)["summary"]
    assert summary["threshold"] == expected
