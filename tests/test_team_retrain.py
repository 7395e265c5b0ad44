"""The retrain arm's measures (benchmarks/team_retrain.py) on real teams' settings: which never-reacted findings
count as "dropped like a 👎-ed rule", and what moving toward the team means. The arm itself trains a model for
minutes per team, so it runs only on request (``python -m benchmarks.team --retrain``), never in CI."""

from __future__ import annotations

from benchmarks import team, team_data
from benchmarks.team_retrain import ARMS, count, drop_entries, generalisation
from bot.findings import Anchor, Finding, Rating


def teams() -> dict[str, team_data.Team]:
    return {t.name: t for t in team_data.load_teams(["pytest", "litestar"])}


def item(rule: str, path: str, minor_or_more: float, half: str = "heldout") -> team.Item:
    probs = {"critical": 0.0, "major": minor_or_more / 2, "minor": minor_or_more / 2, "trivial": 1 - minor_or_more}
    return team.Item(Finding(Anchor(path, 1), f"{rule} message", "ruff", code="", rule_id=rule, level=""), half,
                     rating(probs))


def rating(probs: dict[str, float]) -> Rating:
    return Rating(probs, max(probs, key=probs.__getitem__), "m", "")


def test_a_rule_is_dropped_by_its_name_pattern_and_the_entry_that_names_it():
    pytest_team, litestar = teams()["pytest"], teams()["litestar"]
    assert drop_entries(pytest_team, "D401", "rich/text.py") == {("*", "D")}
    assert drop_entries(pytest_team, "D200", "rich/text.py") == set()  # selected, not ignored
    in_tests = drop_entries(litestar, "S101", "networkx/algorithms/tests/test_dag.py")
    assert in_tests and all(letters == "S" and scope != "*" for scope, letters in in_tests)
    assert drop_entries(litestar, "S101", "networkx/readwrite/gml.py") != in_tests


def test_generalisation_counts_only_never_reacted_rules_dropped_the_same_way():
    pytest_team = teams()["pytest"]
    rows = [{"rule": "D401", "path": "rich/a.py", "reaction": "-1"}, {"rule": "D200", "path": "rich/a.py",
                                                                        "reaction": "+1"}]
    held = [item("D401", "rich/b.py", 0.9),  # reacted to: not a generalisation
            item("D102", "rich/b.py", 0.9),  # never reacted, ignored like D401: counts, moves down
            item("D105", "rich/c.py", 0.9),  # counts, does not move
            item("D403", "rich/c.py", 0.9),  # wanted by pytest: not counted
            item("PLR2004", "rich/c.py", 0.9)]  # ignored, but no PLR rule got a 👎: not counted
    after = [rating(h.rating.probabilities) for h in held]
    after[1] = rating({"critical": 0.0, "major": 0.05, "minor": 0.05, "trivial": 0.9})
    g = generalisation(pytest_team, held, after, rows)
    assert (g["findings"], g["rules"], g["moved_toward_team"], g["share"], g["moved_away"]) == (2, 2, 1, 0.5, 0)
    assert g["posted_before"] == 2 and g["posted_after"] == 1 and g["goal_ge_50pct"] is True
    assert (g["control"]["findings"], g["control"]["moved_down"]) == (1, 0)  # D403: wanted, D like the 👎-ed D401
    assert g["mean_logodds_shift"] == {"dropped": -2.197, "control": 0.0}  # (log 1/9 − log 9) / 2 findings
    # both are dropped by pytest's rule-wide `ignore`, as D401 is: only their names tell them from D403
    assert g["by_entry"] == {"ignore": {"findings": 2, "moved_toward_team": 1},
                             "per_file": {"findings": 0, "moved_toward_team": 0}}
    after[3] = after[1]  # a round that lowers every D rule moves the control too, and the measure shows it
    g = generalisation(pytest_team, held, after, rows)
    assert (g["control"]["findings"], g["control"]["moved_down"], g["control"]["share"]) == (1, 1, 1.0)


