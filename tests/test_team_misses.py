"""The team benchmark's bookkeeping, without the student: one reaction per comment, and misses named by entry."""

from __future__ import annotations

from pathlib import Path

from benchmarks import team, team_data
from bot import memory
from bot.findings import Anchor, Finding, Rating

POSTED = {"critical": 0.01, "major": 0.9, "minor": 0.05, "trivial": 0.04}


def item(rule: str, path: str, line: int, half: str = "react", review: str = "") -> team.Item:
    f = Finding(Anchor(path, line), review or f"{rule} message", "ruff", rule_id=rule)
    return team.Item(f, half, Rating(dict(POSTED), "major", "student", "p"))


def litestar() -> team_data.Team:
    return team_data.load_teams(["litestar"])[0]


def test_two_identical_findings_on_one_line_draw_one_reaction_per_maintainer():
    same = [item("B008", "pkg/mod.py", 7), item("B008", "pkg/mod.py", 7), item("B008", "pkg/other.py", 3)]
    rows = team.reactions(litestar(), same, seed=1, noise=0.0)
    assert len(rows) == 2 * len(team.MAINTAINERS)  # two comments, each reacted to once by each maintainer
    assert {(r["path"], r["line"]) for r in rows} == {("pkg/mod.py", 7), ("pkg/other.py", 3)}


def test_misses_name_the_entry_that_moved_a_wanted_finding(tmp_path: Path):
    t = litestar()  # F821 is wanted everywhere; PIE794 is turned off in tests/
    react = [item("F821", "src/a.py", 1), item("PIE794", "pkg/tests/test_a.py", 2)]
    rows = [team._row(t, react[0], user, -1, None) for user in team.MAINTAINERS]  # both 👎 a wanted rule
    mem = team.remember(rows, f"teams/{t.name}", tmp_path)
    held = [item("F821", "lib/b.py", 5, "heldout"), item("PIE794", "pkg/tests/test_b.py", 9, "heldout")]
    after = memory.adjust([it.finding for it in held], [it.rating for it in held], mem)
    found = team.misses(t, held, after)
    assert found["wanted_lost"] == {"F821 lib/b.py <- ruff F821": 1}
    assert found["unwanted_still_posted"] == {"PIE794 <- none": 1}  # nobody reacted to PIE794

