"""The one definition of how a severity rating is scored, used by training, recipes, the loop and benchmarks.

- **accuracy**: the argmax level equals the gold level.
- **band accuracy**: the argmax lands in the item's lenient band (its ``acceptable`` labels, or the gold one).
- **macro-F1**: mean F1 over the levels *present in the gold labels* (a level nobody asked about neither
  helps nor hurts; a level predicted but absent still costs precision on the levels that are present).
- **concordance**: over pairs of items whose gold levels differ, how often the model's expected severity
  ``3·P(critical) + 2·P(major) + P(minor)`` orders them the same way (ties count half). It is what decides
  which findings pass a threshold, so it is reported beside accuracy.
- **ECE**: expected calibration error of the top probability (10 equal-width bins).

All functions take plain data: items with ``label`` (and optionally ``acceptable``) and one probability dict
per item; nothing here imports a model.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from typing import Any

from bot.severity import LABELS

#: Expected-severity weights: critical 3, major 2, minor 1, trivial 0.
_RANK = {label: len(LABELS) - 1 - i for i, label in enumerate(LABELS)}


def argmax(probabilities: Mapping[str, float]) -> str:
    """The most probable level (ties: the more severe, the order of :data:`bot.severity.LABELS`)."""
    return max(LABELS, key=lambda label: probabilities.get(label, 0.0))


def expected_severity(probabilities: Mapping[str, float]) -> float:
    """3·P(critical) + 2·P(major) + P(minor)."""
    return sum(_RANK[label] * float(probabilities.get(label, 0.0)) for label in LABELS)


def concordance(gold: Sequence[str], probabilities: Sequence[Mapping[str, float]]) -> float | None:
    """Share of differently-labelled pairs whose expected severities are ordered like their gold levels.

    O(n log n): for each item, count items of strictly lower gold level with lower / equal scores. None when
    no pair has different levels.
    """
    scores = [expected_severity(p) for p in probabilities]
    by_level: dict[int, list[float]] = {}
    for label, score in zip(gold, scores):
        by_level.setdefault(_RANK[label], []).append(score)
    for values in by_level.values():
        values.sort()
    good = ties = pairs = 0.0
    levels = sorted(by_level)
    for hi_index, hi in enumerate(levels):
        for lo in levels[:hi_index]:
            lower = by_level[lo]
            for score in by_level[hi]:
                below = bisect_left(lower, score)
                equal = bisect_right(lower, score) - below
                good += below
                ties += equal
                pairs += len(lower)
    return (good + 0.5 * ties) / pairs if pairs else None


def level_scores(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Precision, recall, F1, support and predicted count per level."""
    out: dict[str, dict[str, Any]] = {}
    for label in LABELS:
        tp = sum(1 for g, p in zip(gold, predicted) if g == p == label)
        n_pred, support = sum(p == label for p in predicted), sum(g == label for g in gold)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support, "predicted": n_pred}
    return out


def macro_f1(per_level: Mapping[str, Mapping[str, Any]]) -> float:
    """Mean F1 over the levels present in the gold labels (0.0 when there are none)."""
    present = [row["f1"] for row in per_level.values() if row["support"] > 0]
    return sum(present) / len(present) if present else 0.0


def calibration_error(gold: Sequence[str], probabilities: Sequence[Mapping[str, float]], bins: int = 10) -> float:
    """Expected calibration error of the top probability."""
    buckets: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for label, probs in zip(gold, probabilities):
        top = argmax(probs)
        confidence = float(probs.get(top, 0.0))
        buckets[min(bins - 1, int(confidence * bins))].append((confidence, top == label))
    n = max(1, len(gold))
    return sum(abs(sum(c for c, _ in b) / len(b) - sum(ok for _, ok in b) / len(b)) * len(b) / n
               for b in buckets if b)


def _band(item: Any) -> tuple[str, ...]:
    acceptable = getattr(item, "acceptable", None)
    if acceptable is None and isinstance(item, Mapping):
        acceptable = item.get("acceptable") or item.get("acceptable_labels")
    return tuple(acceptable or ())


def _label(item: Any) -> str:
    return item["label"] if isinstance(item, Mapping) else item.label


def severity_metrics(items: Sequence[Any], probabilities: Sequence[Mapping[str, float]],
                     digits: int = 4) -> dict[str, Any]:
    """Every figure for one set of rated items: n, accuracy, band accuracy, macro-F1, concordance, ECE and the
    per-level table. ``items`` are Examples or dicts with ``label`` (and ``acceptable``)."""
    if len(items) != len(probabilities):
        raise ValueError(f"{len(items)} items but {len(probabilities)} ratings")
    gold = [_label(item) for item in items]
    predicted = [argmax(p) for p in probabilities]
    n = len(gold)
    per_level = level_scores(gold, predicted)
    band = sum(1 for item, g, p in zip(items, gold, predicted) if p == g or p in _band(item))
    order = concordance(gold, probabilities)
    r = lambda x: round(x, digits)
    return {"n": n, "accuracy": r(sum(g == p for g, p in zip(gold, predicted)) / n) if n else 0.0,
            "band_accuracy": r(band / n) if n else 0.0, "macro_f1": r(macro_f1(per_level)),
            "concordance": None if order is None else r(order),
            "ece": r(calibration_error(gold, probabilities)) if n else 0.0,
            "per_level": {label: {k: (r(v) if isinstance(v, float) else v) for k, v in row.items()}
                          for label, row in per_level.items()}}


def at_least(probabilities: Sequence[Mapping[str, float]], level: str) -> float:
    """Share of items whose argmax is ``level`` or more severe."""
    floor = _RANK[level]
    return sum(_RANK[argmax(p)] >= floor for p in probabilities) / max(1, len(probabilities))
