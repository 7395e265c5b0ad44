"""Scoring a student against gold labels: accuracy, band accuracy, macro-F1, confusion, calibration.

Why all of these: labels for major/minor are heuristic, so exact accuracy alone undersells a model that
lands inside the lenient band; macro-F1 keeps a majority-class guesser honest; ECE says whether the
probabilities the threshold uses can be trusted. One function serves the CLI, the loop and benchmarks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bot.errors import TrainingError
from bot.findings import Rating
from bot.severity import LABELS, argmax_label
from training import metrics
from training.examples import Example

SOURCE_GROUPS = ("crc-py", "sonar-python", "sven")


class TextRater(Protocol):
    """What a serving rater offers (``bot.rater.llamacpp.LlamaCppRater``)."""

    def rate_texts(self, items: list[tuple[str, str]]) -> list[Rating]: ...


Prediction = Rating | dict[str, float] | str


def source_group(source: str, ident: str = "") -> str:
    """Group a long source string by its dataset: crc-py / sonar-python / sven, else its first part."""
    text = f"{source} {ident}".lower()
    if ident.startswith("feedback-") or source.startswith("feedback"):
        return "feedback"
    if ident.startswith("teacher-") or source.startswith("teacher"):
        return "teacher"
    for group in SOURCE_GROUPS:
        if group in text or group.replace("-", "") in text:
            return group
    head = (source or "").split("@")[0].split(":")[0].strip()
    return head.rsplit("/", 1)[-1] if head else "other"


@dataclass
class Report:
    """Figures for one model on one set of examples. ``confusion[gold][pred]`` in :data:`LABELS` order."""

    n: int
    accuracy: float
    band_accuracy: float
    macro_f1: float
    per_level: dict[str, dict[str, float]]
    confusion: list[list[int]]
    per_source: dict[str, dict[str, float]]
    mean_confidence: float | None = None
    ece: float | None = None
    concordance: float | None = None  # pairs of different gold levels ordered right by expected severity
    labels: tuple[str, ...] = LABELS
    model_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["labels"] = list(self.labels)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False)

    def summary(self) -> dict[str, float]:
        """The headline numbers (what manifests and loop logs keep)."""
        return {"n": self.n, "accuracy": round(self.accuracy, 4), "band_accuracy": round(self.band_accuracy, 4),
                "macro_f1": round(self.macro_f1, 4),
                "concordance": None if self.concordance is None else round(self.concordance, 4)}

    def to_text(self) -> str:
        """A plain-text rendering for terminals and logs."""
        lines = [f"model {self.model_id or '?'} on {self.n} examples",
                 (f"accuracy {self.accuracy:.3f}   band accuracy {self.band_accuracy:.3f}   "
                  f"macro-F1 {self.macro_f1:.3f}")]
        if self.ece is not None:
            lines.append(f"mean confidence {self.mean_confidence:.3f}   ECE {self.ece:.3f}"
                         + (f"   concordance {self.concordance:.3f}" if self.concordance is not None else ""))
        lines.append("")
        lines.append(f"{'level':<10}{'precision':>10}{'recall':>8}{'F1':>7}{'support':>9}")
        for label in self.labels:
            row = self.per_level[label]
            lines.append(f"{label:<10}{row['precision']:>10.3f}{row['recall']:>8.3f}{row['f1']:>7.3f}"
                         f"{int(row['support']):>9}")
        lines.append("")
        lines.append("confusion (rows gold, columns predicted)")
        lines.append(" " * 10 + "".join(f"{label[:8]:>9}" for label in self.labels))
        for label, row in zip(self.labels, self.confusion):
            lines.append(f"{label:<10}" + "".join(f"{count:>9}" for count in row))
        lines.append("")
        lines.append(f"{'source':<14}{'n':>5}{'acc':>8}{'band':>8}{'macro-F1':>10}")
        for name, row in sorted(self.per_source.items()):
            lines.append(f"{name:<14}{int(row['n']):>5}{row['accuracy']:>8.3f}{row['band_accuracy']:>8.3f}"
                         f"{row['macro_f1']:>10.3f}")
        return "\n".join(lines)


def predict(rater_or_predictions: TextRater | Sequence[Prediction],
            examples: Sequence[Example]) -> list[Prediction]:
    """Run a rater over the examples, or pass predictions through after checking their count."""
    if hasattr(rater_or_predictions, "rate_texts"):
        return list(rater_or_predictions.rate_texts([rater_input(e) for e in examples]))
    predictions = list(rater_or_predictions)  # type: ignore[arg-type]
    if len(predictions) != len(examples):
        raise TrainingError(f"{len(predictions)} predictions for {len(examples)} examples",
                            hint="give one prediction per example, in the same order")
    return predictions


def rater_input(example: Example) -> tuple[str, str, str]:
    """What a rater reads of an item: (code, review, origin) — the origin only when the item carries one."""
    return example.code, example.review, str(example.meta.get("origin") or "")


def label_and_probs(prediction: Prediction) -> tuple[str, dict[str, float] | None]:
    if isinstance(prediction, Rating):
        return prediction.severity, prediction.probabilities
    if isinstance(prediction, dict):
        return argmax_label(prediction).label, prediction
    label = str(prediction).strip().lower()
    if label not in LABELS:
        raise TrainingError(f"prediction {prediction!r} is not a severity level", hint=f"use {', '.join(LABELS)}")
    return label, None


def evaluate(rater_or_predictions: TextRater | Sequence[Prediction], examples: Sequence[Example],
             *, model_id: str = "", bins: int = 10) -> Report:
    """Score predictions (or a rater run on ``examples``) against the examples' gold labels."""
    if not examples:
        raise TrainingError("nothing to evaluate: no examples", hint="check the data file and --limit")
    predictions = predict(rater_or_predictions, examples)
    pairs = [label_and_probs(p) for p in predictions]
    predicted = [label for label, _ in pairs]
    gold = [e.label for e in examples]
    report = _score(gold, predicted, examples)
    probs = [p for _, p in pairs]
    if all(p is not None for p in probs):
        report.mean_confidence, report.ece = calibration(gold, probs, bins)  # type: ignore[arg-type]
        report.concordance = metrics.concordance(gold, probs)  # type: ignore[arg-type]
    if not model_id and predictions and isinstance(predictions[0], Rating):
        model_id = predictions[0].model_id
    report.model_id = model_id
    return report


