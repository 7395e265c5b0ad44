"""The README is a user guide a reader can scan, and the docs it points to exist and say what the code does.

README: at most 200 lines; headings for install, GitHub, GitLab, configuration and how it learns; the two
commands exactly; the precedence of settings stated once. Links between the pages resolve (the feedback and memory
pages may still be on their way). docs/configuration.md lists every setting with the default bot/config.py has.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import fields
from pathlib import Path

from bot.config import Config
from bot.severity import Severity

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "models" / "README.md"]
PENDING = {"docs/memory.md", "docs/feedback.md"}  # written alongside; linked before they land


def test_the_readme_is_short_and_its_headings_lead_a_reader() -> None:
    assert len(README.splitlines()) <= 200
    headings = [line.lstrip("#").strip().lower() for line in README.splitlines() if line.startswith("## ")]
    for wanted in ("install", "github", "gitlab", "configuration", "how it learns", "privacy and cost"):
        assert any(wanted in heading for heading in headings), (wanted, headings)


def test_the_two_commands_are_exactly_make_demo_and_make_test() -> None:
    block = re.search(r"## Try it\n\n```bash\n(.*?)```", README, re.DOTALL).group(1)
    assert [line.split("#")[0].strip() for line in block.splitlines()] == ["make demo", "make test"]
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == "make test"


def test_precedence_is_stated_once_in_the_readme() -> None:
    line = "flags (and the Action's non-empty inputs) > `SIEVE_*` environment variables >\n`.sieve.toml` > Sieve's defaults"
    assert README.count(line) == 1
    assert README.count("Precedence") == 1


def test_how_it_learns_points_to_feedback_and_memory() -> None:
    section = README.split("## How it learns", 1)[1].split("\n## ", 1)[0]
    assert "(docs/feedback.md)" in section and "(docs/memory.md)" in section


def test_every_link_between_the_pages_resolves() -> None:
    missing = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            resolved = (page.parent / target).resolve()
            if not resolved.exists() and str(resolved.relative_to(ROOT)) not in PENDING:
                missing.append(f"{page.relative_to(ROOT)} → {target}")
    assert not missing, missing


def _as_toml(value: object) -> object:
    if isinstance(value, Severity):
        return value.label
    if value is None:
        return "none"
    return list(value) if isinstance(value, tuple) else value


def test_the_configuration_page_lists_every_setting_with_its_default() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", text, re.MULTILINE))
    defaults = Config()
    for item in fields(Config):
        if item.name == "tables":
            continue
        assert item.name in rows, f"docs/configuration.md lacks {item.name}"
        written = tomllib.loads(f"x = {rows[item.name]}")["x"]
        assert written == _as_toml(getattr(defaults, item.name)), (item.name, written)
