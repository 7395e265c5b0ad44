"""A new host is its own file plus one registration line, and nothing else changes (a rater backend too).

A copy of the bot package gets one new file, bot/hosts/forgejo.py (a host entry and its host), and one line in
bot/plugins.py. The copy is then run as a user would run it: the command line has ``--forgejo`` and
``--forgejo-url`` for a review and for ``feedback collect``, bot.remote finds the CI job's pull request and the
token, the configuration checks a ``[forgejo]`` table against the host's options, and the planner fits bodies to
the host's limit.
"""

from __future__ import annotations

import difflib
import filecmp
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REGISTRATION = '    "bot.hosts.forgejo",\n'

HOST_FILE = '''"""Forgejo: pull requests as OWNER/REPO#N, a token in FORGEJO_TOKEN, Forgejo Actions runs detected."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bot.errors import ConfigError
from bot.hosts.base import HOSTS, CiJob, HostEntry, MergeRequestRef
from bot.registry import check_url


@dataclass(frozen=True)
class ForgejoOptions:
    url: str = field(default="https://codeberg.org/api/v1", metadata={"help": "API base URL"})
    timeout: float = field(default=30.0, metadata={"help": "seconds before one HTTP call is abandoned"})
    inherit: ClassVar[dict[str, str]] = {"timeout": "timeout"}

    def __post_init__(self) -> None:
        check_url("forgejo.url", self.url)

    def host_kwargs(self) -> dict[str, Any]:
        return {"url": self.url, "timeout": self.timeout}


class ForgejoHost:
    name = "forgejo"

    def __init__(self, token: str, *, url: str, timeout: float, marker_key: str = "") -> None:
        self.made_with = {"token_length": len(token), "url": url, "timeout": timeout}


def parse_forgejo_ref(text: str) -> MergeRequestRef:
    repo, _, number = text.strip().partition("#")
    if repo.count("/") != 1 or not number.isdigit():
        raise ConfigError(f"not a Forgejo pull request: {text!r}", hint="write it as OWNER/REPO#N")
    return MergeRequestRef("forgejo", repo, int(number))


def actions_job(environ: Mapping[str, str]) -> CiJob | None:
    if environ.get("FORGEJO_ACTIONS") and environ.get("FORGEJO_PR"):
        return parse_forgejo_ref(f"{environ['FORGEJO_REPOSITORY']}#{environ['FORGEJO_PR']}"), environ["FORGEJO_API"]
    return None


HOSTS.add_entry(HostEntry(
    name="forgejo", factory=ForgejoHost, options=ForgejoOptions, parse_ref=parse_forgejo_ref,
    ref_metavar="OWNER/REPO#N", ref_help="review a Forgejo pull request", repo_metavar="OWNER/REPO",
    url_help="Forgejo API URL", token_vars=("SIEVE_FORGEJO_TOKEN", "FORGEJO_TOKEN"), detect_ci=actions_job,
    max_body=3_000))
'''

PROBE = '''import json, sys
from bot import app, cli, remote
from bot.config import build
from bot.errors import ConfigError

def error(call):
    try:
        call()
    except ConfigError as exc:
        return str(exc)
    return None

parser = cli.build_parser()
review = parser.parse_args(["review", "--forgejo", "team/app#7", "--forgejo-url", "http://127.0.0.1:3000/api/v1"])
given = remote.detect_target(review, {})
job = remote.detect_target(parser.parse_args(["review"]), {
    "FORGEJO_ACTIONS": "true", "FORGEJO_REPOSITORY": "team/app", "FORGEJO_PR": "12",
    "FORGEJO_API": "http://127.0.0.1:3000/api/v1"})
collect = parser.parse_args(["feedback", "collect", "--forgejo", "team/app"])
config = cli.make_config(review)
host = remote.make_host("forgejo", config, {"FORGEJO_TOKEN": "t" * 12}, given.url)
print(json.dumps({
    "code": cli.__file__,
    "given": [given.ref.host, given.ref.repo, given.ref.number, given.url, str(given.ref)],
    "job": [job.ref.repo, job.ref.number, job.url],
    "collect": list(remote.collect_source(collect)[1:]) + [remote.collect_source(collect)[0].name],
    "table": dict(config.table("forgejo")),
    "host": host.made_with,
    "no_token": error(lambda: remote.make_host("forgejo", config, {})),
    "unknown_key": error(lambda: build({}, {}, sys.argv[1])),
    "bad_url": error(lambda: build({}, {}, sys.argv[2])),
    "good": dict(build({}, {}, sys.argv[3]).options("forgejo").host_kwargs()),
    "max_body": app.plan_config(config, "", "forgejo").max_body,
}))
'''