def _in_band(example: Example, label: str) -> bool:
    return label == example.label or label in (example.acceptable or ())


def _confusion(gold: list[str], predicted: list[str]) -> list[list[int]]:
    index = {label: i for i, label in enumerate(LABELS)}
    confusion = [[0] * len(LABELS) for _ in LABELS]
    for g, p in zip(gold, predicted):
        confusion[index[g]][index[p]] += 1
    return confusion


def _score_plain(gold: list[str], predicted: list[str], examples: Sequence[Example]) -> dict[str, float]:
    n = len(gold)
    return {"n": n, "accuracy": sum(g == p for g, p in zip(gold, predicted)) / n,
            "band_accuracy": sum(_in_band(e, p) for e, p in zip(examples, predicted)) / n,
            "macro_f1": metrics.macro_f1(metrics.level_scores(gold, predicted))}


def _score(gold: list[str], predicted: list[str], examples: Sequence[Example]) -> Report:
    confusion = _confusion(gold, predicted)
    overall = _score_plain(gold, predicted, examples)
    groups: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        groups.setdefault(source_group(example.source, example.id), []).append(i)
    per_source = {name: _score_plain([gold[i] for i in idx], [predicted[i] for i in idx],
                                     [examples[i] for i in idx]) for name, idx in groups.items()}
    return Report(n=len(gold), accuracy=overall["accuracy"], band_accuracy=overall["band_accuracy"],
                  macro_f1=overall["macro_f1"], per_level=metrics.level_scores(gold, predicted), confusion=confusion,
                  per_source=per_source)


def calibration(gold: list[str], probs: list[dict[str, float]], bins: int = 10) -> tuple[float, float]:
    """Mean top-class confidence and expected calibration error over equal-width confidence bins."""
    points = reliability_bins(gold, probs, bins)
    n = sum(count for _, _, count in points)
    mean_conf = sum(conf * count for conf, _, count in points) / n
    ece = sum(count / n * abs(acc - conf) for conf, acc, count in points)
    return mean_conf, ece


