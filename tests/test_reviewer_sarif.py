"""The SARIF importer: a real ruff SARIF report and hand-written bandit/semgrep-shaped runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bot.diff import parse
from bot.errors import ReviewerError
from bot.findings import ParsedDiff
from bot.reviewers import REVIEWERS, ReviewContext, SarifConfig, SarifReviewer
from bot.reviewers.ruff import find_ruff
from tests.gitrepo import GitRepo, make_repo

BASE = "import subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd)\n"
HEAD = ("import subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd)\n\n\n"
        "def run_shell(cmd):\n    password = 'hunter2'\n    return subprocess.call(\n        cmd,\n"
        "        shell=True,\n    )\n")


def repo_with_change(tmp_path: Path) -> tuple[GitRepo, ParsedDiff]:
    repo = make_repo(tmp_path / "my repo")  # a space: file URIs percent-encode it
    repo.write("src/app.py", BASE)
    repo.commit("base")
    repo.write("src/app.py", HEAD)
    repo.commit("head")
    return repo, parse(repo.diff("HEAD~1", "HEAD"))


def write_sarif(path: Path, runs: list[dict[str, Any]], version: str = "2.1.0") -> Path:
    path.write_text(json.dumps({"$schema": "https://json.schemastore.org/sarif-2.1.0.json",
                                "version": version, "runs": runs}))
    return path


def review(diff: ParsedDiff, root: Path, *paths: Path) -> Any:
    reviewer = REVIEWERS.create("sarif", SarifConfig(paths=tuple(str(p) for p in paths)))
    return reviewer.review(diff, ReviewContext.from_worktree(root))


def ruff_sarif(root: Path, select: str, out: Path) -> Path:
    """A real SARIF report of ``src/app.py`` from ruff with rules ``select``, written to ``out``."""
    out.write_text(subprocess.run([find_ruff(), "check", "--isolated", "--no-cache", "--exit-zero", "--select",
                                   select, "--output-format", "sarif", "src/app.py"], cwd=root, capture_output=True,
                                  text=True, check=True, timeout=60).stdout)
    return out


def test_real_ruff_sarif_report(tmp_path: Path) -> None:
    repo, diff = repo_with_change(tmp_path)
    result = review(diff, repo.root, ruff_sarif(repo.root, "S,F", tmp_path / "ruff.sarif"))
    rules = {(f.rule_id, f.anchor.line) for f in result.findings}
    assert ("S602", 10) in rules  # subprocess call with shell=True, region starts at the call
    assert ("S105", 9) in rules  # hard-coded password
    assert all(f.source == "sarif:ruff" and f.anchor.path == "src/app.py" for f in result.findings)
    # S603 on the old, unchanged call at line 5 is not part of this change
    assert not any(f.anchor.line == 5 for f in result.findings)
    assert [s.where for s in result.skipped] == ["src/app.py"]
    for finding in result.findings:
        assert finding.code.splitlines()[-1].startswith("+") and finding.review


def bandit_like_run(root: Path) -> dict[str, Any]:
    uri = (root / "src" / "app.py").as_uri()  # absolute file:// with %20
    return {
        "tool": {"driver": {"name": "Bandit", "rules": [
            {"id": "B602", "name": "subprocess_popen_with_shell_equals_true",
             "shortDescription": {"text": "subprocess call with shell=True identified"}},
            {"id": "B105", "shortDescription": {"text": "Possible hardcoded password"},
             "defaultConfiguration": {"level": "note"}}]}},
        "results": [
            {"ruleId": "B602", "ruleIndex": 0, "level": "error",
             "message": {"text": "subprocess call with shell=True identified, security issue."},
             "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri},
                                                 "region": {"startLine": 10, "endLine": 13}}}]},
            {"ruleId": "B105", "message": {},
             "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri}, "region": {"startLine": 9}}}],
             "fixes": [{"artifactChanges": [{"artifactLocation": {"uri": uri}, "replacements": [
                 {"deletedRegion": {"startLine": 9, "startColumn": 16, "endLine": 9, "endColumn": 25},
                  "insertedContent": {"text": "os.environ['PW']"}}]}]}]},
            {"ruleId": "B105", "message": {"text": "suppressed one"}, "suppressions": [{"kind": "inSource"}],
             "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri}, "region": {"startLine": 9}}}]},
            {"ruleId": "B999", "message": {"text": "no location at all"}},
        ],
    }


def semgrep_like_run() -> dict[str, Any]:
    return {
        "tool": {"driver": {"name": "Semgrep OSS", "rules": [
            {"id": "python.lang.security.audit.subprocess-shell-true",
             "shortDescription": {"text": "Found 'subprocess' function with 'shell=True'"},
             "defaultConfiguration": {"level": "error"}}]}},
        "originalUriBaseIds": {"PROJECTROOT": {"uri": "file:///ci/checkout/"}},
        "artifacts": [{"location": {"uri": "src/app.py", "uriBaseId": "%SRCROOT%"}}],
        "results": [
            # region starts on an unchanged line but covers added ones: the first added line wins
            {"ruleId": "python.lang.security.audit.subprocess-shell-true", "message": {"text": ""},
             "locations": [{"physicalLocation": {"artifactLocation": {"index": 0},
                                                 "region": {"startLine": 5, "endLine": 10}}}]},
            {"ruleId": "python.lang.security.audit.subprocess-shell-true", "message": {"text": "old code"},
             "locations": [{"physicalLocation": {
                 "artifactLocation": {"uri": "src/app.py", "uriBaseId": "PROJECTROOT"},
                 "region": {"startLine": 4, "endLine": 5}}}]},
            {"ruleId": "python.lang.security.audit.subprocess-shell-true", "message": {"text": "by base id"},
             "locations": [{"physicalLocation": {
                 "artifactLocation": {"uri": "file:///ci/checkout/src/app.py"},
                 "region": {"startLine": 12, "startColumn": 9}}}],
             "fixes": [{"artifactChanges": [{"artifactLocation": {"uri": "src/app.py", "uriBaseId": "PROJECTROOT"},
                                             "replacements": [{"deletedRegion": {"startLine": 12}}]}]}]},
        ],
    }


def test_hand_written_runs_multiline_regions_and_uris(tmp_path: Path) -> None:
    repo, diff = repo_with_change(tmp_path)
    sarif = write_sarif(tmp_path / "tools.sarif", [bandit_like_run(repo.root), semgrep_like_run()])
    result = review(diff, repo.root, sarif)
    got = {(f.source, f.rule_id, f.anchor.line, f.hint, f.review) for f in result.findings}
    assert ("sarif:Bandit", "B602", 10, "error", "subprocess call with shell=True identified, security issue.") in got
    assert ("sarif:Bandit", "B105", 9, "note", "Possible hardcoded password") in got  # rule text, rule level
    semgrep_rule = "python.lang.security.audit.subprocess-shell-true"
    assert ("sarif:Semgrep OSS", semgrep_rule, 6, "error", "Found 'subprocess' function with 'shell=True'") in got
    assert ("sarif:Semgrep OSS", semgrep_rule, 12, "error", "by base id") in got
    assert len(result.findings) == 4  # suppressed and out-of-diff results are not findings
    suggestions = {f.anchor.line: f.suggestion for f in result.findings}
    assert suggestions == {10: None, 9: "    password = os.environ['PW']", 6: None, 12: ""}  # 12: delete the line
    assert all(f.anchor.path == "src/app.py" for f in result.findings)
    where = sorted((s.where, s.reason) for s in result.skipped)
    assert ("src/app.py", "1 SARIF result dropped: on lines this diff did not add") in where
    assert any(w == "sarif:Bandit" and "B999" in r for w, r in where)


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"version": "2.0.0", "runs": []}', "version '2.0.0'"),
    ("[1, 2]", "JSON object"),
    ('{"version": "2.1.0"}', "no 'runs'"),
])
def test_bad_files_are_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    repo, diff = repo_with_change(tmp_path)
    bad = tmp_path / "bad.sarif"
    bad.write_text(content)
    with pytest.raises(ReviewerError, match=message) as info:
        review(diff, repo.root, bad)
    assert str(bad) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    repo, diff = repo_with_change(tmp_path)
    with pytest.raises(ReviewerError, match="does not exist"):
        SarifReviewer(SarifConfig(paths=(str(tmp_path / "absent.sarif"),))).review(
            diff, ReviewContext.from_worktree(repo.root))


def test_the_rules_documented_rationale_reaches_the_finding(tmp_path: Path) -> None:
    repo, diff = repo_with_change(tmp_path)
    sarif = ruff_sarif(repo.root, "S", tmp_path / "ruff.sarif")
    shell = next(f for f in review(diff, repo.root, sarif).findings if f.rule_id == "S602")
    # ruff puts its rule documentation in fullDescription: the "Why is this bad?" section is what is read
    assert shell.rationale.startswith("Starting a subprocess with a shell can allow attackers")
    assert "##" not in shell.rationale
    # a CodeQL-like rule: help in markdown with headings; a rule whose only text is the message gives none
    run = {"tool": {"driver": {"name": "CodeQL", "rules": [
        {"id": "py/sql", "shortDescription": {"text": "SQL query built from user-controlled sources"},
         "help": {"markdown": "# SQL injection\nBuilding a query from user input lets a caller run any SQL.\n"
                              "```python\ncur.execute(q)\n```\n## Recommendation\nPass values as parameters."}},
        {"id": "py/plain", "shortDescription": {"text": "plain"}}]}},
        "results": [{"ruleId": "py/sql", "message": {"text": "This query depends on a user-provided value."},
                     "locations": [{"physicalLocation": {"artifactLocation": {"uri": "src/app.py"},
                                                         "region": {"startLine": 10}}}]},
                    {"ruleId": "py/plain", "message": {"text": "plain"},
                     "locations": [{"physicalLocation": {"artifactLocation": {"uri": "src/app.py"},
                                                         "region": {"startLine": 9}}}]}]}
    found = {f.rule_id: f for f in review(diff, repo.root, write_sarif(tmp_path / "c.sarif", [run])).findings}
    assert found["py/sql"].rationale == ("Building a query from user input lets a caller run any SQL. "
                                         "Pass values as parameters.")
    assert found["py/plain"].rationale == ""
