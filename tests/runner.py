"""A CI runner for the copy-paste snippets: GitHub workflow jobs and GitLab CI jobs, run step by step as written.

What is real: every ``run:`` / ``script:`` text is taken from the file and run with bash the way the runner runs it
(``bash --noprofile --norc -eo pipefail``), with the step's ``env:``, ``$GITHUB_OUTPUT``, ``$GITHUB_PATH`` and the
runner's own variables; the Sieve Action's ``run:`` steps come from action.yml itself; GitHub's ``${{ … }}``
expressions are filled from the values a test gives (one without a value fails the test, so a new expression is
never skipped silently). What is stood in for: ``actions/checkout`` clones the project the test made;
``actions/setup-python`` is the Python running the tests, first on PATH as ``python``; ``actions/cache`` keeps
files by key from run to run (``GitHubRun.caches``; paths under ``~`` count as a warm runner's); artifacts are
folders handed from job to job. The one string resolved to
this working tree is Sieve's location: ``uses: sieve-review/sieve@<sha>`` runs action.yml with the action's path
set to a copy of this checkout, and ``git+https://github.com/sieve-review/sieve@<sha>`` becomes a ``git+file://``
URL of that copy, committed as a git repository of its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.gitrepo import GitRepo

ROOT = Path(__file__).resolve().parents[1]
#: Sieve's location as the snippets name it (a placeholder until Sieve has a published home: docs/github.md)
SIEVE_REPO = "sieve-review/sieve"
PINNED_USES = re.compile(r"^sieve-review/sieve@([0-9a-f]{40})$")
PINNED_URL = re.compile(r"git\+https://github\.com/sieve-review/sieve@([0-9a-f]{40})")
GITHUB_SNIPPETS = sorted((ROOT / "examples" / "github").glob("*.yml"))
GITLAB_SNIPPET = ROOT / "examples" / "gitlab-ci.yml"
EXPRESSION = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")
BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]


# ---------------------------------------------------------------- the working tree as the action's checkout
def source_copy(target: Path) -> Path:
    """The files a checkout of Sieve holds: the working tree's files that git tracks or would track (ignored build
    outputs and virtual environments left out), else, outside git, a filtered copy."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=False, timeout=120)
    if listed.returncode != 0:  # not a git checkout (an unpacked source archive)
        shutil.copytree(ROOT, target, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "runs", "*.egg-info", "__pycache__", ".pytest_cache", "*.db"))
        return target
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def runner_env(home: Path, **extra: str) -> dict[str, str]:
    """A runner's environment: HOME is ``home``; nothing of this development environment leaks in (no
    PYTHONPATH, no virtualenv, no SIEVE_/GITHUB_ variables, no other `sieve` on PATH); pip keeps its real cache
    and settings (a warm runner: the compiled llama-cpp-python wheel is there)."""
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTHON", "VIRTUAL_ENV", "SIEVE_", "GITHUB_", "CI_", "GITLAB_", "RUNNER_"))}
    python_dir = home / "python-bin"  # what actions/setup-python puts first on PATH: a plain `python`
    if not python_dir.exists():
        python_dir.mkdir(parents=True)
        (python_dir / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    system = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "sieve").exists()]
    return {**keep, "HOME": str(home), "PATH": os.pathsep.join([str(python_dir), *system]),
            "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip"),
            "XDG_CONFIG_HOME": os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config"),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def action_doc() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))


def action_step(key: str) -> dict[str, Any]:
    """The step of action.yml whose id or name is ``key``."""
    return next(s for s in action_doc()["runs"]["steps"] if key in (s.get("id"), s.get("name")))


@dataclass
class Runner:
    """A runner's HOME after the Action's install step ran once, as written (later jobs find it cached), and the
    copy of this checkout that the pinned Sieve reference resolves to."""

    home: Path
    action_path: Path
    commit: str  # the copy's own commit, for the git URL

    @property
    def venv(self) -> Path:
        return self.home / ".sieve-venv"

    @property
    def git_url(self) -> str:
        return f"git+file://{self.action_path}@{self.commit}"


