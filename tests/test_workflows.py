"""Every `sieve` command in the shipped workflows and the GitLab template, checked and run as written; the pins.

The files are parsed with pyyaml. Each script that calls `sieve` is taken verbatim: GitHub's ``${{ … }}``
expressions are replaced by test values (an expression without one fails the test, so a new workflow line is
never skipped silently), and bash runs the script with the step's ``env:`` against the fake GitHub or the fake
GitLab on 127.0.0.1, or a temporary database, with this checkout's `sieve` (tests/test_snippets.py runs the
same files whole, copied into another project, with Sieve installed from its pinned reference). A command line
the CLI does not accept fails here first, in the fast test that parses every line with Sieve's own argument
parser. The fast tests below also hold the shipped files to their promises: one pinned commit of Sieve, which
exists and has the Action inputs the snippets use; Sieve's own workflows equal to the examples; and no install
of Sieve from a package name it does not own.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from bot import markers
from bot.cli import build_parser
from tests.fake_github import FakeGitHub
from tests.fake_gitlab import FakeGitLab
from tests.gitrepo import GitRepo, make_repo
from tests.runner import GITHUB_SNIPPETS, PINNED_URL, PINNED_USES, ROOT, action_doc
from training.cli import build_parser as train_parser

BIN = Path(sys.executable).parent
OWN = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
WORKFLOWS = OWN + GITHUB_SNIPPETS
GITLAB_TEMPLATE = ROOT / "examples" / "gitlab-ci.yml"
SIEVE_LINE = re.compile(r"^\s*sieve\s")
EXPRESSION = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")
TOKEN = "ghs_" + "W4" * 18
READ_TOKEN = "ghs_" + "R8" * 18
GITLAB_TOKEN = "glpat-wfTOKEN0123456789abcdef"
needs_cli = pytest.mark.skipif(not (BIN / "sieve").exists(), reason="the sieve CLI is not installed here")


@dataclass
class Script:
    """One ``run:`` (GitHub) or ``script:`` (GitLab) that calls sieve, as the file has it."""

    where: str  # file › job › step
    text: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def sieve_lines(self) -> list[str]:
        return [line.strip() for line in self.text.splitlines() if SIEVE_LINE.match(line)]


def _on(doc: dict) -> dict:
    return doc.get(True) or doc.get("on") or {}  # YAML 1.1 reads the key `on` as True


def github_scripts() -> list[Script]:
    found = []
    for path in WORKFLOWS:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for job_name, job in doc["jobs"].items():
            for step in job.get("steps", []):
                run = step.get("run", "")
                if any(SIEVE_LINE.match(line) for line in run.splitlines()):
                    env = {k: str(v) for k, v in (step.get("env") or {}).items()}
                    where = f"{path.relative_to(ROOT)} › {job_name} › {step.get('name', '?')}"
                    found.append(Script(where, run, env))
    return found


def gitlab_scripts() -> list[Script]:
    doc = yaml.safe_load(GITLAB_TEMPLATE.read_text(encoding="utf-8"))
    found = []
    for job_name, job in doc.items():
        if not isinstance(job, dict) or "script" not in job:
            continue
        lines = [str(line) for line in job["script"]]
        if any(SIEVE_LINE.match(line) for line in lines):
            found.append(Script(f"{GITLAB_TEMPLATE.name} › {job_name}", "\n".join(lines),
                                {k: str(v) for k, v in (doc.get("variables") or {}).items()}))
    return found


def substitute(text: str, values: dict[str, str], where: str) -> str:
    """Replace GitHub expressions by test values; an expression without a value fails the test."""
    def one(match: re.Match) -> str:
        if match.group(1) not in values:
            pytest.fail(f"{where}: no test value for the expression ${{{{ {match.group(1)} }}}}; add one to this test")
        return values[match.group(1)]

    return EXPRESSION.sub(one, text)


def github_values(api_url: str, head: str = "0" * 40, since: str = "") -> dict[str, str]:
    return {"github.repository": "octo/shop", "github.api_url": api_url, "secrets.GITHUB_TOKEN": TOKEN,
            "secrets.SIEVE_MARKER_KEY": "marker-key-for-tests",
            "github.token": TOKEN, "inputs.since": since, "github.event.pull_request.number": "3",
            "github.event.pull_request.head.sha": head, "github.event.workflow_run.head_sha": head,
            "inputs.min-gain": "0.01", "inputs.train-options": "--max-steps 2 --shipped-limit 6",
            "github.ref_name": "main"}


SNIPPET = "examples/github/"  # the scripts below are run from the copy-paste snippets (Sieve's own copies agree)


def gitlab_env(url: str, project_id: int, workdir: Path, variables: dict[str, str]) -> dict[str, str]:
    ci = {"CI": "true", "GITLAB_CI": "true", "CI_PROJECT_DIR": str(workdir), "CI_PROJECT_ID": str(project_id),
          "CI_PROJECT_PATH": "team/tool", "CI_SERVER_URL": url, "CI_API_V4_URL": url + "/api/v4",
          "CI_MERGE_REQUEST_IID": "3", "CI_PIPELINE_SOURCE": "merge_request_event",
          "SIEVE_GITLAB_TOKEN": GITLAB_TOKEN}
    # the template's own `variables:`, expanded the way the runner does (they may name CI variables)
    expanded = {k: re.sub(r"\$\{?(\w+)\}?", lambda m: ci.get(m.group(1), m.group(0)), v) for k, v in variables.items()}
    return {**ci, **expanded}


def run_script(script: Script, cwd: Path, env: dict[str, str], values: dict[str, str] | None = None,
               timeout: int = 540) -> subprocess.CompletedProcess:
    """bash runs the script as the runner would: `set -e` semantics, the step's env, `sieve` on PATH."""
    text = substitute(script.text, values or {}, script.where)
    step_env = {k: substitute(v, values or {}, script.where) for k, v in script.env.items()}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "SIEVE_", "CI_", "GITLAB_"))}
    full = {**base, **step_env, **env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "SIEVE_EXPLAIN": "false"}
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", text], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _shell_words(line: str, env: dict[str, str]) -> list[str]:
    """The argv bash would pass for ``line`` (its leading ``sieve`` dropped), variables expanded from ``env``."""
    command = "printf '%s\\0'" + line.strip()[len("sieve"):]
    done = subprocess.run(["bash", "-c", command], env={"PATH": os.environ.get("PATH", ""), **env},
                          capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.split("\0")[:-1]


# ---------------------------------------------------------------- every line is a valid command (fast)
def test_every_workflow_and_template_calls_sieve():
    where = {s.where.split(" › ")[0] for s in github_scripts() + gitlab_scripts()}
    assert {f"{folder}/{name}.yml" for folder in (".github/workflows", "examples/github")
            for name in ("sieve-feedback", "sieve-fork-review", "sieve-review")} <= where
    assert "gitlab-ci.yml" in where


@pytest.mark.parametrize("script", github_scripts() + gitlab_scripts(), ids=lambda s: s.where)
def test_every_sieve_line_is_a_valid_command(script: Script):
    env = {"REPOSITORY": "octo/shop", "PR": "3", "pr": "3", "SINCE": "2024-01-01", "CI_PROJECT_PATH": "team/tool",
           "CI_SERVER_URL": "http://127.0.0.1:9", "RUNNER_TEMP": "/tmp", "MIN_GAIN": "0.01"}
    for line in script.sieve_lines:
        argv = _shell_words(substitute(line, github_values("http://127.0.0.1:9"), script.where), env)
        parser, argv = (train_parser(), argv[1:]) if argv[:1] == ["train"] else (build_parser(), argv)
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            try:
                parser.parse_args(argv)
            except SystemExit as exc:
                pytest.fail(f"{script.where}: `{line}` is not a valid sieve command (exit {exc.code}): "
                            f"{errors.getvalue().strip()}")


def test_the_line_check_can_fail():
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
        build_parser().parse_args(_shell_words("sieve feedback stats --no-such-flag", {}))


def test_examples_serialise_runs_per_pull_request():
    review = yaml.safe_load((ROOT / SNIPPET / "sieve-review.yml").read_text())
    assert "pull_request.number" in review["concurrency"]["group"]
    fork = yaml.safe_load((ROOT / SNIPPET / "sieve-fork-review.yml").read_text())
    assert "workflow_run" in fork["concurrency"]["group"] and fork["concurrency"]["cancel-in-progress"] is False
    feedback = yaml.safe_load((ROOT / SNIPPET / "sieve-feedback.yml").read_text())
    assert feedback["concurrency"]["cancel-in-progress"] is False
    gitlab = yaml.safe_load(GITLAB_TEMPLATE.read_text())
    assert "$CI_MERGE_REQUEST_IID" in gitlab["sieve-review"]["resource_group"]
    assert gitlab["sieve-feedback"]["resource_group"]


# ---------------------------------------------------------------- the scripts run, as written
def _script(name: str) -> Script:
    return next(s for s in github_scripts() + gitlab_scripts() if s.where.startswith(name))


def _tables(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as con:
        return con.execute("select count(*) from sqlite_master").fetchone()[0]


@needs_cli
@pytest.mark.parametrize("since", ["", "2020-01-01T00:00:00Z"])
def test_the_nightly_feedback_job_runs(tmp_path, since):
    collect = _script(SNIPPET + "sieve-feedback.yml › collect › Collect")
    with FakeGitHub("octo", "shop") as fake:
        fake.add_token(TOKEN, "github-actions[bot]", actions=True)
        done = run_script(collect, tmp_path, {}, github_values(fake.base_url, since=since), timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "sieve-feedback.db").is_file() and _tables(tmp_path / "sieve-feedback.db") > 0
    assert TOKEN not in done.stdout + done.stderr


def _pull(tmp_path: Path):
    repo = make_repo(tmp_path / "repo")
    repo.write("shop.py", "import subprocess\n\n\ndef run(cmd):\n    return subprocess.run(cmd)\n")
    base = repo.commit("base")
    repo.write("shop.py", "import subprocess\n\n\ndef run(cmd):\n    return subprocess.run(cmd, shell=True)\n\n\n"
                          "def total(items):\n    return sum(items) + shipping_fee\n")
    return repo, base, repo.commit("shell and an undefined name")


@needs_cli
@pytest.mark.slow
def test_fork_review_then_post_then_nightly_feedback(tmp_path):
    """The fork-safe pair hands its artifact over as GitHub would, then the nightly job harvests a 👍."""
    repo, base, head = _pull(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    with FakeGitHub("octo", "shop") as fake:
        values = github_values(fake.base_url, head=head)
        fake.add_token(TOKEN, "github-actions[bot]", actions=True)
        fake.add_pull(3, diff=repo.diff(base, head), head_sha=head, base_sha=base,
                      files={"shop.py": repo.show(head, "shop.py")})
        readonly = {**values, "github.token": READ_TOKEN}
        fake.add_token(READ_TOKEN, "github-actions[bot]", readonly=True, actions=True)
        first = run_script(_script(SNIPPET + "sieve-review.yml › fork › "), work, {}, readonly)
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
        assert (work / "sieve-out" / "review.json").is_file() and not fake.writes()  # dry run: nothing posted
        assert (work / "sieve-out" / "pr-number").read_text().strip() == "3"

        post = run_script(_script(SNIPPET + "sieve-fork-review.yml › post › "), work, {}, values)
        assert post.returncode == 0, post.stdout[-2000:] + post.stderr[-2000:]  # no fail_on in this project
        assert "Traceback" not in post.stderr and TOKEN not in post.stdout + post.stderr
        assert len(fake.reviews) == 1 and len(fake.issue_comments) == 1
        first_id = min(fake.review_comments)
        assert markers.decode(fake.review_comments[first_id]["body"]).model.startswith("default@")
        fake.react("pulls", first_id, "octo", "+1")  # the owner agrees

        harvest = run_script(_script(SNIPPET + "sieve-feedback.yml › collect › Collect"), work, {}, values)
    assert harvest.returncode == 0, harvest.stdout[-2000:] + harvest.stderr[-2000:]
    assert re.search(r"posted=\d+ .*up=1", harvest.stdout), harvest.stdout


@pytest.fixture()
def gitlab_world(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.write("tool/run.py", "import subprocess\n\n\ndef run(cmd):\n    return subprocess.run(cmd)\n")
    base = repo.commit("base")
    repo.write("tool/run.py", "import subprocess\n\n\ndef run(cmd):\n    return subprocess.run(cmd, shell=True)\n")
    head = repo.commit("head")
    with FakeGitLab() as fake:
        bot = fake.add_user("sieve-bot", GITLAB_TOKEN)
        dev = fake.add_user("dev", "dev-token")
        project = fake.add_project("team/tool", repo.root, {bot["id"]: 30, dev["id"]: 40})
        mr = fake.add_mr(project, 3, base, head, dev)
        work = tmp_path / "project"
        work.mkdir()
        yield fake, project, mr, work


@needs_cli
@pytest.mark.slow
def test_the_gitlab_template_jobs_run(gitlab_world):
    fake, project, mr, work = gitlab_world
    (work / ".sieve.toml").write_text('fail_on = "critical"\n')  # the project's settings: a status is set
    review, feedback = _script("gitlab-ci.yml › sieve-review"), _script("gitlab-ci.yml › sieve-feedback")
    env = gitlab_env(fake.url, project["id"], work, review.env)
    done = run_script(review, work, env)
    assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-2000:]  # 1: fail_on critical met
    assert GITLAB_TOKEN not in done.stdout + done.stderr
    assert [d for d in mr.discussions if not d["individual_note"]] and fake.statuses
    harvested = run_script(feedback, work, {**env, "CI_PIPELINE_SOURCE": "schedule", "SIEVE_TASK": "feedback"})
    assert harvested.returncode == 0, harvested.stdout[-2000:] + harvested.stderr[-2000:]
    assert (work / "sieve-feedback.db").is_file() and (work / "curriculum.jsonl").is_file()


# ---------------------------------------------------------------- what the shipped files promise (fast)
def _shipped_files() -> list[Path]:
    """Every file a checkout of Sieve holds (what git tracks or would track), else every file outside git's folder."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=False, timeout=120)
    if listed.returncode == 0:
        return [ROOT / name for name in filter(None, listed.stdout.decode().split("\0")) if (ROOT / name).is_file()]
    return [p for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts and ".venv" not in p.parts]


#: an install of the package name Sieve does not own (any extras, version or quoting; pip, pipx, uv), not the git URL
PACKAGE_INSTALL = re.compile(r"\b(?:pip3?|pipx|uv pip|uv tool)\s+install\b[^\n]*?(?<![\w/.-])" + "sieve" + r"-review"
                             + r"(?![\w/.-])")


def test_no_shipped_file_installs_sieve_from_a_package_name():
    """Nobody owns that name on the package index: anyone could register it. Sieve installs from its source."""
    hits = []
    for path in _shipped_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        hits += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in PACKAGE_INSTALL.finditer(text)]
    assert not hits, hits


def test_the_package_name_check_can_fail():
    name = "sieve" + "-review"
    for line in (f'python -m pip install "{name}==0.1.0"', f"pip install '{name}[train]'", f"pipx install {name}"):
        assert PACKAGE_INSTALL.search(line), line
    assert not PACKAGE_INSTALL.search('pip install "git+https://github.com/' + name + '/sieve@' + "0" * 40 + '"')


def _pins() -> dict[str, set[str]]:
    """Every pinned reference to Sieve in the shipped files: the commit → where it appears."""
    found: dict[str, set[str]] = {}
    pattern = re.compile(r"sieve-review/sieve[@/]([0-9a-f]{40})")  # uses:/git URL, and raw file URLs
    for path in _shipped_files():
        if path.suffix in (".yml", ".md", ".toml") or path.name == "Makefile":
            for match in pattern.finditer(path.read_text(encoding="utf-8")):
                found.setdefault(match.group(1), set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_snippet_pins_one_commit_and_names_its_branch():
    pins = _pins()
    assert len(pins) == 1, f"one commit everywhere (make pin REF=<commit>): {pins}"
    snippets = [*GITHUB_SNIPPETS, GITLAB_TEMPLATE]
    for path in snippets:
        text = path.read_text(encoding="utf-8")
        lines = [line for line in text.splitlines() if "sieve-review/sieve@" in line and not line.lstrip().startswith("#")]
        assert lines, f"{path.name} does not use Sieve by its pinned reference"
        assert all(line.rstrip().endswith("# main") for line in lines), lines  # the branch the commit is on
        assert "uses: ./" not in text and "pip install ." not in text, path.name  # works only inside Sieve
    steps = [s for path in GITHUB_SNIPPETS for job in yaml.safe_load(path.read_text())["jobs"].values()
             for s in job["steps"] if "sieve-review/sieve@" in str(s.get("uses", ""))]
    assert steps and all(PINNED_USES.match(s["uses"]) for s in steps)
    assert PINNED_URL.search(GITLAB_TEMPLATE.read_text())


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False, timeout=60)


def test_the_pinned_commit_exists_and_has_what_the_snippets_use():
    """The pin names a commit of this repository's history (so it exists wherever this history is published) whose
    action.yml declares every input the snippets pass. A rewritten history (rebase, squash) fails here: re-pin."""
    if _git("rev-parse", "--is-shallow-repository").stdout.strip() != "false":
        pytest.skip("needs the repository's full history (not a shallow clone, not a source archive)")
    (commit,) = _pins()
    assert _git("cat-file", "-e", f"{commit}^{{commit}}").returncode == 0, f"{commit} is not a commit here: make pin"
    assert _git("merge-base", "--is-ancestor", commit, "HEAD").returncode == 0, f"{commit} is not in HEAD's history"
    then = yaml.safe_load(_git("show", f"{commit}:action.yml").stdout)
    used = {name for path in GITHUB_SNIPPETS for job in yaml.safe_load(path.read_text())["jobs"].values()
            for s in job["steps"] if PINNED_USES.match(str(s.get("uses", ""))) for name in (s.get("with") or {})}
    assert used <= set(then["inputs"]), f"the pinned action.yml lacks {used - set(then['inputs'])}"
    assert set(then["inputs"]) == set(action_doc()["inputs"]), "action.yml's inputs changed since the pin: make pin"


def test_sieves_own_workflows_are_the_examples_with_the_local_action():
    """.github/workflows/ runs Sieve on its own pull requests from the checkout (`uses: ./`); otherwise they are the
    copy-paste examples, so what the tests prove of one holds for the other."""
    for example in GITHUB_SNIPPETS:
        own = ROOT / ".github" / "workflows" / example.name
        local = yaml.safe_load(own.read_text(encoding="utf-8"))
        pinned = yaml.safe_load(example.read_text(encoding="utf-8"))
        for job in pinned["jobs"].values():
            for step in job["steps"]:
                if PINNED_USES.match(str(step.get("uses", ""))):
                    step["uses"] = "./"
        assert local == pinned, f"{own.name} differs from {example.relative_to(ROOT)} (edit the example, then copy)"
