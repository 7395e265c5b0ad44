"""Every shipped workflow grants exactly the token permissions its steps use — measured, not assumed.

Each job of the copy-paste workflows (examples/github/) and of Sieve's own CI runs step by step (tests/runner.py),
against a fresh fake GitHub, in two worlds: ``fail_on`` set and the files readable (a critical finding: review,
summary, status), and the files unreadable (an incomplete review, which sets a failing status even without
``fail_on``). What the fake records — every method and path the job's Sieve commands called — is turned into
GitHub permissions by the table below (one row per endpoint, from the REST reference's permission of each
operation), joined with what the stand-in actions need (checkout reads contents; downloading another run's
artifact reads actions) and with what GitHub's own tools in the scripts need (``git push``, ``gh pr``: the command
table), and compared with the job's ``permissions:``. An endpoint missing from the table, an
action the runner does not know or a permission granted but never used fails the test. Sieve's own copies in
.github/workflows/ are the examples with ``uses: ./`` (test_workflows.py checks that), so they grant the same.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from bot import markers
from tests.fake_github import SPEC_PATH, FakeGitHub
from tests.gitrepo import GitRepo, make_repo
from tests.runner import GITHUB_SNIPPETS, PINNED_USES, ROOT, GitHubRun, Runner, calls_sieve, run_github_job

TOKEN = "ghs_" + "P7" * 18
OWN_CI = ROOT / ".github" / "workflows" / "ci.yml"

#: (methods, path under /repos/{owner}/{repo} or absolute, the permission it needs; None: metadata, always granted)
ENDPOINTS = [
    ("GET", r"/user|/rate_limit", None),
    ("GET", r"{repo}|{repo}/collaborators/[^/]+/permission", None),
    ("GET", r"{repo}/pulls/\d+(/files|/comments|/reviews)?|{repo}/pulls/comments(/\d+/reactions)?",
     ("pull-requests", "read")),
    ("GET", r"{repo}/issues/\d+/comments|{repo}/issues/comments/\d+/reactions", ("pull-requests", "read")),
    ("GET", r"{repo}/contents/.+", ("contents", "read")),
    ("GET", r"{repo}/commits/[0-9a-f]+/status", ("statuses", "read")),
    ("POST", r"{repo}/pulls/\d+/reviews|{repo}/pulls/\d+/comments(/\d+/replies)?", ("pull-requests", "write")),
    ("PATCH DELETE", r"{repo}/pulls/comments/\d+", ("pull-requests", "write")),
    # an issue comment on a pull request takes issues or pull-requests write; the workflows grant the latter
    ("POST", r"{repo}/issues/\d+/comments", ("pull-requests", "write")),
    ("PATCH DELETE", r"{repo}/issues/comments/\d+", ("pull-requests", "write")),
    ("POST", r"{repo}/statuses/[0-9a-f]+", ("statuses", "write")),
]
#: what the actions the workflows use need from the job's token (the Sieve Action is measured instead)
ACTIONS = {"actions/checkout": {"contents": "read"}, "actions/setup-python": {}, "actions/cache": {},
           "actions/cache/restore": {}, "actions/cache/save": {}, "actions/upload-artifact": {}}
LEVEL = {"read": 1, "write": 2}
#: what GitHub's own tools in a `run:` script need from the job's token (the retraining pushes a branch and opens its
#: pull request with git and gh, not through Sieve): (pattern of a script line, permission)
COMMANDS = [(r"git push\b", ("contents", "write")), (r"gh pr (create|edit)\b", ("pull-requests", "write")),
            (r".*\$\(gh pr (list|view)\b", ("pull-requests", "read"))]
#: Sieve commands that never call the host: their steps are not expected to show up in the fake's log
OFFLINE = re.compile(r"^\s*sieve\s+(train|feedback\s+(export|stats))\b")


def permission_of(method: str, path: str, repo: str = "/repos/octo/shop") -> tuple[str, str] | None:
    for methods, pattern, needs in ENDPOINTS:
        if method in methods.split() and re.fullmatch(pattern.replace("{repo}", repo), path.split("?")[0]):
            return needs
    pytest.fail(f"{method} {path}: not in the endpoint table of tests/test_permissions.py; add its permission")


def merge(into: dict[str, str], scope: str, level: str) -> None:
    if LEVEL[level] > LEVEL.get(into.get(scope, ""), 0):
        into[scope] = level


def from_requests(requests: list[tuple[str, str, int]]) -> dict[str, str]:
    needed: dict[str, str] = {}
    for method, path, _ in requests:
        needs = permission_of(method, path)
        if needs:
            merge(needed, *needs)
    return needed


def from_actions(job: dict) -> dict[str, str]:
    needed: dict[str, str] = {}
    for step in job["steps"]:
        uses = str(step.get("uses", "")).split("@")[0]
        if not uses or PINNED_USES.match(step["uses"]) or step["uses"] == "./":
            continue
        if uses == "actions/download-artifact":  # another run's artifact goes through the Actions API
            grants = {"actions": "read"} if "run-id" in (step.get("with") or {}) else {}
        elif uses in ACTIONS:
            grants = ACTIONS[uses]
        else:
            pytest.fail(f"{uses}: what does it need from the token? Add it to ACTIONS in tests/test_permissions.py")
        for scope, level in grants.items():
            merge(needed, scope, level)
    return needed


def from_commands(job: dict) -> dict[str, str]:
    needed: dict[str, str] = {}
    for step in job["steps"]:
        for line in str(step.get("run", "")).splitlines():
            for pattern, (scope, level) in COMMANDS:
                if re.match(r"\s*" + pattern, line):
                    merge(needed, scope, level)
    return needed


def calls_host(step: dict) -> bool:
    """A step whose Sieve commands talk to GitHub (an install-only Action step or an offline command does not)."""
    if PINNED_USES.match(str(step.get("uses", ""))):
        return str((step.get("with") or {}).get("install-only", "false")) != "true"
    lines = [line for line in str(step.get("run", "")).splitlines() if calls_sieve(line)]
    return any(not OFFLINE.match(line) for line in lines)


def granted(doc: dict, job: dict) -> dict[str, str]:
    given = job.get("permissions", doc.get("permissions"))
    assert isinstance(given, dict), "declare the job's permissions (not the repository's default, not read-all)"
    return {scope: level for scope, level in given.items() if scope != "metadata" and level != "none"}


def project(root: Path) -> tuple[GitRepo, str, str]:
    repo = make_repo(root)
    repo.write("shop/run.py", "import subprocess\n\n\ndef run(cmd):\n    return subprocess.run(cmd)\n")
    base = repo.commit("base")
    repo.write("shop/run.py", "import subprocess\n\n\ndef run(cmd):\n    return subprocess.run(cmd, shell=True)\n")
    return repo, base, repo.commit("head")


def seeded(fake: FakeGitHub, repo: GitRepo, base: str, head: str, readable: bool) -> None:
    """Pull request 3, and one earlier Sieve comment with a maintainer's 👍 (for the harvest to read)."""
    files = {"shop/run.py": repo.show(head, "shop/run.py")} if readable else {}
    fake.add_pull(3, diff=repo.diff(base, head), head_sha=head, base_sha=base, files=files)
    old = markers.Marker(fingerprint="f" * 16, severity="minor", probabilities={"minor": 1.0}, model="default@x",
                         prompt_version="sieve-severity-v4", commit=base, path="shop/run.py", line=5,
                         review="an earlier finding", code="", source="ruff")
    comment = fake.add_review_comment(3, "github-actions[bot]", "an earlier finding\n\n" + markers.encode(old),
                                      path="shop/run.py", line=5)
    fake.react("pulls", comment["id"], "octo", "+1")


