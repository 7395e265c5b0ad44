"""Cheap baselines the student has to beat, and the helpers built on them.

* majority class — the floor any model must clear;
* TF-IDF + logistic regression over the review (or code + review) — a strong, instant text classifier;
  cross-fitted out-of-fold it also gives *soft labels* for distillation without leaking an item's own label;
* contextual calibration for zero-shot language models — measure the label prior the prompt alone induces
  (content-free inputs) and divide it out.

scikit-learn is imported lazily inside the functions that need it.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.errors import TrainingError
from bot.findings import Rating
from bot.severity import LABELS, argmax_label
from training.examples import Example


class MajorityBaseline:
    """Always answers the most frequent training label (ties go to the more severe level)."""

    def fit(self, examples: Sequence[Example]) -> MajorityBaseline:
        counts = Counter(e.label for e in examples)
        self.label = max(LABELS, key=lambda label: (counts.get(label, 0), -LABELS.index(label)))
        return self

    def predict_proba(self, examples: Sequence[Example]) -> list[dict[str, float]]:
        return [{label: float(label == self.label) for label in LABELS} for _ in examples]


@dataclass
class TfidfConfig:
    """Settings of the TF-IDF + logistic-regression baseline."""

    fields: str = "review"  # "review" or "code+review": which text the classifier reads
    ngram_max: int = 2  # word n-grams up to this length
    min_df: int = 1  # ignore terms seen in fewer documents
    c: float = 1.0  # inverse regularisation strength (scikit-learn default; not tuned on dev)
    class_weight: str | None = "balanced"  # reweight classes so minority levels are not ignored
    seed: int = 0


def _text(example: Example, fields: str) -> str:
    if fields == "review":
        return example.review
    if fields == "code+review":
        return f"{example.review}\n\n{example.code}"
    raise TrainingError(f"unknown TF-IDF fields {fields!r}", hint="use 'review' or 'code+review'")


class TfidfBaseline:
    """TF-IDF features over review (and optionally code) text, multinomial logistic regression."""

    def __init__(self, config: TfidfConfig | None = None) -> None:
        self.config = config or TfidfConfig()
        self._model: Any = None

    def fit(self, examples: Sequence[Example]) -> TfidfBaseline:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        cfg = self.config
        vectoriser = TfidfVectorizer(ngram_range=(1, cfg.ngram_max), min_df=cfg.min_df, sublinear_tf=True)
        classifier = LogisticRegression(C=cfg.c, class_weight=cfg.class_weight, max_iter=2000,
                                        random_state=cfg.seed)
        self._model = make_pipeline(vectoriser, classifier)
        self._model.fit([_text(e, cfg.fields) for e in examples], [e.label for e in examples])
        return self

    def predict_proba(self, examples: Sequence[Example]) -> list[dict[str, float]]:
        if self._model is None:
            raise TrainingError("TF-IDF baseline used before fit()", hint="call fit(train_examples) first")
        classes = list(self._model.classes_)
        rows = self._model.predict_proba([_text(e, self.config.fields) for e in examples])
        return [{label: float(row[classes.index(label)]) if label in classes else 0.0 for label in LABELS}
                for row in rows]


def cross_fit_soft_labels(examples: Sequence[Example], *, folds: int = 5, seed: int = 0,
                          config: TfidfConfig | None = None, temperature: float = 1.0) -> list[dict[str, float]]:
    """Out-of-fold TF-IDF+LR probabilities for every example (each predicted by a model that never saw it).

    Why out-of-fold: a model scoring its own training items is overconfident and would just echo the gold
    label; the held-back fold gives the honest "dark knowledge" KD-LoRA distils from.
    """
    if len(examples) < folds * 2:
        raise TrainingError(f"{len(examples)} examples are too few for {folds}-fold soft labels",
                            hint="use more data or fewer folds")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    out: list[dict[str, float] | None] = [None] * len(examples)
    for fold in range(folds):
        held = order[fold::folds]
        held_set = set(held)
        model = TfidfBaseline(config).fit([examples[i] for i in order if i not in held_set])
        for i, probs in zip(held, model.predict_proba([examples[i] for i in held])):
            out[i] = _sharpen(probs, temperature)
    return [p or {} for p in out]


def _sharpen(probs: dict[str, float], temperature: float) -> dict[str, float]:
    if temperature == 1.0:
        return probs
    powered = {label: max(p, 1e-12) ** (1.0 / temperature) for label, p in probs.items()}
    total = sum(powered.values())
    return {label: p / total for label, p in powered.items()}


CONTENT_FREE: tuple[tuple[str, str], ...] = (("", "N/A"), ("", ""), ("N/A", "N/A"), ("", "[MASK]"))


@dataclass
class ContextualCalibration:
    """Divide out the label prior a prompt induces on content-free inputs (Zhao et al., 2021).

    ``prior`` is the mean probability per label over :data:`CONTENT_FREE` inputs; a calibrated
    prediction is ``p(label) / prior(label)``, renormalised.
    """

    prior: dict[str, float] = field(default_factory=lambda: {label: 0.25 for label in LABELS})

    @classmethod
    def measure(cls, rater: Any, inputs: Sequence[tuple[str, str]] = CONTENT_FREE) -> ContextualCalibration:
        ratings: list[Rating] = rater.rate_texts(list(inputs))
        prior = {label: sum(r.probabilities.get(label, 0.0) for r in ratings) / len(ratings) for label in LABELS}
        return cls(prior=prior)

    def apply(self, probs: dict[str, float]) -> dict[str, float]:
        scaled = {label: probs.get(label, 0.0) / max(self.prior.get(label, 0.0), 1e-9) for label in LABELS}
        total = sum(scaled.values()) or 1.0
        return {label: p / total for label, p in scaled.items()}

    def apply_rating(self, rating: Rating) -> Rating:
        probs = self.apply(rating.probabilities)
        return Rating(probabilities=probs, severity=argmax_label(probs).label, model_id=rating.model_id + "+cc",
                      prompt_version=rating.prompt_version, truncated=rating.truncated, tokens=rating.tokens)
