"""Examining a student on held-out data of every source, with and without the findings' origin.

Held-out sets (:func:`training.mixed.load_sources`): the review-data exam, each tool's held-out rules, and dev
(read once, at the end). Each is rated through the serving rater twice: items showing their origin (tool, rule,
level) where they have one, and the same items with no origin — as an LLM reviewer's or a person's finding would
arrive. Figures come from :mod:`training.metrics` (accuracy, band accuracy, macro-F1, concordance).

The lexical prior is kept only if it helps on held-out data of *every* source (:func:`choose_prior_weight`):
a weight whose macro-F1 falls below the student alone's on any source by more than ``tolerance`` is refused.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from training.examples import Example
from training.metrics import severity_metrics
from training.mixed import family

WEIGHTS = (0.0, 0.25, 0.5, 0.75)


def without_origin(examples: Sequence[Example]) -> list[Example]:
    return [replace(e, meta={**e.meta, "origin": ""}) for e in examples]


def with_full_origin(examples: Sequence[Example]) -> list[Example]:
    from training.corpus import with_origin

    return [with_origin(e, "full") for e in examples]


def by_family(examples: Sequence[Example], probs: Sequence[dict]) -> dict[str, dict]:
    """Metrics per source family (crc-py, sonar-python, sven, ruff, codeql, …)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, example in enumerate(examples):
        groups[family(example)].append(i)
    return {name: severity_metrics([examples[i] for i in idx], [probs[i] for i in idx])
            for name, idx in sorted(groups.items())}


def rate_sets(sets: dict[str, list[Example]], rate) -> dict[str, list[dict]]:
    """``rate(examples) -> probabilities`` over every named set (one rater load for all of them)."""
    return {name: rate(items) for name, items in sets.items()}


def held_out_sets(sources: dict[str, list[Example]]) -> dict[str, list[Example]]:
    """The sets a student is examined on: each with origin and without."""
    return {"exam": with_full_origin(sources["exam"]), "exam_no_origin": without_origin(sources["exam"]),
            "rules": with_full_origin(sources["heldout_rules"]),
            "rules_no_origin": without_origin(sources["heldout_rules"]),
            "dev": with_full_origin(sources["dev"]), "dev_no_origin": without_origin(sources["dev"])}


def choose_prior_weight(sets: dict[str, list[Example]], student: dict[str, list[dict]], prior: dict[str, list[dict]],
                        tolerance: float = 0.01, names: Sequence[str] = ("exam", "exam_no_origin", "rules",
                                                                           "rules_no_origin")) -> tuple[float, dict]:
    """The prior's weight: the best mean held-out macro-F1 among weights that lower no source's macro-F1 by
    more than ``tolerance`` against the student alone (0.0: the prior is dropped). Dev is never used."""
    from training.lexical import blend

    table: dict[float, dict[str, float]] = {}
    for weight in WEIGHTS:
        scores: dict[str, float] = {}
        for name in names:
            probs = blend(student[name], prior[name], weight) if weight else student[name]
            for fam, m in by_family(sets[name], probs).items():
                scores[f"{name}/{fam}"] = m["macro_f1"]
        table[weight] = scores
    base = table[0.0]
    allowed = [w for w in WEIGHTS if all(table[w][k] >= base[k] - tolerance for k in base)]
    best = max(allowed, key=lambda w: (sum(table[w].values()) / len(table[w]), -w))
    return best, {str(w): {k: round(v, 4) for k, v in scores.items()} for w, scores in table.items()}


def report(sets: dict[str, list[Example]], probs: dict[str, list[dict]]) -> dict[str, dict]:
    """Overall and per-family metrics for every set."""
    return {name: {"all": severity_metrics(sets[name], probs[name]), **by_family(sets[name], probs[name])}
            for name in sets}


def rater_for(adapter: Path, base: str, template: str, code_chars: int):
    """A closure rating Examples through the serving llama.cpp rater (student alone)."""
    from bot.rater.llamacpp import LlamaCppRater
    from training.evaluate import rater_input
    from training.export import base_gguf_path

    rater = LlamaCppRater(model_path=base_gguf_path(base), adapter_path=adapter, template=template,
                          code_chars=code_chars)

    def rate(examples: Sequence[Example]) -> list[dict]:
        return [dict(r.probabilities) for r in rater.rate_texts([rater_input(e) for e in examples])]

    return rater, rate


def model_rater(folder: Path, n_threads: int | None = None):
    """A registered model folder's student alone through the serving rater (its own prompt version, template,
    code cap and label bias; lexical prior off), and ``(prior, weight)`` when its manifest combines one.

    Returns ``(info, rater, rate, prior)``; ``rate(examples) -> probabilities``; close ``rater`` when done.
    The served rating is :func:`served` over the student's probabilities (the rater's own product of experts).
    """
    from bot.models import model_from_folder
    from bot.rater.lexical import LexicalPrior
    from bot.rater.llamacpp import LlamaCppRater
    from training.evaluate import rater_input

    info = model_from_folder(Path(folder))
    lexical = info.lexical
    rater = LlamaCppRater(**{**info.rater_options(), "lexical_path": None, "lexical_weight": 0.0},
                          n_threads=n_threads)
    prior = (LexicalPrior.load(lexical[0]), lexical[1]) if lexical and lexical[1] > 0 else None

    def rate(examples: Sequence[Example]) -> list[dict]:
        return [dict(r.probabilities) for r in rater.rate_texts([rater_input(e) for e in examples])]

    return info, rater, rate, prior


def served(examples: Sequence[Example], student: Sequence[dict], prior, weight: float,
           version: str, scope: str = "all") -> list[dict]:
    """The rating as served: the student's probabilities combined with the lexical prior reading exactly what
    the rater gives it for ``version`` (:func:`bot.prompt.expert_text`)."""
    from bot.prompt import expert_text
    from training.lexical import blend, in_scope

    probs = [prior.probabilities(expert_text(e.review, str(e.meta.get("origin") or ""), version))
             if in_scope(e, scope) else None for e in examples]
    return blend(student, probs, weight)
