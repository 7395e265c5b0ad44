"""Severity accuracy on the shared dev split, every contender in one run.

    .venv/bin/python -m benchmarks.accuracy [--out DIR] [--limit N] [--skip-gemma] [--skip-zero-shot] [--skip-llm]
                                            [--students default,gemma3-student]

Contenders: majority class; TF-IDF + logistic regression (review only; code + review) trained on the train
split; zero-shot SmolLM2-135M-Instruct through the serving rater, raw and with contextual calibration
(divide out the label prior measured on content-free inputs); zero-shot Gemma 3 270M (base, "plain"
template), raw and calibrated; the fine-tuned students named by ``--students`` (``models/default`` unless
told otherwise) when present, as served, alone (without the lexical prior their manifest combines them with)
and without their manifest's label prior correction; TF-IDF + LR on word and character n-grams of the review
(the lexical prior's own classifier) alone. Prints one table
(accuracy, band accuracy, macro-F1, seconds), per-source rows, and each student minus the TF-IDF review
baselines, paired on the same items with a 95% interval from a bootstrap over clusters (one analyser rule,
one commit, one repository: their items share text and label); writes confusion-matrix PNGs and a JSON file
with every figure into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bot.errors import SieveError
from bot.models import resolve_model
from training.baselines import ContextualCalibration, MajorityBaseline, TfidfBaseline, TfidfConfig
from training.evaluate import Report, evaluate, paired_difference, save_pngs
from training.examples import Example, load_jsonl, severity_split
from training.loop import llamacpp_rater


def _baselines(train: list[Example], dev: list[Example]) -> dict[str, Callable[[], list]]:
    """The issue's baselines (fitted on all of train) plus TF-IDF on exactly the student's training items
    (train minus the held-out exam), which is the like-for-like comparison."""
    from training.examples import split_exam, teacher_probabilities
    from training.lexical import fit_prior

    student_items, _ = split_exam(train, fraction=0.15, seed=0)
    return {
        "majority class": lambda: MajorityBaseline().fit(train).predict_proba(dev),
        "TF-IDF+LR review": lambda: TfidfBaseline(TfidfConfig(fields="review")).fit(train).predict_proba(dev),
        "TF-IDF+LR code+review": lambda: TfidfBaseline(TfidfConfig(fields="code+review")).fit(train).predict_proba(dev),
        "TF-IDF+LR review, train minus exam": lambda: TfidfBaseline(TfidfConfig(fields="review")).fit(
            student_items).predict_proba(dev),
        "TF-IDF+LR word+char review": lambda: teacher_probabilities(fit_prior(train), dev),
        "TF-IDF+LR word+char review, train minus exam": lambda: teacher_probabilities(fit_prior(student_items), dev),
    }


def _zero_shot(name: str, model_name: str, dev: list[Example]) -> list[tuple[str, list, float]]:
    """Raw and contextually calibrated ratings of one model; the calibration costs 4 extra ratings."""
    began = time.monotonic()
    rater = llamacpp_rater(resolve_model(model_name))
    ratings = rater.rate_texts([(e.code, e.review) for e in dev])
    raw_seconds = time.monotonic() - began
    calibration = ContextualCalibration.measure(rater)
    rater.close()
    prior = ", ".join(f"{k} {v:.2f}" for k, v in calibration.prior.items())
    print(f"  {name}: content-free prior {prior}")
    calibrated = [calibration.apply_rating(r) for r in ratings]
    return [(f"{name} raw", ratings, raw_seconds), (f"{name} calibrated", calibrated, time.monotonic() - began)]


def run(args: argparse.Namespace) -> dict[str, Report]:
    train, dev = load_jsonl(severity_split("train")), load_jsonl(severity_split("dev"))
    dev = dev[: args.limit] if args.limit else dev
    out = Path(args.out)
    reports: dict[str, Report] = {}
    seconds: dict[str, float] = {}
    baseline_predictions: dict[str, list] = {}
    for name, predict in _baselines(train, dev).items():
        began = time.monotonic()
        predictions = baseline_predictions[name] = predict()
        seconds[name] = time.monotonic() - began
        reports[name] = _record(name, predictions, dev, out)
    models = [] if args.skip_llm or args.skip_zero_shot else [("zero-shot SmolLM2-135M", "smollm2")]
    if models and not args.skip_gemma:
        models.append(("zero-shot Gemma-3-270M", "gemma3-270m"))
    for name, model_name in models:
        print(f"rating {len(dev)} dev items with {name} …", flush=True)
        for label, predictions, secs in _zero_shot(name, model_name, dev):
            seconds[label] = secs
            reports[label] = _record(label, predictions, dev, out)
    students: dict[str, list] = {}
    for student_name in ([] if args.skip_llm else [n for n in args.students.split(",") if n]):
        _student(student_name, dev, out, reports, seconds, students)
    _print(reports, seconds)
    paired = _paired(dev, students, baseline_predictions)
    payload = {name: {**r.to_dict(), "seconds": round(seconds[name], 1)} for name, r in reports.items()}
    (out / "accuracy.json").write_text(json.dumps({"n_dev": len(dev), "results": payload, "paired": paired},
                                                  indent=1))
    return reports


#: The baselines every student is compared with, pair by pair (the issue's bar, and the like-for-like one).
PAIRED_AGAINST = ("TF-IDF+LR review", "TF-IDF+LR review, train minus exam", "TF-IDF+LR word+char review",
                  "TF-IDF+LR word+char review, train minus exam")


def _paired(dev: list[Example], students: dict[str, list], baselines: dict[str, list]) -> dict:
    """Student minus baseline on the same dev items, with a 95% interval from a bootstrap over clusters."""
    if not students:
        return {}
    print("\nstudent minus baseline on dev, paired; 95% interval from 2000 resamples of clusters (rule/commit/repo)")
    print(f"{'student':<34}{'baseline':<46}{'d acc':>7}{'interval':>17}{'d mF1':>7}{'interval':>17}"
          f"{'clusters +/-':>14}")
    out = {}
    for student, predictions in students.items():
        for name in PAIRED_AGAINST:
            d = paired_difference(dev, predictions, baselines[name])
            out[f"{student} vs {name}"] = d
            acc, f1 = d["accuracy_ci95"], d["macro_f1_ci95"]
            print(f"{student:<34}{name:<46}{d['accuracy_delta']:>+7.3f}{f'[{acc[0]:+.3f}, {acc[1]:+.3f}]':>17}"
                  f"{d['macro_f1_delta']:>+7.3f}{f'[{f1[0]:+.3f}, {f1[1]:+.3f}]':>17}"
                  f"{str(d['clusters_model_better']) + '/' + str(d['clusters_baseline_better']):>14}")
    return out


def _student(name: str, dev: list[Example], out: Path, reports: dict, seconds: dict, kept: dict) -> None:
    """One fine-tuned student from ``models/`` as served, and without its label prior correction if any."""
    try:
        student = resolve_model(name)
    except SieveError as exc:
        print(f"  no fine-tuned student {name!r}: {exc}")
        return
    began = time.monotonic()
    rater = llamacpp_rater(student)
    predictions = rater.rate_texts([(e.code, e.review) for e in dev])
    rater.close()
    label = f"student {name} ({student.model_id})"
    seconds[label] = time.monotonic() - began
    reports[label] = _record(label, predictions, dev, out)
    kept[name] = predictions
    if student.lexical:  # the student alone: the same rater without the lexical prior beside it
        began = time.monotonic()
        rater = llamacpp_rater(replace(student, manifest={**student.manifest, "lexical": None}))
        alone = rater.rate_texts([(e.code, e.review) for e in dev])
        rater.close()
        seconds[label + " alone"] = time.monotonic() - began
        reports[label + " alone"] = _record(label + " alone", alone, dev, out)
        kept[name + " alone"] = alone
    if student.label_bias:  # the same ratings without the manifest's prior correction
        from training.export import apply_label_bias

        undo = {k: -v for k, v in student.label_bias.items()}
        plain = apply_label_bias([dict(r.probabilities) for r in predictions], undo)
        seconds[label + " uncorrected"] = 0.0
        reports[label + " uncorrected"] = _record(label + " uncorrected", plain, dev, out)


def _record(name: str, predictions: list, dev: list[Example], out: Path) -> Report:
    report = evaluate(predictions, dev, model_id=name)
    probs = [p.probabilities if hasattr(p, "probabilities") else p for p in predictions]
    stem = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")
    save_pngs(report, out, gold=[e.label for e in dev], probs=probs, stem=stem)
    return report


def _print(reports: dict[str, Report], seconds: dict[str, float]) -> None:
    n = next(iter(reports.values())).n
    print(f"\nSeverity on dev ({n} items): accuracy / band accuracy / macro-F1")
    print(f"{'model':<42}{'acc':>7}{'band':>7}{'mF1':>7}{'ECE':>7}{'sec':>8}")
    for name, r in reports.items():
        ece = f"{r.ece:.3f}" if r.ece is not None else "-"
        print(f"{name:<42}{r.accuracy:>7.3f}{r.band_accuracy:>7.3f}{r.macro_f1:>7.3f}{ece:>7}{seconds[name]:>8.1f}")
    groups = sorted({g for r in reports.values() for g in r.per_source})
    print("\nper source: accuracy / macro-F1 (n)")
    sizes = next(iter(reports.values())).per_source
    print(f"{'model':<42}" + "".join(f"{g + ' (' + str(int(sizes[g]['n'])) + ')':>22}" for g in groups))
    for name, r in reports.items():
        cells = "".join(f"{r.per_source[g]['accuracy']:>13.3f} / {r.per_source[g]['macro_f1']:.3f}"
                        if g in r.per_source else f"{'-':>22}" for g in groups)
        print(f"{name:<42}{cells}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/accuracy", help="folder for PNGs and accuracy.json")
    parser.add_argument("--limit", type=int, help="only the first N dev items (say so when reporting)")
    parser.add_argument("--skip-gemma", action="store_true", help="leave out Gemma 3 270M")
    parser.add_argument("--skip-llm", action="store_true", help="baselines only (no language model)")
    parser.add_argument("--skip-zero-shot", action="store_true", help="baselines and the fine-tuned student only")
    parser.add_argument("--students", default="default",
                        help="comma-separated fine-tuned students from models/ (default: %(default)s)")
    args = parser.parse_args(argv)
    if not severity_split("dev").is_file():
        print(f"shared data not found at {severity_split('dev')}; set SIEVE_SHARED")
        return 2
    Path(args.out).mkdir(parents=True, exist_ok=True)
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