def event_of(doc: dict, head: str, base: str) -> tuple[str, dict]:
    on = doc.get(True) or doc.get("on") or {}  # YAML 1.1 reads the key `on` as True
    if "pull_request" in on:
        return "pull_request", {"number": 3, "pull_request": {"number": 3, "head": {"sha": head}, "base": {"sha": base}}}
    if "workflow_run" in on:
        return "workflow_run", {"workflow_run": {"id": 4242, "head_sha": head, "event": "pull_request"}}
    return "schedule", {}


def measure(tmp_path: Path, workflow: Path, job: str, world: str) -> dict[str, str]:
    """The permissions the job's Sieve steps used in ``world`` ("fail_on" or "incomplete")."""
    repo, base, head = project(tmp_path / "shop")
    doc = yaml.safe_load(workflow.read_text(encoding="utf-8"))
    home = tmp_path / "home"
    home.mkdir()
    (home / ".sieve-venv").symlink_to(Path(sys.executable).parent.parent)  # a warm runner's Sieve: this one
    handed = tmp_path / "handed"  # what the fork job would have handed over
    handed.mkdir()
    (handed / "pr-number").write_text("3\n")
    (handed / "head-sha").write_text(head + "\n")
    name, event = event_of(doc, head, base)
    env = {"PYTHONPATH": str(ROOT), "SIEVE_MODEL": "smollm2", "SIEVE_EXPLAIN": "false"}
    if world == "fail_on":
        env["SIEVE_FAIL_ON"] = "critical"
    with FakeGitHub("octo", "shop") as fake:
        fake.add_token(TOKEN, "github-actions[bot]", actions=True)
        seeded(fake, repo, base, head, readable=world == "fail_on")
        values = {"github.repository": "octo/shop", "github.api_url": fake.base_url, "github.token": TOKEN,
                  "secrets.SIEVE_MARKER_KEY": "marker-key-for-tests",
                  "github.event.pull_request.number": "3", "github.event.pull_request.head.sha": head,
                  "github.event.pull_request.base.sha": base, "github.event.workflow_run.head_sha": head,
                  "github.event.workflow_run.id": "4242", "github.run_id": "4243", "inputs.since": "",
                  "runner.os": "Linux", "runner.arch": "X64", "hashFiles('sieve/pyproject.toml')": "x",
                  "inputs.min-gain": "", "inputs.train-options": "", "github.ref_name": "main"}
        run = GitHubRun(Runner(home, ROOT, ""), repo, head, values, fake.base_url, name, event,
                        artifacts={"sieve-review": handed}, env=env, only_sieve=True)
        fake.reset_log()
        result = run_github_job(run, workflow, job, tmp_path / "job")
        sieve_steps = [s for s in doc["jobs"][job]["steps"] if calls_host(s)]
        assert not sieve_steps or fake.requests, f"{job}: Sieve never called the API\n{result.log}"
        assert "Traceback" not in result.log and TOKEN not in result.log, result.log
        return from_requests(fake.requests)