def test_every_arm_is_counted_on_the_same_findings():
    pytest_team = teams()["pytest"]
    held = [item("D102", "rich/b.py", 0.9), item("D200", "rich/b.py", 0.2), item("S102", "rich/c.py", 0.9)]
    low = rating({"critical": 0.0, "major": 0.0, "minor": 0.1, "trivial": 0.9})
    arms = {"before": [h.rating for h in held], "memory": [low, held[1].rating, held[2].rating],
            "retrain": [low, low, low], "both": [low, low, held[2].rating]}
    counted = count(pytest_team, held, arms, reacted={"D102"})
    posted = {k: v for k, v in counted["unwanted"].items() if not k.startswith("mass_")}
    assert posted == {"n": 2, "before": 2, "memory": 1, "retrain": 0, "both": 1}
    assert counted["unwanted"]["mass_before"] == 0.9 and counted["unwanted"]["mass_retrain"] == 0.1
    assert counted["unwanted:reacted"]["n"] == 1 and counted["wanted"]["before"] == 0
    assert {k: counted["security"][k] for k in ARMS} == {"before": 1, "memory": 1, "retrain": 0, "both": 1}


def test_the_decomposition_pairs_each_adapter_with_the_other_prior(tmp_path) -> None:
    """``--decompose``: "adapter alone" is the round's adapter with the default's prior, "prior alone" the default's
    adapter with the round's prior — byte for byte, and each manifest names the prior it now carries."""
    import json

    from benchmarks.team_retrain import halves

    folders = {}
    for name in ("default", "run/model"):
        folder = tmp_path / name
        folder.mkdir(parents=True)
        (folder / "adapter.gguf").write_bytes(f"adapter of {name}".encode())
        (folder / "lexical.json").write_text(f'{{"prior": "{name}"}}')
        (folder / "manifest.json").write_text(json.dumps({
            "name": name, "adapter": {"file": "adapter.gguf"},
            "lexical": {"file": "lexical.json", "sha256": f"sha of {name}", "weight": 0.5}}))
        folders[name] = folder
    made = halves(folders["run/model"], folders["default"])
    assert set(made) == {"adapter alone", "prior alone"}
    for arm, adapter_of, prior_of in (("adapter alone", "run/model", "default"), ("prior alone", "default", "run/model")):
        folder = made[arm]
        assert (folder / "adapter.gguf").read_bytes() == f"adapter of {adapter_of}".encode()
        assert json.loads((folder / "lexical.json").read_text()) == {"prior": prior_of}
        assert json.loads((folder / "manifest.json").read_text())["lexical"]["sha256"] == f"sha of {prior_of}"
    assert halves(folders["run/model"], folders["default"]) == made  # made once, then reused


def test_generalisation_tells_a_folder_entry_from_a_rule_wide_one():
    litestar = teams()["litestar"]
    tests_path = "networkx/algorithms/tests/test_dag.py"
    rows = [{"rule": "S101", "path": tests_path, "reaction": "-1"}]
    s_in_tests = [rule for rule in ("S105", "S106", "S108", "S311", "S603", "S607")
                  if drop_entries(litestar, rule, tests_path) & drop_entries(litestar, "S101", tests_path)
                  and not drop_entries(litestar, rule, "networkx/readwrite/gml.py")]
    assert s_in_tests, "litestar's settings drop some other S rule in tests/ only"
    held = [item(s_in_tests[0], "networkx/algorithms/tests/test_cycles.py", 0.9)]
    low = rating({"critical": 0.0, "major": 0.0, "minor": 0.1, "trivial": 0.9})
    g = generalisation(litestar, held, [low], rows)
    assert g["findings"] == 1
    assert g["by_entry"] == {"ignore": {"findings": 0, "moved_toward_team": 0},
                             "per_file": {"findings": 1, "moved_toward_team": 1}}
