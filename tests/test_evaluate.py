"""Evaluation figures on hand-computed cases, the report's renderings, and the baselines."""

from __future__ import annotations

import json

import pytest

from bot.errors import TrainingError
from bot.findings import Rating
from training.baselines import ContextualCalibration, MajorityBaseline, TfidfBaseline, cross_fit_soft_labels
from training.evaluate import calibration, evaluate, save_pngs, source_group
from training.examples import Example, load_jsonl, severity_split


def ex(label: str, source: str = "", acceptable: tuple[str, ...] = (), review: str = "r") -> Example:
    return Example(code="x = 1", review=review, label=label, source=source, acceptable=acceptable)


def test_hand_computed_accuracy_band_f1_and_confusion() -> None:
    # gold:      critical critical major minor trivial trivial
    # predicted: critical major    major trivial trivial minor
    gold = [ex("critical"), ex("critical", acceptable=("critical", "major")), ex("major"),
            ex("minor", acceptable=("minor", "trivial")), ex("trivial"), ex("trivial")]
    predicted = ["critical", "major", "major", "trivial", "trivial", "minor"]
    report = evaluate(predicted, gold)
    assert report.n == 6
    assert report.accuracy == pytest.approx(3 / 6)
    # band: rows 2 (major in band) and 4 (trivial in band) count too → 5/6
    assert report.band_accuracy == pytest.approx(5 / 6)
    assert report.confusion == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 1]]
    # critical P=1 R=.5 F1=2/3; major P=.5 R=1 F1=2/3; minor P=0 R=0 F1=0; trivial P=.5 R=.5 F1=.5
    assert report.per_level["critical"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2,
                                                         "predicted": 1})
    assert report.per_level["major"]["f1"] == pytest.approx(2 / 3)
    assert report.per_level["minor"]["f1"] == 0.0
    assert report.per_level["trivial"]["f1"] == pytest.approx(0.5)
    assert report.macro_f1 == pytest.approx((2 / 3 + 2 / 3 + 0 + 0.5) / 4)
    assert report.ece is None  # bare labels carry no confidence


def test_calibration_figures_from_probabilities() -> None:
    gold = ["critical", "minor"]
    probs = [{"critical": 0.9, "major": 0.1, "minor": 0.0, "trivial": 0.0},   # right at 0.9
             {"critical": 0.0, "major": 0.0, "minor": 0.3, "trivial": 0.7}]   # wrong at 0.7
    mean_conf, ece = calibration(gold, probs)
    assert mean_conf == pytest.approx(0.8)
    assert ece == pytest.approx(0.5 * abs(1 - 0.9) + 0.5 * abs(0 - 0.7))
    ratings = [Rating(probabilities=p, severity=max(p, key=p.get), model_id="m1", prompt_version="v") for p in probs]
    report = evaluate(ratings, [ex(g) for g in gold])
    assert report.model_id == "m1" and report.ece == pytest.approx(ece)


def test_per_source_groups_by_dataset_prefix() -> None:
    crc = "github.com/busraicoz/crc-py-dataset@2a5c:data/manual/manual_labeled_data.json"
    sonar = "github.com/SonarSource/sonar-python@cbf9:python-checks/x.py (rule S1)"
    sven = "github.com/eth-sri/sven@e844:data_train_val/train/cwe-089.jsonl"
    assert [source_group(s) for s in (crc, sonar, sven)] == ["crc-py", "sonar-python", "sven"]
    report = evaluate(["trivial", "minor", "critical"], [ex("trivial", crc), ex("trivial", sonar), ex("critical", sven)])
    assert report.per_source["crc-py"]["accuracy"] == 1.0
    assert report.per_source["sonar-python"]["accuracy"] == 0.0
    assert report.per_source["sven"]["n"] == 1