JOBS = [(path, job) for path in [*GITHUB_SNIPPETS, OWN_CI]
        for job in yaml.safe_load(path.read_text(encoding="utf-8"))["jobs"]]


@pytest.mark.slow
@pytest.mark.skipif(not SPEC_PATH.exists(), reason=f"API description missing: {SPEC_PATH}")
@pytest.mark.parametrize("workflow, job", JOBS, ids=[f"{p.name}:{j}" for p, j in JOBS])
def test_each_job_grants_exactly_what_its_steps_use(tmp_path: Path, workflow: Path, job: str) -> None:
    doc = yaml.safe_load(workflow.read_text(encoding="utf-8"))
    needed = from_actions(doc["jobs"][job])
    for scope, level in from_commands(doc["jobs"][job]).items():
        merge(needed, scope, level)
    for world in ("fail_on", "incomplete"):
        for scope, level in measure(tmp_path / world, workflow, job, world).items():
            merge(needed, scope, level)
    assert granted(doc, doc["jobs"][job]) == needed, f"{workflow.name} › {job}: grant exactly {needed}"


def test_the_command_table_reads_the_scripts_lines() -> None:
    job = {"steps": [{"run": 'n="$(gh pr list --head b --json number)"\ngit push --force origin b'},
                     {"run": "gh pr edit 3 --body-file t.md"}, {"run": "echo git push"}]}
    assert from_commands(job) == {"contents": "write", "pull-requests": "write"}
    assert from_commands({"steps": [{"run": 'n="$(gh pr list)"'}]}) == {"pull-requests": "read"}
    assert not calls_host({"run": "sieve train propose --feedback f"}) and calls_host({"run": "sieve feedback collect"})


def test_the_endpoint_table_knows_writes_from_reads() -> None:
    assert permission_of("POST", "/repos/octo/shop/statuses/" + "a" * 40) == ("statuses", "write")
    assert permission_of("GET", "/repos/octo/shop/contents/x.py?ref=abc") == ("contents", "read")
    assert from_requests([("GET", "/repos/octo/shop/pulls/3", 200), ("POST", "/repos/octo/shop/pulls/3/reviews", 200),
                          ("GET", "/repos/octo/shop/commits/abc/status", 200),
                          ("POST", "/repos/octo/shop/statuses/abc", 201)]) == {"pull-requests": "write",
                                                                              "statuses": "write"}
