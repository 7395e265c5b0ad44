"""training.explain_data: the explanation teacher and its held-out split, on the shared vendor data and ruff."""

from __future__ import annotations

import dataclasses
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


def _rerate_by_words(triples):
    """A severity reader for the filter's tests: what a sentence says decides its level."""
    out = []
    for _code, text, origin in triples:
        assert origin == ""  # the sentence is re-rated alone, as the benchmark does
        lowered = text.lower()
        out.append("critical" if "remote" in lowered else "trivial" if "spacing" in lowered else "minor")
    return out


def test_teacher_sentences_read_as_another_severity_or_contradicting_it_are_dropped_and_counted():
    from training.explain_eval import consistency

    def item(n, severity, target):
        return Item(id=f"t:{n}", group=f"t:{n}", tool="t", rule=str(n), review="Loop may never end",
                    severity=severity, target=target)

    items = [item(1, "trivial", "The loop lets a remote caller hang the server for good."),  # 3 levels apart
             item(2, "critical", "The loop has odd spacing that slows every reader down."),  # 3 levels apart
             item(3, "minor", "The loop can spin forever and hang the program."),  # kept
             item(4, "trivial", "The loop can overflow the counter and hang the program."),  # words contradict
             item(5, "major", "The loop has odd spacing that slows every reader down."),  # 2 levels apart
             item(6, "major", "")]  # no sentence: nothing to rate
    kept, counts = explain_data.keep_consistent(items, _rerate_by_words, batch=2)
    assert [i.target != "" for i in kept] == [False, False, True, False, False, False]
    assert [i.id for i in kept] == [i.id for i in items] and kept[2] == items[2]
    assert counts == {"rated": 5, "dropped_contradicts": 1, "dropped_rerated_far": 3, "kept": 1, "replaced": 0}
    # the benchmark's consistency figure is the same rule: one of the five teacher sentences passes
    figures = consistency([i.target for i in items[:5]], [i.request() for i in items[:5]], _rerate_by_words)
    assert figures["consistent"] == 0.2 and figures["n"] == 5


def test_the_teacher_prefers_a_sentence_that_states_the_consequence():
    item = Item(id="t:1", group="t:r", tool="t", rule="r", review="PT021 Use `yield` instead of `addfinalizer`",
                severity="trivial", code="request.addfinalizer(close)",
                why="A `yield` fixture keeps setup and teardown together in one readable function. "
                    "A finalizer registered with `addfinalizer` after a failing setup step never runs, which can "
                    "leak open resources into later tests.")
    assert "never runs" in explain_data.compose(item)
    definition = Item(id="t:2", group="t:s", tool="t", rule="s", review="Manual swap of two variables",
                      severity="trivial", why="A temporary variable is a common way to swap values without mistakes. "
                      "A manual swap can lose one of the two values when written in the wrong order.")
    assert explain_data.compose(definition).startswith("A manual swap can lose")


def test_a_finding_shown_its_rules_rationale_is_taught_a_sentence_from_it(items):
    shown = [i for i in items if i.target and i.origin]
    hidden = [i for i in items if i.target and not i.origin]
    assert shown and hidden
    for item in shown:
        assert item.request().rationale == item.shown_rule != ""
        # one of the shown sentences ends the target (a lead naming the finding's own subject may come first)
        assert any(norm(item.target).endswith(norm(s)) for s in explain.sentences(item.shown_rule)), item.id
    # an LLM-like finding (no origin) reads no rule and may be taught from all of the vendor's prose
    assert all(i.request().rationale == "" for i in hidden)
    assert any(not any(norm(i.target).endswith(norm(s)) for s in explain.sentences(explain.rule_text(i.why, i.what)))
               for i in hidden)


def norm(sentence: str) -> str:
    return sentence.lower().rstrip(".:;,!? ")