def test_renderings_and_png(tmp_path) -> None:
    gold = [ex("critical"), ex("trivial"), ex("minor")]
    probs = [{"critical": 0.6, "major": 0.2, "minor": 0.1, "trivial": 0.1},
             {"critical": 0.1, "major": 0.1, "minor": 0.2, "trivial": 0.6},
             {"critical": 0.1, "major": 0.5, "minor": 0.3, "trivial": 0.1}]
    report = evaluate(probs, gold, model_id="demo")
    data = json.loads(report.to_json())
    assert {"n", "accuracy", "band_accuracy", "macro_f1", "confusion", "per_source"} <= set(data)
    assert data["labels"] == ["critical", "major", "minor", "trivial"]
    text = report.to_text()
    assert "macro-F1" in text and "confusion" in text and "ECE" in text
    written = save_pngs(report, tmp_path, gold=[e.label for e in gold], probs=probs, stem="demo")
    assert [p.name for p in written] == ["demo-confusion.png", "demo-reliability.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(TrainingError, match="2 predictions for 1 examples"):
        evaluate(["minor", "major"], [ex("minor")])
    with pytest.raises(TrainingError, match="not a severity level"):
        evaluate(["blocker"], [ex("minor")])
    with pytest.raises(TrainingError, match="no examples"):
        evaluate([], [])


def test_contextual_calibration_divides_out_the_prior() -> None:
    cc = ContextualCalibration(prior={"critical": 0.7, "major": 0.1, "minor": 0.1, "trivial": 0.1})
    out = cc.apply({"critical": 0.55, "major": 0.15, "minor": 0.15, "trivial": 0.15})
    # 0.55/0.7 = .786 vs 0.15/0.1 = 1.5: the flat-looking remainder now wins
    assert max(out, key=out.get) != "critical"
    assert sum(out.values()) == pytest.approx(1.0)


def test_majority_baseline() -> None:
    train = [ex("trivial"), ex("trivial"), ex("major")]
    probs = MajorityBaseline().fit(train).predict_proba([ex("minor")])
    assert probs == [{"critical": 0.0, "major": 0.0, "minor": 0.0, "trivial": 1.0}]


@pytest.fixture(scope="module")
def shared() -> tuple[list[Example], list[Example]]:
    if not severity_split("train").is_file():
        pytest.skip("shared severity data (../shared/data/severity) is not present")
    return load_jsonl(severity_split("train")), load_jsonl(severity_split("dev"))


def test_tfidf_beats_majority_on_dev_and_soft_labels_are_out_of_fold(shared) -> None:
    train, dev = shared
    majority = evaluate(MajorityBaseline().fit(train).predict_proba(dev), dev)
    tfidf = evaluate(TfidfBaseline().fit(train).predict_proba(dev), dev)
    assert tfidf.macro_f1 > majority.macro_f1 + 0.3
    assert tfidf.accuracy > 0.6
    subset = train[:200]
    soft = cross_fit_soft_labels(subset, folds=4, seed=1)
    assert all(sum(p.values()) == pytest.approx(1.0) for p in soft)
    # out-of-fold: the model never saw the item, so it is not (near) certain of every gold label
    assert sum(p[e.label] > 0.99 for p, e in zip(soft, subset)) < len(subset) // 2


@pytest.mark.slow
def test_cli_evaluate_through_the_serving_rater(shared, capsys, tmp_path) -> None:
    from training.cli import main

    assert main(["evaluate", "--data", "dev", "--model", "smollm2", "--limit", "6", "--format", "json",
                 "--png", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n"] == 6 and data["model_id"] == "smollm2-base" and len(data["confusion"]) == 4
    assert 0.0 <= data["accuracy"] <= data["band_accuracy"] <= 1.0 and data["ece"] is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smollm2-confusion.png", "smollm2-reliability.png"]


def test_cli_exam_writes_a_balanced_heldout_exam(shared, capsys, tmp_path) -> None:
    from training.cli import main
    from training.exam import Exam

    assert main(["exam", "--data", "dev", "--n", "20", "--heldout", "--out", str(tmp_path / "h.json")]) == 0
    exam = Exam.load(tmp_path / "h.json")
    assert exam.kind == "heldout" and len(exam) == 20
    assert main(["exam", "--data", "dev", "--n", "20", "--exclude", str(tmp_path / "h.json"),
                 "--out", str(tmp_path / "p.json")]) == 0
    assert not Exam.load(tmp_path / "p.json").item_keys() & exam.item_keys()
    assert "wrote heldout exam of 20 items" in capsys.readouterr().out


def test_label_bias_fit_repairs_a_skewed_prior_and_apply_matches_softmax() -> None:
    import math

    from training.export import apply_label_bias, fit_label_bias, label_bias_is_stable, severity_metrics

    # a rater that knows the answer but over-weights "minor": every item gets +1.2 on minor's log score
    gold = ["critical", "major", "minor", "trivial"] * 10
    examples = [Example(code="x", review=f"r{i}", label=g) for i, g in enumerate(gold)]
    probs = []
    for g in gold:
        logits = {label: (1.0 if label == g else 0.0) + (1.2 if label == "minor" else 0.0)
                  for label in ("critical", "major", "minor", "trivial")}
        z = math.fsum(math.exp(v) for v in logits.values())
        probs.append({label: math.exp(v) / z for label, v in logits.items()})
    assert severity_metrics(examples, probs)["accuracy"] == 0.25  # everything is "minor"
    bias = fit_label_bias(examples, probs)
    assert bias["critical"] == 0.0 and bias["minor"] < -0.2  # the reference label never moves
    fixed = severity_metrics(examples, apply_label_bias(probs, bias))
    assert fixed["accuracy"] == 1.0 and fixed["macro_f1"] == 1.0
    check = label_bias_is_stable(examples, probs)  # a real, systematic skew: every halving confirms it
    assert check["stable"] and len(check["checks"]) == 6
    noise = [dict(zip(("critical", "major", "minor", "trivial"), p)) for p in
             ([0.25, 0.25, 0.25, 0.25],) * len(gold)]  # nothing to correct: no half can gain
    assert not label_bias_is_stable(examples, noise)["stable"]
    moved = apply_label_bias(probs[:1], {"critical": 0.0, "major": 0.0, "minor": math.log(2), "trivial": 0.0})[0]
    assert moved["minor"] / moved["trivial"] == pytest.approx(2 * probs[0]["minor"] / probs[0]["trivial"])
    assert math.fsum(moved.values()) == pytest.approx(1.0)


def test_paired_difference_resamples_clusters_together() -> None:
    from training.evaluate import paired_difference

    # 20 copies of one rule the model gets right and the baseline wrong, plus 20 single items both get right
    examples = [ex("critical") for _ in range(20)] + [ex("trivial") for _ in range(20)]
    model = ["critical"] * 20 + ["trivial"] * 20
    baseline = ["minor"] * 20 + ["trivial"] * 20
    clustered = paired_difference(examples, model, baseline, ["rule-a"] * 20 + [f"item-{i}" for i in range(20)])
    assert clustered["accuracy_delta"] == pytest.approx(0.5)
    assert clustered["clusters"] == 21
    assert (clustered["clusters_model_better"], clustered["clusters_baseline_better"]) == (1, 0)
    # one cluster is one piece of evidence: in many resamples it is not drawn at all, so 0 stays in the interval
    assert clustered["accuracy_ci95"][0] == 0.0
    assert 0.5 < clustered["p_model_ahead_accuracy"] < 0.8
    # the same items counted one by one would look far surer
    itemwise = paired_difference(examples, model, baseline, [f"x{i}" for i in range(40)])
    assert itemwise["accuracy_ci95"][0] > 0.3
    assert itemwise["p_model_ahead_accuracy"] == 1.0


def test_paired_difference_of_equal_models_is_zero_and_bad_input_is_refused() -> None:
    from training.evaluate import paired_difference

    examples = [ex("critical"), ex("minor"), ex("trivial"), ex("major")]
    same = paired_difference(examples, ["critical", "trivial", "trivial", "major"],
                             ["critical", "trivial", "trivial", "major"], ["a", "b", "c", "d"], resamples=200)
    assert same["accuracy_delta"] == 0.0 and same["accuracy_ci95"] == [0.0, 0.0]
    assert same["macro_f1_ci95"] == [0.0, 0.0] and same["p_model_ahead_accuracy"] == 0.0
    with pytest.raises(TrainingError, match="one prediction per example"):
        paired_difference(examples, ["critical"], ["critical"] * 4)