def _copy_with(tmp_path: Path, new_file: str, text: str, after: str, registration: str) -> Path:
    """The project's bot package copied, plus one new file and its registration line after the line ``after``."""
    shutil.copytree(ROOT / "bot", tmp_path / "bot", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / new_file).write_text(text, encoding="utf-8")
    plugins = tmp_path / "bot" / "plugins.py"
    assert plugins.is_file(), "there is no wiring module bot/plugins.py to register a plug-in in"
    lines = plugins.read_text(encoding="utf-8").splitlines(keepends=True)
    anchor = next(i for i, line in enumerate(lines) if after in line)
    plugins.write_text("".join(lines[:anchor + 1] + [registration] + lines[anchor + 1:]), encoding="utf-8")
    return tmp_path


def _added_lines(copy: Path) -> list[str]:
    before = (ROOT / "bot" / "plugins.py").read_text(encoding="utf-8").splitlines(keepends=True)
    after = (copy / "bot" / "plugins.py").read_text(encoding="utf-8").splitlines(keepends=True)
    return [line for line in difflib.unified_diff(before, after, n=0) if line[:1] in "+-"
            and not line.startswith(("+++", "---"))]


def _changed(left: Path, right: Path, prefix: str = "bot") -> list[str]:
    """Files that differ between two trees or exist in only one (``__pycache__`` left out)."""
    cmp = filecmp.dircmp(left, right, ignore=["__pycache__"])
    out = [f"{prefix}/{name}" for name in cmp.left_only + cmp.right_only + cmp.diff_files]
    out += [f"{prefix}/{name}" for name in cmp.common_files
            if name not in cmp.diff_files and (left / name).read_bytes() != (right / name).read_bytes()]
    for sub in cmp.common_dirs:
        out += _changed(left / sub, right / sub, f"{prefix}/{sub}")
    return sorted(set(out))


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    return _copy_with(tmp_path_factory.mktemp("newhost"), "bot/hosts/forgejo.py", HOST_FILE, "bot.hosts.gitlab",
                      REGISTRATION)


def _run(copy: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd or copy, capture_output=True, text=True, timeout=300,
                          check=False, env={"PATH": "", "PYTHONPATH": str(copy), "HOME": str(copy)})


def test_a_new_host_touches_two_files_and_one_line(copy):
    assert _changed(ROOT / "bot", copy / "bot") == ["bot/hosts/forgejo.py", "bot/plugins.py"]
    assert _added_lines(copy) == ["+" + REGISTRATION]


