"""training.explain_data: the explanation teacher and its held-out split, on the shared vendor data and ruff."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from bot import explain
from bot.reviewers.origin import ruff_catalogue
from training import explain_data
from training.explain_data import Item
from training.explain_eval import check_rates, overlap, pick, template

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "analysers"
RUFF = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))


@pytest.fixture(scope="module")
def items() -> list[Item]:
    if not (SHARED / "rationale.jsonl").is_file():
        pytest.skip("../shared/data/analysers is not here")
    return explain_data.build(ruff_catalogue(RUFF).values(), SHARED)


def test_every_target_passes_the_checks_the_served_sentence_must_pass(items):
    with_target = [item for item in items if item.target]
    assert len(with_target) > 3000
    for item in with_target:
        assert explain.problem(item.target, item.request()) == "", (item.id, item.target)
        assert len(item.target.split()) <= explain_data.MAX_TARGET_WORDS + 4


def test_the_held_out_split_is_by_rule_and_stable(items):
    train, test = explain_data.split(items)
    assert {i.group for i in train}.isdisjoint({i.group for i in test})
    share = len({i.group for i in test}) / len({i.group for i in items})
    assert 0.10 < share < 0.20
    _, again_test = explain_data.split(list(reversed(items)))
    assert {i.id for i in again_test} == {i.id for i in test}
    assert {i.tool for i in test} >= {"codeql", "clippy", "eslint", "staticcheck", "ruff"}


def test_a_finding_that_names_something_leads_its_sentence(items):
    f401 = [i for i in items if i.rule == "F401" and i.target]
    assert f401, "ruff's F401 should give a training sentence"
    for item in f401:
        name = explain.identifiers(item.review)[0]
        assert item.target.startswith(f"`{name}` imported but unused:")
    assert explain_data.subject("F401 `os` imported but unused", "F401") == "`os` imported but unused"
    assert explain_data.subject("Futile conditional with an empty branch", "x") == ""


def test_a_rule_description_is_not_taken_for_a_reason():
    item = Item(id="t:1", group="t:r", tool="t", rule="r", review="Loop may never end", severity="minor",
                what="Checks for loops whose condition never changes.",
                why="Such a loop can run forever and hang the program.")
    assert explain_data.compose(item) == "Such a loop can run forever and hang the program."
    only_description = Item(id="t:2", group="t:q", tool="t", rule="q", review="x", severity="minor",
                            what="Checks for loops whose condition never changes.", why="")
    assert explain_data.compose(only_description) == ""


def test_ruff_placeholders_get_names_and_prose_slots_are_dropped():
    rule = {"code": "F821", "category": "correctness", "preview": False, "message_formats": ["Undefined name `{name}`. {tip}"],
            "explanation": "## What it does\nChecks for undefined names.\n\n## Why is this bad?\n"
                           "An undefined name is likely to raise `NameError` at runtime.\n"}
    (item,) = explain_data.ruff_items([rule])
    assert "{" not in item.review and item.review.startswith("F821 Undefined name `")
    assert item.severity == "major" and item.group == "ruff:F821"


def test_offline_scores_rank_an_on_topic_sentence_above_a_template(items):
    _, test = explain_data.split(items)
    chosen = pick(test, 30, seed=0)
    assert len(chosen) == 30 and len({i.group for i in chosen}) == 30
    assert pick(test, 30, seed=0) == chosen
    refs = [i.rationale for i in chosen]
    vendor_words = [" ".join(r.split()[:20]) for r in refs]
    assert overlap(vendor_words, refs)["rougeL_f"] > overlap([template(i) for i in chosen], refs)["rougeL_f"]
    assert overlap([""] * 3, refs[:3]) == {"rouge1_f": 0.0, "rougeL_f": 0.0}
    rates = check_rates(["", "1st, but not the 1st, but not the 1st."], [i.request() for i in chosen[:2]])
    assert rates["empty"] == 0.5 and rates["repetitive"] == 0.5 and rates["shown"] == 0.0
