"""The team-preference benchmark's small setting, as CI runs it: real teams' ruff settings, ruff on real installed
code, the real default student, reactions imported into a real store, and the next review with team memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import team, team_data

pytestmark = pytest.mark.slow  # rates a few hundred findings with the real default student (≈ 1.5 min)


def test_labels_follow_each_teams_own_settings():
    by_name = {t.name: t for t in team_data.load_teams()}
    assert set(by_name) >= {"pytest", "litestar", "pydantic", "transformers", "fastapi"}
    litestar, pytest_team, transformers = by_name["litestar"], by_name["pytest"], by_name["transformers"]
    assert litestar.label("S101", "networkx/algorithms/tests/test_dag.py") == "unwanted"  # tests/** per-file
    assert litestar.label("S608", "networkx/readwrite/gml.py") == "wanted"
    assert pytest_team.label("D103", "rich/text.py") == "unwanted" and pytest_team.label("D200", "x.py") == "wanted"
    assert transformers.label("F401", "jinja2/__init__.py") == "unwanted"  # a file-name pattern
    assert transformers.label("F401", "jinja2/utils.py") == "wanted"
    assert transformers.label("ANN001", "x.py") == "none"  # never selected, never named: no opinion
    assert all(t.licence and t.version for t in by_name.values())


def test_small_run_meets_the_next_review_goals(tmp_path: Path, capsys):
    assert team.main(["--small", "--json", "--cache", str(tmp_path / "ratings.json")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["findings"] > 300 and len(result["teams"]) == 5
    assert not set(result["pool"]) & {"attrs", "scrapy", "pip", "pylint"}
    for t in result["teams"]:
        held, goals = t["heldout"], t["goals"]
        assert {"unwanted", "wanted", "security"} <= set(held) and t["reactions"] > 0
        assert goals["wanted_posted_not_fall"] and goals["upvoted_wanted_posted_ge_90pct"] is not False
        assert goals["security_below_major_by_one_account_0"] and goals["rules_silenced_by_one_account_0"]
        reacted = held.get("unwanted:reacted")
        if reacted:  # what the team 👎'd: gone from the next review
            assert reacted["after"] <= 0.05 * reacted["n"]
        assert held["unwanted"]["after"] <= held["unwanted"]["before"]
        assert t["memory_ms_per_finding"] < 5.0