def test_the_new_host_gets_its_flags_ci_detection_token_table_and_limit(copy, tmp_path):
    tables = {"unknown.toml": "[forgejo]\ncolour = \"blue\"\n", "bad.toml": "[forgejo]\nurl = \"ftp://x\"\n",
              "good.toml": "timeout = 7\n[forgejo]\nurl = \"http://127.0.0.1:3000/api/v1\"\n"}
    for name, text in tables.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    done = _run(copy, "-c", PROBE, *(str(tmp_path / name) for name in tables), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["code"].startswith(str(copy))  # the copy's code ran, not the project's
    assert seen["given"] == ["forgejo", "team/app", 7, "http://127.0.0.1:3000/api/v1", "team/app#7"]
    assert seen["job"] == ["team/app", 12, "http://127.0.0.1:3000/api/v1"]
    assert seen["collect"] == ["team/app", "forgejo"]
    assert seen["table"] == {"url": "http://127.0.0.1:3000/api/v1"}  # --forgejo-url is the [forgejo] url setting
    assert seen["host"] == {"token_length": 12, "url": "http://127.0.0.1:3000/api/v1", "timeout": 30.0}
    assert seen["no_token"].startswith("no token found in SIEVE_FORGEJO_TOKEN / FORGEJO_TOKEN — ")
    assert seen["unknown_key"] == "unknown key forgejo.colour — [forgejo] takes: timeout, url"
    assert seen["bad_url"].startswith('setting forgejo.url is "ftp://x", expected an http(s) URL')
    assert seen["good"] == {"url": "http://127.0.0.1:3000/api/v1", "timeout": 7.0}
    assert seen["max_body"] == 3_000


def test_the_new_host_shows_in_the_help_and_in_the_errors_of_the_command_line(copy, tmp_path):
    helped = _run(copy, "-m", "bot.cli", "review", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "--forgejo OWNER/REPO#N" in helped.stdout
    assert "review a Forgejo pull request" in helped.stdout and "--forgejo-url" in helped.stdout
    collect = _run(copy, "-m", "bot.cli", "feedback", "--db", str(tmp_path / "f.db"), "collect", cwd=tmp_path)
    assert collect.returncode == 64 and collect.stderr.count("\n") == 1
    assert "--forgejo OWNER/REPO or --github OWNER/REPO or --gitlab GROUP/PROJECT" in collect.stderr
    (tmp_path / ".sieve.toml").write_text("[forgejo]\ntimeout = \"soon\"\n", encoding="utf-8")
    bad = _run(copy, "-m", "bot.cli", "review", "--forgejo", "team/app#7", cwd=tmp_path)
    assert bad.returncode == 64 and bad.stderr.count("\n") == 1 and "forgejo.timeout" in bad.stderr


RATER_FILE = '''"""A rater backend that rates by words in the review: "injection" is critical, "typo" trivial, else minor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.findings import Finding, Rating
from bot.rater.base import RATERS, make_rating
from bot.registry import require
from bot.severity import LABELS


@dataclass(frozen=True)
class WordsOptions:
    confidence: float = field(default=4.0, metadata={"help": "log-odds given to the chosen label"})

    def __post_init__(self) -> None:
        require(self.confidence > 0, "rater.words.confidence", self.confidence, "a number > 0")

    def rater_kwargs(self) -> dict[str, Any]:
        return {"confidence": self.confidence}


class WordsRater:
    model_id = "words-1"

    def __init__(self, confidence: float) -> None:
        self.confidence = confidence

    def rate_texts(self, pairs) -> list[Rating]:
        out = []
        for _code, review in pairs:
            level = "critical" if "injection" in review else "trivial" if "typo" in review else "minor"
            logprobs = {label: self.confidence if label == level else 0.0 for label in LABELS}
            out.append(make_rating(logprobs, model_id=self.model_id, truncated=False, tokens=0))
        return out

    def rate(self, findings: list[Finding]) -> list[Rating]:
        return self.rate_texts([(f.code, f.review) for f in findings])

    def explain(self, finding: Finding, rating: Rating, max_tokens: int = 48) -> str:
        return ""


RATERS.add("words", WordsRater, WordsOptions)
'''

RATER_PROBE = '''import json, sys
from bot import app, cli
from bot.config import build
from bot.errors import ConfigError
from bot.findings import Anchor, Finding

args = cli.build_parser().parse_args(["review", "--rater", "words", "--diff", "x.patch"])
config = cli.make_config(args)
rater = app.make_rater(config)
rated = rater.rate([Finding(Anchor("a.py", 1), "SQL injection via f-string", "llm", code="+q = f'{x}'")])
try:
    build({}, {}, sys.argv[1])
    bad = None
except ConfigError as exc:
    bad = str(exc)
print(json.dumps({"rater": config.rater, "model": rated[0].model_id, "severity": rated[0].severity, "bad": bad}))
'''


def test_a_new_rater_backend_is_its_own_file_and_one_registration_line(tmp_path_factory, tmp_path):
    copy = _copy_with(tmp_path_factory.mktemp("newrater"), "bot/rater/words.py", RATER_FILE, '    "bot.rater",',
                      '    "bot.rater.words",\n')
    assert _changed(ROOT / "bot", copy / "bot") == ["bot/plugins.py", "bot/rater/words.py"]
    assert _added_lines(copy) == ['+    "bot.rater.words",\n']
    (tmp_path / "bad.toml").write_text("[rater.words]\nconfidence = 0\n", encoding="utf-8")
    done = _run(copy, "-c", RATER_PROBE, str(tmp_path / "bad.toml"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["rater"] == "words" and seen["model"] == "words-1" and seen["severity"] == "critical"
    assert seen["bad"].startswith("setting rater.words.confidence is 0.0, expected a number > 0")
