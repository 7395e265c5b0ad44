"""Exams (balance, held-out guard, round trip) and curricula (merge, dedupe, weights, feedback)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from bot.errors import TrainingError
from bot.severity import LABELS
from training.curriculum import (
    CurriculumConfig,
    build_curriculum,
    feedback_example,
    load_feedback,
    load_labeled,
    weighted_sample,
)
from training.exam import Exam, assert_no_leak, exclude, item_key, split_heldout, stratified_sample
from training.examples import Example


def pool(per_label: dict[str, int]) -> list[Example]:
    items = []
    for label, count in per_label.items():
        for i in range(count):
            items.append(Example(code=f"def f{i}():\n    return {label}_{i}", review=f"{label} issue number {i}",
                                 label=label, id=f"{label}-{i}", source="github.com/eth-sri/sven@x:y"))
    return items


def test_item_key_ignores_whitespace_and_case_but_not_content() -> None:
    a = Example(code="x = 1\n", review="Missing check", label="minor")
    b = Example(code="x  =  1", review="missing check ", label="major", id="other")
    c = Example(code="x = 2", review="missing check", label="minor")
    assert item_key(a) == item_key(b) != item_key(c)


def test_stratified_sample_is_balanced_seeded_and_fills_from_other_labels() -> None:
    items = pool({"critical": 30, "major": 30, "minor": 30, "trivial": 30})
    exam = stratified_sample(items, 20, seed=3)
    assert Counter(e.label for e in exam) == {label: 5 for label in LABELS}
    assert [e.id for e in exam] == [e.id for e in stratified_sample(items, 20, seed=3)]
    assert [e.id for e in exam] != [e.id for e in stratified_sample(items, 20, seed=4)]
    scarce = stratified_sample(pool({"critical": 2, "major": 30, "minor": 30, "trivial": 30}), 20, seed=0)
    counts = Counter(e.label for e in scarce)
    assert len(scarce) == 20 and counts["critical"] == 2 and min(counts["major"], counts["minor"]) >= 5


def test_heldout_split_excludes_duplicates_and_leaks_are_refused(tmp_path) -> None:
    items = pool({"critical": 10, "major": 10, "minor": 10, "trivial": 10})
    twin = Example(code=items[0].code + "  ", review=items[0].review.upper(), label=items[0].label, id="twin")
    heldout, rest = split_heldout(items + [twin], 8, seed=0)
    assert heldout.kind == "heldout" and len(heldout) == 8
    assert not heldout.item_keys() & {item_key(e) for e in rest}
    if item_key(items[0]) in heldout.item_keys():
        assert all(e.id != "twin" for e in rest)
    assert_no_leak(rest, heldout)
    with pytest.raises(TrainingError, match="held-out exam item"):
        assert_no_leak(rest + [heldout.items[0]], heldout)
    # round trip keeps items and metadata
    path = heldout.save(tmp_path / "heldout.json")
    again = Exam.load(path)
    assert again.kind == "heldout" and again.item_keys() == heldout.item_keys()
    assert exclude(items, again) == [e for e in items if item_key(e) not in heldout.item_keys()]


def test_exam_load_reports_bad_file(tmp_path) -> None:
    bad = tmp_path / "exam.json"
    bad.write_text("{not json")
    with pytest.raises(TrainingError, match="cannot read exam"):
        Exam.load(bad)


def test_curriculum_merges_dedupes_weights_and_never_includes_heldout() -> None:
    items = pool({"critical": 6, "major": 6, "minor": 6, "trivial": 6})
    heldout = Exam(items=items[:2], kind="heldout")
    feedback = [Example(code=items[3].code, review=items[3].review, label="major", id="feedback-1", weight=1.5)]
    teacher = items[2:12] + [items[0]]  # one held-out item sneaks in
    previous = items[10:20]  # overlaps the teacher's items 10, 11
    cur = build_curriculum(teacher=teacher, feedback=feedback, previous=previous, weak_areas=["level:major"],
                           heldout=heldout, config=CurriculumConfig(weak_lambda=3.0))
    stats = cur.stats
    assert stats["heldout_dropped"] == 1 and stats["duplicates"] == 3  # items 3 (feedback wins), 10, 11
    assert stats["feedback"] == 1 and stats["teacher"] == 9 and stats["previous"] == 8
    assert not heldout.item_keys() & {item_key(e) for e in cur.examples}
    by_key = {item_key(e): e for e in cur.examples}
    assert by_key[item_key(items[3])].label == "major"  # the maintainer's correction won over the teacher's label
    assert sum(e.weight for e in cur.examples) / len(cur.examples) == pytest.approx(1.0, abs=1e-4)
    majors = [e.weight for e in cur.examples if e.label == "major" and e.meta["origin"] == "teacher"]
    others = [e.weight for e in cur.examples if e.label == "critical" and e.meta["origin"] == "teacher"]
    assert majors and others and min(majors) == pytest.approx(3.0 * max(others))


def test_feedback_records_confirmations_rejections_and_trust(tmp_path) -> None:
    base = {"code": "@@ -1 +1 @@\n+eval(x)", "review": "eval on user input", "acceptable_labels": ["critical"],
            "lang": "py", "source": "https://github.com/o/r/pull/1#discussion_r1", "predicted": "critical"}
    rows = [
        {**base, "id": "feedback-1", "label": "critical", "vote": 1, "trust": "trusted"},
        {**base, "id": "feedback-2", "review": "typo", "label": "minor", "vote": -1, "trust": "trusted",
         "predicted": "minor", "probabilities": {"critical": 0.1, "major": 0.1, "minor": 0.6, "trivial": 0.2},
         "acceptable_labels": ["critical", "major", "trivial"]},
        {**base, "id": "feedback-3", "review": "nit", "label": "trivial", "vote": 1, "trust": "untrusted"},
    ]
    path = tmp_path / "feedback.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = load_feedback(path)
    assert [e.id for e in examples] == ["feedback-1", "feedback-2"]  # untrusted dropped by default
    confirmed, rejected = examples
    assert confirmed.label == "critical" and confirmed.soft is None
    assert rejected.soft["minor"] == 0.0 and rejected.label == "trivial"  # rejected level gets no mass
    assert rejected.weight < confirmed.weight
    untrusted = feedback_example(rows[2], CurriculumConfig(include_untrusted=True))
    assert untrusted is not None and untrusted.weight < confirmed.weight
    with pytest.raises(TrainingError, match="no feedback export"):
        load_feedback(tmp_path / "missing.jsonl")
    # as a teacher's labeled data: a bare rejection cannot grade an answer, so only the confirmation is kept
    assert [e.id for e in load_labeled(path)] == ["feedback-1"]


def test_weighted_sample_prefers_heavy_items() -> None:
    items = pool({"critical": 50, "trivial": 50})
    weights = [10.0 if e.label == "critical" else 1.0 for e in items]
    picked = weighted_sample(items, weights, 20, seed=0)
    assert len({e.id for e in picked}) == 20
    assert sum(e.label == "critical" for e in picked) >= 14


def test_balancing_weights_up_the_rows_that_ask_for_less_until_both_sides_weigh_the_same() -> None:
    from training.curriculum import asks_lower, balance_feedback

    def row(i: int, vote: int, correction: str | None = None) -> dict:
        return {"id": f"f{i}", "code": "", "review": f"finding {i}", "label": correction or "major", "vote": vote,
                "predicted": "major", "correction": correction, "trust": "trusted"}

    rows = [row(i, 1) for i in range(3)] + [row(6, -1), row(7, -1, "trivial"), row(8, 1, "critical")]
    examples = [feedback_example(r, CurriculumConfig()) for r in rows]
    assert [asks_lower(e) for e in examples] == [False] * 3 + [True, True, False]  # the raise is not "lower"
    up = sum(e.weight for e in examples if not asks_lower(e))
    report = balance_feedback(examples)
    assert sum(e.weight for e in examples if asks_lower(e)) == pytest.approx(up) and report["factor"] > 1
    few = [feedback_example(r, CurriculumConfig()) for r in [row(i, 1) for i in range(40)] + [row(40, -1)]]
    assert balance_feedback(few)["factor"] == 4.0  # capped: one 👎 does not outweigh forty 👍
    same = [feedback_example(r, CurriculumConfig()) for r in [row(0, 1), row(1, -1, "trivial"), row(2, -1, "minor")]]
    before = [e.weight for e in same]
    assert balance_feedback(same)["factor"] == 1.0 and [e.weight for e in same] == before  # never weighted down