def reliability_bins(gold: list[str], probs: list[dict[str, float]], bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean confidence, accuracy, count) per non-empty bin — what the reliability plot draws."""
    slots: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for g, p in zip(gold, probs):
        label = argmax_label(p).label
        confidence = float(p.get(label, 0.0))
        slots[min(bins - 1, int(confidence * bins))].append((confidence, label == g))
    return [(sum(c for c, _ in s) / len(s), sum(ok for _, ok in s) / len(s), len(s)) for s in slots if s]


def save_pngs(report: Report, out_dir: str | Path, *, gold: Iterable[str] = (),
              probs: Iterable[dict[str, float]] = (), stem: str = "model") -> list[Path]:
    """Confusion matrix (and a reliability plot when probabilities are given) as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.imshow(report.confusion, cmap="Blues")
    ax.set_xticks(range(len(LABELS)), LABELS, rotation=30)
    ax.set_yticks(range(len(LABELS)), LABELS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i, row in enumerate(report.confusion):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=9)
    ax.set_title(f"{stem}: acc {report.accuracy:.2f}, macro-F1 {report.macro_f1:.2f}", fontsize=9)
    fig.tight_layout()
    written.append(out / f"{stem}-confusion.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    gold, probs = list(gold), list(probs)
    if gold and probs:
        points = reliability_bins(gold, probs)
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
        ax.plot([c for c, _, _ in points], [a for _, a, _ in points], marker="o")
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{stem}: ECE {report.ece or 0:.3f}", fontsize=9)
        fig.tight_layout()
        written.append(out / f"{stem}-reliability.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def paired_difference(examples: Sequence[Example], model: Sequence[Prediction], baseline: Sequence[Prediction],
                      groups: Sequence[str] | None = None, *, resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """How sure is "``model`` beats ``baseline``" on these examples? A paired bootstrap over clusters.

    Items of one cluster (one analyser rule, one commit, one repository: ``groups``, by default
    :func:`~training.examples.group_key`) share their review text and label, so they are resampled together;
    resampling items alone would treat four copies of one rule as four pieces of evidence. Returns the
    differences (model − baseline) in accuracy and macro-F1, their 95% percentile intervals, the share of
    resamples in which the model is ahead, and how many clusters each side gets more items right in.
    """
    import random

    from training.examples import group_key

    if not examples or len(model) != len(examples) or len(baseline) != len(examples):
        raise TrainingError("paired comparison needs one prediction per example from each side",
                            hint="rate the same examples, in the same order, with both models")
    keys = list(groups) if groups is not None else [group_key(e) for e in examples]
    gold = [e.label for e in examples]
    ours = [label_and_probs(p)[0] for p in model]
    theirs = [label_and_probs(p)[0] for p in baseline]
    clusters: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        clusters.setdefault(key, []).append(i)
    members = list(clusters.values())

    def delta(idx: list[int]) -> tuple[float, float]:
        g = [gold[i] for i in idx]
        a = _score_plain(g, [ours[i] for i in idx], [examples[i] for i in idx])
        b = _score_plain(g, [theirs[i] for i in idx], [examples[i] for i in idx])
        return a["accuracy"] - b["accuracy"], a["macro_f1"] - b["macro_f1"]

    observed = delta(list(range(len(examples))))
    rng = random.Random(seed)
    draws = []
    for _ in range(resamples):
        idx = [i for _ in members for i in members[rng.randrange(len(members))]]
        draws.append(delta(idx))

    def interval(values: list[float]) -> list[float]:
        values = sorted(values)
        return [round(values[int(0.025 * (len(values) - 1))], 4), round(values[int(0.975 * (len(values) - 1))], 4)]

    wins = [sum(ours[i] == gold[i] for i in m) - sum(theirs[i] == gold[i] for i in m) for m in members]
    return {"n": len(examples), "clusters": len(members),
            "accuracy_delta": round(observed[0], 4), "accuracy_ci95": interval([d[0] for d in draws]),
            "macro_f1_delta": round(observed[1], 4), "macro_f1_ci95": interval([d[1] for d in draws]),
            "p_model_ahead_accuracy": round(sum(d[0] > 0 for d in draws) / resamples, 3),
            "p_model_ahead_macro_f1": round(sum(d[1] > 0 for d in draws) / resamples, 3),
            "clusters_model_better": sum(w > 0 for w in wins), "clusters_baseline_better": sum(w < 0 for w in wins)}