def test_copying_tells_a_copied_rationale_from_a_sentence_about_this_finding():
    from training.explain_eval import copying

    rule = "Starting a subprocess with a shell can allow attackers to execute arbitrary shell commands."
    request = explain.Request(review="S602 `subprocess` call with `shell=True` identified", severity="critical",
                              code="+subprocess.run(f'tar {name}', shell=True)", origin="ruff S602", rationale=rule)
    copied = "Starting a subprocess with a shell can allow attackers to execute arbitrary shell commands."
    bound = "Passing `name` into a shell command lets an attacker execute arbitrary shell commands."
    figures = copying([copied, bound, ""], [request, request, request])
    assert figures == {"n": 2, "verbatim": 0.5, "binds": 0.5}
    # findings shown no rule are not counted
    assert copying([copied], [explain.Request(review=request.review, severity="critical")])["n"] == 0


def test_a_sentence_read_as_another_severity_gives_way_to_the_teachers_next_one():
    why = ("A remote caller can make the loop hang the server for good, as a denial of service. "
           "A loop that never ends can hang the program at this point.")
    item = Item(id="t:1", group="t:r", tool="t", rule="r", review="Loop may never end", severity="minor", why=why)
    first, second = explain_data.ranked(item)[:2]
    assert "remote caller" in first
    taught = dataclasses.replace(item, target=first)
    kept, counts = explain_data.keep_consistent([taught], _rerate_by_words)
    assert kept[0].target == second  # read as minor, where the first read as critical
    assert counts == {"rated": 1, "dropped_contradicts": 0, "dropped_rerated_far": 0, "kept": 1, "replaced": 1}
    kept, counts = explain_data.keep_consistent([taught], _rerate_by_words, tries=1)
    assert kept[0].target == "" and counts["dropped_rerated_far"] == 1 and counts["replaced"] == 0


def test_severity_contrasts_teach_another_reason_only_where_the_rating_changes_which_reason_fits():
    why = ("A remote caller can make the loop hang the server for good, as a denial of service. "
           "A loop that never ends can hang the program at this point.")
    # read as critical ("remote") and as minor: the finding rated minor is taught the second sentence already
    item = Item(id="t:1", group="t:r", tool="t", rule="r", review="Loop may never end", severity="minor", why=why,
                target=explain_data.ranked(
                    Item(id="t:1", group="t:r", tool="t", rule="r", review="Loop may never end",
                         severity="minor", why=why))[1])
    # both sentences read alike (minor): no rating makes one fit where the other does not
    alike = dataclasses.replace(item, id="t:2", group="t:s", why=(
        "A loop that never ends can hang the program at this point. "
        "The loop can spin forever and hang the program."))
    untaught = dataclasses.replace(item, id="t:3", target="")
    rated = []

    def rerate(triples):
        rated.extend(triples)
        return _rerate_by_words(triples)

    out, counts = explain_data.contrasts([item, alike, untaught], rerate, batch=1)
    # rated critical or major, the teacher's first sentence ("remote caller …", read as critical) fits, and it
    # does not fit minor: both copies are taught it. Rated trivial, the sentence that fits (read as minor) fits
    # minor too, so it teaches nothing the finding's own item does not
    assert [(i.id, i.severity) for i in out] == [("t:1@critical", "critical"), ("t:1@major", "major")]
    assert all("remote caller" in i.target and i.review == item.review and i.why == item.why for i in out)
    assert counts["contrasts"] == 2 and counts["findings_with_contrast"] == 1 and counts["findings"] == 2
    assert rated and all(origin == "" for _, _, origin in rated)  # read alone, as the benchmark reads them


def test_the_consistency_ceiling_counts_findings_whose_vendor_prose_has_a_sentence_that_reads_as_the_rating():
    from training.explain_eval import ceiling

    mixed = ("A remote caller can make the loop hang the server for good, as a denial of service. "
             "A loop that never ends can hang the program at this point.")
    only_remote = "A remote caller can make the loop hang the server for good, as a denial of service."
    items = [Item(id="t:1", group="t:a", tool="t", rule="a", review="Loop may never end", severity="minor",
                  why=mixed),  # second sentence reads as minor; the teacher ranks the first one first
             Item(id="t:2", group="t:b", tool="t", rule="b", review="Loop may never end", severity="trivial",
                  why=only_remote)]  # read as critical, three levels from trivial
    figures = ceiling(items, _rerate_by_words)
    assert figures["n"] == 2 and figures["any_vendor_sentence"] == 0.5
    assert figures["with_teacher_sentence"] == 2 and figures["teacher_first"] == 0.0
    assert figures["any_teacher_sentence"] == 0.5
