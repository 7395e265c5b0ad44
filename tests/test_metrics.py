"""One definition of the severity figures, shared by training, recipes, the loop and benchmarks."""

from __future__ import annotations

import itertools
import random

import pytest

from bot.severity import LABELS
from training.evaluate import evaluate
from training.examples import Example
from training.export import severity_metrics as export_metrics
from training.metrics import concordance, expected_severity, severity_metrics


def _one_hot(label: str) -> dict[str, float]:
    return {level: float(level == label) for level in LABELS}


def _brute_concordance(gold, probs) -> float:
    rank = {label: 3 - i for i, label in enumerate(LABELS)}
    good = pairs = 0.0
    for (g1, p1), (g2, p2) in itertools.combinations(zip(gold, probs), 2):
        if g1 == g2:
            continue
        pairs += 1
        s1, s2 = expected_severity(p1), expected_severity(p2)
        hi, lo = (s1, s2) if rank[g1] > rank[g2] else (s2, s1)
        good += 1.0 if hi > lo else 0.5 if hi == lo else 0.0
    return good / pairs


def test_concordance_matches_the_pairwise_definition():
    rng = random.Random(3)
    gold = [rng.choice(LABELS) for _ in range(60)]
    probs = []
    for _ in gold:
        raw = [rng.random() for _ in LABELS]
        probs.append({label: x / sum(raw) for label, x in zip(LABELS, raw)})
    probs[5] = dict(probs[4])  # ties count half
    assert concordance(gold, probs) == pytest.approx(_brute_concordance(gold, probs))
    assert concordance(["critical", "trivial"], [_one_hot("critical"), _one_hot("trivial")]) == 1.0
    assert concordance(["critical", "trivial"], [_one_hot("trivial"), _one_hot("critical")]) == 0.0
    assert concordance(["minor", "minor"], [_one_hot("minor")] * 2) is None  # no pair to order


def test_every_caller_agrees_on_macro_f1_over_the_levels_present():
    # everything rated minor; gold has two levels: F1(minor) = 2/3, F1(trivial) = 0 -> macro-F1 1/3
    examples = [Example(code="", review=f"r{i}", label=label) for i, label in enumerate(["minor", "trivial"] * 2)]
    probs = [_one_hot("minor")] * 4
    direct = severity_metrics(examples, probs)
    assert direct["macro_f1"] == pytest.approx(1 / 3, abs=1e-4)
    assert export_metrics(examples, probs)["macro_f1"] == direct["macro_f1"]
    report = evaluate(probs, examples)
    assert report.macro_f1 == pytest.approx(direct["macro_f1"], abs=1e-4)
    assert report.accuracy == direct["accuracy"] == 0.5


def test_band_accuracy_uses_the_items_lenient_band():
    examples = [Example(code="", review="a", label="major", acceptable=("critical", "major")),
                Example(code="", review="b", label="trivial")]
    out = severity_metrics(examples, [_one_hot("critical"), _one_hot("minor")])
    assert out["accuracy"] == 0.0 and out["band_accuracy"] == 0.5
    assert out["concordance"] == 1.0  # critical-ish above minor-ish, as gold says