def install_runner(home: Path) -> Runner:
    """Run the Action's install step on a fresh HOME: ``python -m venv`` and a plain ``pip install`` of the copy."""
    action_path = source_copy(home / "sieve")
    commit = GitRepo(action_path).commit("the pinned Sieve")
    step = action_step("Install Sieve from the action's own path")
    done = subprocess.run([*BASH, step["run"]], cwd=home, capture_output=True, text=True, check=False, timeout=1500,
                          env=runner_env(home, SIEVE_ACTION_PATH=str(action_path)))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return Runner(home, action_path, commit)


# ---------------------------------------------------------------- GitHub Actions
@dataclass
class StepResult:
    name: str
    returncode: int
    stdout: str = ""
    stderr: str = ""
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class JobResult:
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.returncode == 0 for s in self.steps)

    def step(self, name: str) -> StepResult:
        return next(s for s in self.steps if s.name == name)

    @property
    def log(self) -> str:
        return "\n".join(f"--- {s.name} (exit {s.returncode})\n{s.stdout[-3000:]}{s.stderr[-3000:]}" for s in self.steps)


@dataclass
class GitHubRun:
    """Everything a job of one workflow run sees: the project it checks out, the event, the API, the artifacts."""

    runner: Runner
    project: GitRepo
    checkout_sha: str  # what actions/checkout fetches without `ref:` (the event's commit)
    values: dict[str, str]  # expression → value, e.g. "github.event.pull_request.number": "3"
    api_url: str
    event_name: str
    event: dict[str, Any]
    artifacts: dict[str, Path] = field(default_factory=dict)
    caches: dict[str, Path] = field(default_factory=dict)  # the Actions cache: key → saved files (run to run)
    env: dict[str, str] = field(default_factory=dict)  # added to the runner's environment (a test's SIEVE_* …)
    only_sieve: bool = False  # run only the `run:` steps that call sieve (the others are recorded as skipped)


