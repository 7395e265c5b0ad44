"""Every sink escapes for itself: the terminal report, Markdown, SARIF and the stderr lines of a real `sieve review`
of a real git diff whose file names and tool messages hold rich markup, ANSI escapes and newlines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bot import cli
from tests.gitrepo import GitRepo

ANSI_NAME = "e\x1b[31mred.py"  # an escape sequence that would turn the terminal red
BOLD_NAME = "x[bold]y[/bold].py"  # rich markup (a folder "x[bold]y[" holding "bold].py")
PNG_NAME = "assets/a[/].png"  # "[/]" closes a markup tag that was never opened
SARIF_MESSAGE = "leak [/] see [red]docs[/red] [github]"  # short: one line of its table cell


@pytest.fixture(scope="module")
def change(tmp_path_factory: pytest.TempPathFactory) -> tuple[GitRepo, Path, Path]:
    """A real repository whose change adds the awkward files, its diff, and a SARIF log about one of them."""
    root = tmp_path_factory.mktemp("sinks")
    repo = GitRepo(root / "repo")
    repo.write("notes.py", "x = 1\n")
    repo.commit("base")
    repo.write(PNG_NAME, bytes(range(256)) * 2)
    repo.write(BOLD_NAME, "import os\n")
    repo.write(ANSI_NAME, "import sys\n")
    repo.write("notes.py", "x = 1\ntoken = 'abc'\n")
    repo.commit("change")
    patch = root / "change.patch"
    patch.write_bytes(repo.diff("HEAD~1", "HEAD", "--binary"))
    sarif = root / "tool.sarif"
    result = {"ruleId": "[secret]", "level": "warning", "message": {"text": SARIF_MESSAGE},
              "locations": [{"physicalLocation": {"artifactLocation": {"uri": "notes.py"},
                                                  "region": {"startLine": 2}}}]}
    sarif.write_text(json.dumps({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "[scan]"}},
                                                                "results": [result]}]}))
    return repo, patch, sarif


def review(change, capsys, *extra: str) -> tuple[int, str, str]:
    repo, patch, sarif = change
    capsys.readouterr()
    code = cli.main(["review", "--diff", str(patch), "--repo", str(repo.root), "--model", "base", "--no-explain",
                     "--reviewers", "ruff,sarif", "--sarif", str(sarif), "--threshold", "trivial", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def flat(text: str) -> str:
    """The report without the table's borders and padding (a long cell may fold onto two lines)."""
    return re.sub(r"[\s│┃║|]+", " ", text)


def test_the_terminal_report_prints_names_and_messages_as_written(change, capsys):
    code, out, err = review(change, capsys)
    assert code == 0, err
    assert "internal error" not in err and "MarkupError" not in err
    text = flat(out)
    assert f"{BOLD_NAME}:1" in text and f"skipped {PNG_NAME}: binary file" in text
    assert "e\\x1b[31mred.py:1" in text and "\x1b" not in out  # the escape shows, inert
    assert SARIF_MESSAGE in text and "sarif:[scan]" in text


def test_a_local_report_says_what_would_be_posted(change, capsys):
    code, out, _ = review(change, capsys)
    assert code == 0
    assert "would post" in out and re.search(r"\b4 would be posted;", out)  # 2 × F401, S105, the SARIF result
    assert "Posted" not in out and "posted" not in out.replace("would be posted", "")


def test_markdown_renders_names_and_messages_inert(change, capsys):
    code, out, _ = review(change, capsys, "--format", "markdown")
    assert code == 0
    assert f"`{BOLD_NAME}:1`" in out and "`e\\x1b[31mred.py:1`" in out and "\x1b" not in out
    assert r"leak \[/\] see \[red\]docs\[/red\] \[github\]" in out


def test_sarif_output_keeps_the_message_as_a_plain_string(change, capsys):
    code, out, _ = review(change, capsys, "--format", "sarif")
    assert code == 0
    results = json.loads(out)["runs"][0]["results"]
    by_path = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]: r for r in results}
    assert by_path["notes.py"]["message"] == {"text": SARIF_MESSAGE} and by_path["notes.py"]["ruleId"] == "[secret]"
    assert {BOLD_NAME, ANSI_NAME} <= set(by_path)  # JSON escapes the control character itself


def test_warnings_and_errors_on_stderr_are_one_line_each(change, capsys, tmp_path: Path):
    repo, patch, _ = change
    missing = tmp_path / "two\nlines\x1b[2J.sarif"
    capsys.readouterr()
    code = cli.main(["review", "--diff", str(patch), "--repo", str(repo.root), "--model", "base",
                     "--reviewers", "sarif", "--sarif", str(missing)])
    err = capsys.readouterr().err
    assert code == 2 and "\x1b" not in err
    lines = err.splitlines()
    assert lines and all(line.startswith(("warning: ", "error: ")) for line in lines), lines
    assert any("lines\\x1b[2J.sarif" in line for line in lines)
    code = cli.main(["review", "--diff", str(patch), "--out", str(tmp_path / "no\nsuch" / "out.txt")])
    err = capsys.readouterr().err
    assert code == 64 and len(err.splitlines()) == 1 and "no\\nsuch" in err
