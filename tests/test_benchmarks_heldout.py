"""The held-out benchmarks' own logic, without a model: the training items they rebuild, pylint's tiers, the
security share and the one-line skip without shared data."""

from __future__ import annotations

import random
from collections import Counter

from benchmarks import heldout, pylint_order
from training.examples import Example
from training.mixed import plan

TOOLS = ("ruff", "codeql", "clippy", "eslint")
LEVELS = ("critical", "major", "minor", "trivial")


def _sources() -> dict[str, list[Example]]:
    reviews = [Example(code="x = 1", review=f"comment {i} about naming", label=LEVELS[i % 4], source="crc-py@r",
                       id=f"crc-py-{i}") for i in range(24)]
    rules = [Example(code="", review=f"{tool} rule {i} text", label=LEVELS[i % 4], source=f"analysers:{tool}",
                     id=f"{tool}:R{i}:1", meta={"tool": tool, "rule": f"R{i}", "level": "warning",
                                                 "group": f"{tool}:R{i}"})
             for tool in TOOLS for i in range(30)]
    return {"train_reviews": reviews, "train_rules": rules}


def _manifest(command: str, items: list[Example]) -> dict:
    from collections import Counter

    from training.mixed import family

    return {"prompt_version": "sieve-severity-v4", "command": command,
            "data": {"train": len(items), "per_family": dict(Counter(family(e) for e in items))}}


def test_rebuilt_items_are_the_plan_of_the_manifest_command():
    sources = _sources()
    command = "python -m training.recipe --recipe default --out m --seed 0 --train-seed 3 --total 90 --limit 70"
    args = heldout.recipe_args({"command": command})
    assert (args.seed, args.train_seed, args.total, args.limit) == (0, 3, 90, 70)
    expected = random.Random(3).sample(plan(sources["train_reviews"], sources["train_rules"], total=90, seed=3), 70)
    rebuilt = heldout.training_items({"prompt_version": "sieve-severity-v4", "command": command}, sources, args)
    assert [(e.id, e.review, e.meta.get("origin"), e.weight) for e in rebuilt] == \
        [(e.id, e.review, e.meta.get("origin"), e.weight) for e in expected]
    assert "NOT" not in heldout.check_rebuilt(_manifest(command, expected), rebuilt, 0, verify_hash=False)
    other = plan(sources["train_reviews"], sources["train_rules"], total=90, seed=4)[:70]
    assert heldout.check_rebuilt(_manifest(command, other), rebuilt, 0, verify_hash=False).startswith("NOT")


def test_a_manifest_without_a_recipe_command_cannot_be_rebuilt():
    assert heldout.recipe_args({"command": "sieve train finetune --data x.jsonl"}) is None
    assert heldout.recipe_args({}) is None


def test_v3_items_are_the_review_data_without_analyser_fields():
    sources = _sources()
    sources["train_reviews"][0].meta.update({"tool": "sonar-python", "rule": "S1", "group": "sonar-python:S1"})
    args = heldout.recipe_args({"command": "python -m training.recipe --recipe default --out models/default"})
    items = heldout.training_items({"prompt_version": "sieve-severity-v3"}, sources, args)
    assert [e.id for e in items] == [e.id for e in sources["train_reviews"]]
    assert not any(key in items[0].meta for key in ("tool", "rule", "group"))


def test_pylint_categories_map_to_tiers_errors_first():
    assert [pylint_order.gold(c) for c in ("fatal", "error", "warning", "refactor", "convention", "info")] == \
        ["major", "major", "minor", "trivial", "trivial", None]


def test_pylint_sample_dedupes_caps_per_symbol_and_is_stable():
    messages = [{"type": "convention", "symbol": "missing-docstring", "message": f"Missing docstring {i % 30}",
                 "message-id": "C0116"} for i in range(90)]
    messages += [{"type": "info", "symbol": "locally-disabled", "message": "x", "message-id": "I0011"}]
    messages += [{"type": "error", "symbol": "no-member", "message": f"no member {i}", "message-id": "E1101"}
                 for i in range(3)]
    picked = pylint_order.sample(messages, per_symbol=5)
    assert Counter(m["symbol"] for m in picked) == {"missing-docstring": 5, "no-member": 3}
    assert len({m["message"] for m in picked}) == len(picked) == 8
    assert pylint_order.sample(list(reversed(messages)), per_symbol=5) == picked


def test_pylint_findings_carry_origin_one_way_and_none_the_other(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("import os\nx = os.nope\n", encoding="utf-8")
    message = {"type": "error", "symbol": "no-member", "message": "Module 'os' has no 'nope' member",
               "message-id": "E1101", "path": "mod.py", "absolute_path": str(source), "line": 2}
    sets = pylint_order.to_examples([message])
    shown, hidden = sets["with origin"][0], sets["no origin"][0]
    assert shown.review == "no-member Module 'os' has no 'nope' member" and shown.code == "x = os.nope"
    assert shown.meta["origin"] == "pylint E1101, level: error" and hidden.meta["origin"] == ""
    assert shown.label == hidden.label == "major"


def test_pylint_figures_order_errors_above_conventions():
    examples = [Example(code="", review=r, label=label) for r, label in
                (("e", "major"), ("w", "minor"), ("c", "trivial"), ("r", "trivial"))]
    probs = [{"critical": 0.1, "major": 0.2, "minor": 0.3, "trivial": 0.4},
             {"critical": 0.0, "major": 0.1, "minor": 0.8, "trivial": 0.1},
             {"critical": 0.0, "major": 0.0, "minor": 0.1, "trivial": 0.9},
             {"critical": 0.0, "major": 0.0, "minor": 0.9, "trivial": 0.1}]
    got = pylint_order.figures(examples, probs)
    # expected severities: error 1.0, warning 1.0, convention 0.1, refactor 0.9 -> the error outranks both C/R;
    # over three tiers the error-warning tie counts half: (4 + 0.5) / 5
    assert got["concordance_E_vs_CR"] == 1.0 and got["concordance_three_tiers"] == 0.9
    assert got["errors_minor_or_trivial"] == 1.0 and got["errors"] == 1


def test_security_share_counts_codeql_rules_from_severity_seven():
    def rule(level: str, tool: str = "codeql") -> Example:
        return Example(code="", review="r", label="critical", meta={"tool": tool, "level": level})

    items = [rule("security-severity 7.5"), rule("security-severity 9.8"), rule("security-severity 6.1"),
             rule("problem.severity error"), rule("security-severity 8.0", tool="eslint")]
    severe = {"critical": 0.7, "major": 0.1, "minor": 0.1, "trivial": 0.1}
    mild = {"critical": 0.1, "major": 0.1, "minor": 0.1, "trivial": 0.7}
    probs = [severe, mild, mild, mild, mild]
    got = heldout.security_share({"rules": items, "rules_no_origin": items}, {"rules": probs, "rules_no_origin": probs})
    assert got["rules"] == {"n": 2, "major_or_above": 0.5}


def test_benchmarks_skip_with_one_line_without_shared_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SIEVE_SHARED", str(tmp_path))
    assert heldout.main(["--model", "models/default"]) == 0
    assert pylint_order.main(["--model", "models/default"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("skipped: ") and "SIEVE_SHARED" in line for line in lines)