class GitHubJob:
    """One job of a workflow, run as the runner runs it, in a fresh workspace under ``work``."""

    def __init__(self, run: GitHubRun, workflow: Path, job: str, work: Path) -> None:
        self.run, self.where = run, f"{workflow.name} › {job}"
        self.job = yaml.safe_load(workflow.read_text(encoding="utf-8"))["jobs"][job]
        self.workspace, self.temp = work / "workspace", work / "runner-temp"
        self.workspace.mkdir(parents=True)
        self.temp.mkdir()
        self.outputs: dict[str, dict[str, str]] = {}  # step id → outputs
        self.path_file = self.temp / "github_path"
        self.path_file.write_text("")
        self.result = JobResult()

    def go(self) -> JobResult:
        event_path = self.temp / "event.json"
        event_path.write_text(json.dumps(self.run.event))
        self.base = runner_env(self.run.runner.home, GITHUB_ACTIONS="true", GITHUB_EVENT_NAME=self.run.event_name,
                               GITHUB_EVENT_PATH=str(event_path), GITHUB_REPOSITORY=self.run.values["github.repository"],
                               GITHUB_API_URL=self.run.api_url, GITHUB_WORKSPACE=str(self.workspace),
                               GITHUB_PATH=str(self.path_file), RUNNER_TEMP=str(self.temp), **self.run.env)
        for index, step in enumerate(self.job["steps"]):
            name = step.get("name") or step.get("uses") or f"step {index}"
            if not self.condition(step.get("if"), {}):
                continue
            result = self.one_step(step, name)
            self.result.steps.append(result)
            if step.get("id"):
                self.outputs[step["id"]] = result.outputs
        return self.result

    # -------------------------------------------------------- expressions and conditions
    def value(self, expression: str, inputs: dict[str, str]) -> str:
        steps = re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expression)
        if steps:
            return self.outputs.get(steps.group(1), {}).get(steps.group(2), "")
        if expression.startswith("inputs.") and inputs:
            return inputs.get(expression[len("inputs."):], "")
        if expression == "github.action_path":
            return str(self.run.runner.action_path)
        if expression not in self.run.values:
            pytest.fail(f"{self.where}: no test value for the expression ${{{{ {expression} }}}}; add one to the test")
        return self.run.values[expression]

    def fill(self, text: str, inputs: dict[str, str]) -> str:
        return EXPRESSION.sub(lambda m: self.value(m.group(1), inputs), str(text))

    def condition(self, text: Any, inputs: dict[str, str], failed: bool | None = None) -> bool:
        """The few `if:` forms the shipped files use; any other fails the test (teach it here first)."""
        failed = (not self.result.ok) if failed is None else failed
        expression = EXPRESSION.sub(lambda m: m.group(1), str(text or "success()")).strip()
        if expression in ("!cancelled()", "always()"):
            return True
        if expression in ("success()", "failure()"):
            return failed == (expression == "failure()")
        compare = re.fullmatch(r"([\w.-]+)\s*(==|!=)\s*'([^']*)'", expression)
        if compare is None:
            pytest.fail(f"{self.where}: the runner stand-in cannot evaluate `if: {text}`")
        equal = self.value(compare.group(1), inputs) == compare.group(3)
        return not failed and equal == (compare.group(2) == "==")

    # -------------------------------------------------------- steps
    def one_step(self, step: dict[str, Any], name: str) -> StepResult:
        uses = str(step.get("uses", ""))
        if "run" in step and self.run.only_sieve and not calls_sieve(step["run"]):
            return StepResult(name, 0, stdout="(not run: it does not call sieve)")
        if "run" in step:
            return self.script(name, step["run"], step.get("env") or {}, {})
        if PINNED_USES.match(uses) or uses == "./":
            return self.sieve_action(name, {k: self.fill(v, {}) for k, v in (step.get("with") or {}).items()})
        return self.stand_in(name, uses.split("@")[0], {k: self.fill(v, {}) for k, v in (step.get("with") or {}).items()})

    def script(self, name: str, text: str, env: dict[str, Any], inputs: dict[str, str],
               extra: dict[str, str] | None = None) -> StepResult:
        output = self.temp / f"output-{len(self.result.steps)}-{abs(hash(name))}"
        output.write_text("")
        prepended = [line for line in reversed(self.path_file.read_text().splitlines()) if line]
        step_env = {**self.base, **(extra or {}), **{k: self.fill(v, inputs) for k, v in env.items()},
                    "GITHUB_OUTPUT": str(output), "PATH": os.pathsep.join([*prepended, self.base["PATH"]])}
        done = subprocess.run([*BASH, self.fill(text, inputs)], cwd=self.workspace, env=step_env, capture_output=True,
                              text=True, check=False, timeout=900)
        outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
        return StepResult(name, done.returncode, done.stdout, done.stderr, outputs)

    def sieve_action(self, name: str, given: dict[str, str]) -> StepResult:
        """The composite action: its `run:` steps as written, its `uses:` steps stood in for; outputs mapped."""
        doc = action_doc()
        unknown = set(given) - set(doc["inputs"])
        assert not unknown, f"{self.where}: the Action has no input(s) {sorted(unknown)}"
        inputs = {k: self.fill(spec.get("default", ""), {}) for k, spec in doc["inputs"].items()} | given
        inner: dict[str, dict[str, str]] = {}
        saved, self.outputs = self.outputs, inner  # `steps.` inside the action means the action's own steps
        failed, log = False, []
        try:
            for step in doc["runs"]["steps"]:
                if not self.condition(step.get("if"), inputs, failed):
                    continue
                if "run" in step:
                    result = self.script(step.get("name", "?"), step["run"], step.get("env") or {}, inputs,
                                         {"GITHUB_ACTION_PATH": str(self.run.runner.action_path)})
                else:
                    with_ = {k: self.fill(v, inputs) for k, v in (step.get("with") or {}).items()}
                    result = self.stand_in(step.get("name", "?"), str(step["uses"]).split("@")[0], with_)
                log.append(result)
                failed = failed or result.returncode != 0
                if step.get("id"):
                    inner[step["id"]] = result.outputs
            outputs = {k: self.fill(spec["value"], inputs) for k, spec in doc.get("outputs", {}).items()}
        finally:
            self.outputs = saved
        last = next((r for r in reversed(log) if r.returncode != 0), log[-1])
        return StepResult(name, last.returncode, "".join(r.stdout for r in log), "".join(r.stderr for r in log),
                          outputs)

    def stand_in(self, name: str, action: str, with_: dict[str, str]) -> StepResult:
        home = self.run.runner.home
        if action == "actions/checkout":
            ref = with_.get("ref") or self.run.checkout_sha
            subprocess.run(["git", "clone", "-q", str(self.run.project.root), str(self.workspace)], check=True,
                           capture_output=True, timeout=120)
            subprocess.run(["git", "-C", str(self.workspace), "checkout", "-q", ref], check=True, capture_output=True,
                           timeout=60)
            return StepResult(name, 0)
        if action == "actions/setup-python":
            return StepResult(name, 0)
        if action in ("actions/cache", "actions/cache/restore", "actions/cache/save"):
            return self.cache(name, action, with_)
        if action == "actions/upload-artifact":
            source = self.workspace / with_["path"]
            if not source.exists():
                return StepResult(name, 1, stderr=f"no files at {with_['path']}")
            target = self.run.artifacts[with_["name"]] = self.temp / "artifacts" / with_["name"]
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                target.mkdir(parents=True)
                shutil.copy2(source, target)
            return StepResult(name, 0)
        if action == "actions/download-artifact":
            if with_["name"] not in self.run.artifacts:
                return StepResult(name, 1, stderr=f"no artifact {with_['name']}")
            shutil.copytree(self.run.artifacts[with_["name"]], self.workspace / with_.get("path", "."), dirs_exist_ok=True)
            return StepResult(name, 0)
        pytest.fail(f"{self.where}: the runner stand-in does not know the action {action}; add it to tests/runner.py")


    def cache(self, name: str, action: str, with_: dict[str, str]) -> StepResult:
        """The Actions cache across runs: ``save`` keeps copies of the paths under the key in ``run.caches`` (tests
        hand that dict from run to run); ``restore`` takes the exact key, else the newest key starting with one of
        the ``restore-keys``. Paths under ``~`` stay as they are (a warm runner: hit when already there)."""
        paths = [p.strip() for p in with_["path"].splitlines() if p.strip()]
        if all(p.startswith("~") for p in paths):
            hit = all(Path(p.replace("~", str(self.run.runner.home), 1)).exists() for p in paths)
            return StepResult(name, 0, outputs={"cache-hit": "true" if hit else ""})
        if action == "actions/cache/save":
            kept = self.temp / "cache-save" / with_["key"]
            for p in paths:
                if (self.workspace / p).is_file():
                    (kept / p).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(self.workspace / p, kept / p)
            self.run.caches[with_["key"]] = kept
            return StepResult(name, 0)
        prefixes = [k.strip() for k in with_.get("restore-keys", "").splitlines() if k.strip()]
        key = with_["key"] if with_["key"] in self.run.caches else next(
            (k for prefix in prefixes for k in sorted(self.run.caches, reverse=True) if k.startswith(prefix)), None)
        if key is not None:
            shutil.copytree(self.run.caches[key], self.workspace, dirs_exist_ok=True)
        return StepResult(name, 0, outputs={"cache-hit": "true" if key == with_["key"] else "",
                                            "cache-matched-key": key or ""})


def calls_sieve(script: str) -> bool:
    return any(re.match(r"^\s*sieve\s", line) for line in script.splitlines())


def run_github_job(run: GitHubRun, workflow: Path, job: str, work: Path) -> JobResult:
    return GitHubJob(run, workflow, job, work).go()


# ---------------------------------------------------------------- GitLab CI
def gitlab_job(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """A job with its `extends:` template merged in (the job's own keys win), as GitLab resolves it."""
    job = dict(doc[name])
    parent = job.pop("extends", None)
    return {**gitlab_job(doc, parent), **job} if parent else job


def rules_match(job: dict[str, Any], variables: dict[str, str]) -> bool:
    """`rules: - if: $A == "x" && $B == "y"` (the only form the template uses)."""
    for rule in job.get("rules", [{"if": ""}]):
        terms = [t.strip() for t in str(rule.get("if", "")).split("&&") if t.strip()]
        if all(_rule_term(t, variables) for t in terms):
            return True
    return False


def _rule_term(term: str, variables: dict[str, str]) -> bool:
    match = re.fullmatch(r'\$(\w+)\s*(==|!=)\s*"([^"]*)"', term)
    if match is None:
        pytest.fail(f"the runner stand-in cannot evaluate the GitLab rule `{term}`")
    return (variables.get(match.group(1), "") == match.group(3)) == (match.group(2) == "==")


def run_gitlab_job(runner: Runner, snippet: Path, name: str, project_dir: Path, ci: dict[str, str]
                   ) -> subprocess.CompletedProcess[str]:
    """before_script and script as one shell with GitLab's fail-fast semantics; the template's variables expanded
    from the CI ones; the image's `python` is the runner's Python environment with Sieve itself uninstalled (its
    dependencies stay, as a warm pip cache would give them), so the install line really installs Sieve, from the
    pinned git URL resolved to the copy's own commit."""
    doc = yaml.safe_load(snippet.read_text(encoding="utf-8"))
    job = gitlab_job(doc, name)
    variables = {k: re.sub(r"\$\{?(\w+)\}?", lambda m: ci.get(m.group(1), m.group(0)), str(v))
                 for k, v in (doc.get("variables") or {}).items()}
    assert rules_match(job, {**ci, **variables}), f"{name} would not run for this pipeline"
    lines = [str(line) for line in [*job.get("before_script", []), *job["script"]]]
    urls = {m.group(0) for line in lines for m in PINNED_URL.finditer(line)}
    assert len(urls) <= 1, urls
    assert urls or not any(SIEVE_REPO in line for line in lines), "Sieve named without its pinned git URL"
    text = "\n".join(line.replace(next(iter(urls)), runner.git_url) if urls else line for line in lines)
    if urls:  # the image's Python has Sieve's dependencies (a warm cache) but not Sieve: the job's line installs it
        subprocess.run([str(runner.venv / "bin" / "python"), "-m", "pip", "uninstall", "--quiet", "--yes",
                        "sieve-review"], check=True, capture_output=True, timeout=300, env=runner_env(runner.home))
    pip_cache = Path(variables.get("PIP_CACHE_DIR", str(project_dir / ".cache" / "pip")))
    if not pip_cache.exists():  # the job's cache, restored on a warm runner: the real pip cache
        pip_cache.parent.mkdir(parents=True, exist_ok=True)
        pip_cache.symlink_to(runner_env(runner.home)["PIP_CACHE_DIR"], target_is_directory=True)
    env = runner_env(runner.home, **ci, **variables)
    env["PATH"] = os.pathsep.join([str(runner.venv / "bin"), env["PATH"]])  # the image's python and its scripts
    return subprocess.run([*BASH, text], cwd=project_dir, env=env, capture_output=True, text=True, check=False,
                          timeout=1200)
