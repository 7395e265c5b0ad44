"""Fit, export and weigh the lexical prior that the served rating combines with the student.

The prior is the dataset teacher's classifier (:func:`training.examples.tfidf_teacher`: word 1–2-grams and
character 2–5-grams of the review, logistic regression) fitted on the same training items as the adapter.
:func:`export_prior` writes it as the JSON that :class:`bot.rater.lexical.LexicalPrior` scores without
scikit-learn; :func:`choose_weight` picks the product-of-experts weight on the held-out exam.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from bot.errors import TrainingError
from bot.rater.lexical import FORMAT, MAX_CHARS, LexicalPrior, combine
from bot.severity import LABELS

#: Weights tried by :func:`choose_weight` (0: the student alone, 1: the prior alone).
WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def labelled(examples: Sequence) -> list:
    """The items whose label is a real level: a bare rejection's label is the level that was refused."""
    return [e for e in examples if not (e.meta or {}).get("rejected")]


#: What a new prior reads: analyser findings only. On review comments from projects the prior never saw it cost
#: accuracy (leave-project-out, ``python -m benchmarks.prior_ood``; docs/model.md).
SCOPE = "tools"


def manifest_entry(path: Path, weight: float, fitted_on: str, scope: str = SCOPE, **extra) -> dict:
    """The manifest's ``lexical`` entry for a prior file written by :func:`export_prior`."""
    from training.export import sha256_file

    return {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size, "weight": weight,
            "scope": scope, "fitted_on": fitted_on, **extra}


def in_scope(example, scope: str) -> bool:
    """Whether a prior of ``scope`` reads ``example`` (as the served rater decides: an origin, or scope "all")."""
    return scope == "all" or bool(str((example.meta or {}).get("origin") or ""))


def fit_prior(train: Sequence):
    """The scikit-learn pipeline of the prior, fitted on ``train`` (labels of bare rejections are skipped)."""
    from training.examples import tfidf_teacher

    usable = labelled(train)
    if len({e.label for e in usable}) < 2:
        raise TrainingError(f"the lexical prior needs at least two labels among {len(usable)} training items",
                            hint="train without a lexical prior (--lexical-weight 0) or add labelled items")
    return tfidf_teacher(usable)


def export_prior(model, path: str | Path, digits: int = 7) -> Path:
    """Write a fitted ``make_pipeline(make_union(TfidfVectorizer...), LogisticRegression)`` as prior JSON."""
    union, classifier = model.steps[0][1], model.steps[-1][1]
    vectorisers = [v for _, v in getattr(union, "transformer_list", [("only", union)])]
    classes = [str(c) for c in classifier.classes_]
    if sorted(classes) != sorted(LABELS):
        raise TrainingError(f"the prior was fitted on labels {classes}, not all four severity levels",
                            hint="fit it on data that has every level, or train without a lexical prior")
    coef = classifier.coef_
    blocks, offset = [], 0
    for vec in vectorisers:
        if vec.analyzer not in ("word", "char_wb") or vec.norm != "l2" or vec.strip_accents or vec.stop_words:
            raise TrainingError(f"cannot export a TfidfVectorizer with analyzer={vec.analyzer!r}, norm={vec.norm!r}",
                                hint="use word or char_wb analyzers, l2 norm, no accent stripping or stop words")
        idf = vec.idf_
        terms = {term: [round(float(idf[j]), digits)]
                 + [round(float(coef[k, offset + j]), digits) for k in range(len(classes))]
                 for term, j in vec.vocabulary_.items()}
        blocks.append({"analyzer": vec.analyzer, "ngram_range": list(vec.ngram_range), "lowercase": vec.lowercase,
                       "token_pattern": vec.token_pattern if vec.analyzer == "word" else None,
                       "sublinear_tf": vec.sublinear_tf, "terms": dict(sorted(terms.items()))})
        offset += len(vec.vocabulary_)
    if offset != coef.shape[1]:
        raise TrainingError(f"the classifier has {coef.shape[1]} features, the vectorisers {offset}",
                            hint="export the pipeline exactly as fitted")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "classes": classes,
            "intercept": [round(float(v), digits) for v in classifier.intercept_], "blocks": blocks}
    path.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    return path


def prior_probabilities(prior: LexicalPrior, examples: Sequence, scope: str = "all") -> list[dict[str, float] | None]:
    """The prior's probabilities per example; None where a prior of ``scope`` does not read it."""
    from training.examples import teacher_text

    return [prior.probabilities(teacher_text(e)) if in_scope(e, scope) else None for e in examples]


def blend(student: Sequence[dict[str, float]], prior: Sequence[dict[str, float] | None],
          weight: float) -> list[dict[str, float]]:
    """Normalised product-of-experts probabilities (what the served rater gives at ``weight``); where the prior
    is None (out of its scope) the student's own."""
    import math

    from bot.rater.base import distribution

    return [dict(s) if p is None else
            distribution(combine({label: math.log(max(s[label], 1e-12)) for label in LABELS}, p, weight))
            for s, p in zip(student, prior, strict=True)]


def choose_weight(examples: Sequence, student: Sequence[dict[str, float]], prior: Sequence[dict[str, float]],
                  grid: Sequence[float] = WEIGHT_GRID) -> tuple[float, dict[str, dict[str, float]]]:
    """The grid weight with the best macro-F1 + accuracy on ``examples`` (ties: the smaller weight, i.e. more
    student), and every weight's figures."""
    from training.export import severity_metrics

    figures = {}
    for weight in grid:
        m = severity_metrics(examples, blend(student, prior, weight))
        figures[f"{weight:g}"] = {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4)}
    best = max(grid, key=lambda w: (figures[f"{w:g}"]["accuracy"] + figures[f"{w:g}"]["macro_f1"], -w))
    return best, figures


#: L2 pull of an updated prior's weights toward its parent's (per unit of mean loss): the anchor a warm-started
#: round needs (a prior refitted on a round's few hundred items forgets the parent's thousands). Chosen between
#: 0.01 and 0.001 on the team benchmark's pytest team, checked on litestar (docs/memory.md, retrain arm)
UPDATE_L2 = 0.001


def _folder(example) -> tuple[str, str]:
    """(path, origin) of a feedback item, as the served rater passes them to a prior's folder block."""
    meta = example.meta or {}
    return str(meta.get("path") or ""), str(meta.get("origin") or "")


def update_prior(parent_path: str | Path, examples: Sequence, out_path: str | Path, scope: str = SCOPE,
                 l2: float = UPDATE_L2, paths: bool = False) -> Path:
    """The parent prior, warm-started on ``examples`` as the adapter is: its vocabulary and idf kept, the weights
    of the terms the examples use (and the intercepts) moved to fit them, pulled back toward the parent's by
    ``l2``. Loss per item: cross-entropy on its label, or for a bare 👎 −log P(levels it allows); weighted by
    the item's weight. L-BFGS, deterministic. Writes the same JSON as :func:`export_prior`.

    With ``paths``, items that carry a path (``sieve feedback export`` rows do) also teach a folder block
    (:func:`bot.rater.lexical.path_terms`: ``S|dir:tests``), added to the prior if it has none,
    its new terms starting at weight 0 (idf 1) under the same L2 pull: a team's reactions can then say "S rules
    in tests/", which no word of the review says."""
    import numpy as np
    from scipy.optimize import minimize
    from scipy.sparse import csr_matrix

    from bot.rater.lexical import PATH_ANALYZER, path_terms
    from training.curriculum import allowed_levels
    from training.examples import teacher_text

    data = json.loads(Path(parent_path).read_text(encoding="utf-8"))
    LexicalPrior.load(parent_path)  # the same checks as serving, before anything is changed
    items = [e for e in examples if in_scope(e, scope)]
    if not items:
        raise TrainingError("no item of this round is one the prior reads", hint=f"the prior's scope is {scope!r}")
    if paths and any(_folder(e)[0] for e in items):
        blocks = [b for b in data["blocks"] if b["analyzer"] == PATH_ANALYZER]
        if not blocks:
            blocks = [{"analyzer": PATH_ANALYZER, "ngram_range": [1, 1], "lowercase": False, "sublinear_tf": False,
                       "terms": {}}]
            data["blocks"].append(blocks[0])
        for example in items:
            for term in path_terms(*_folder(example)):
                blocks[0]["terms"].setdefault(term, [1.0] + [0.0] * len(data["classes"]))
    parent = LexicalPrior.from_data(data, str(parent_path))
    k = len(parent.classes)
    index: dict[tuple[int, str], int] = {}
    rows, cols, vals = [], [], []
    base = np.tile(np.array(parent.intercept, dtype=float), (len(items), 1))  # the parent's logits, built below
    allowed = np.zeros((len(items), k), dtype=bool)
    for i, example in enumerate(items):
        text = teacher_text(example)[:MAX_CHARS]
        for b, block in enumerate(parent.blocks):
            for term, value in block.features(text, *_folder(example)).items():
                base[i] += value * np.array(block.terms[term][1])
                rows.append(i)
                cols.append(index.setdefault((b, term), len(index)))
                vals.append(value)
        levels = allowed_levels(example) or (example.label,)
        allowed[i] = [label in levels for label in parent.classes]
    x = csr_matrix((vals, (rows, cols)), shape=(len(items), len(index)))
    weight = np.array([float(e.weight) for e in items])
    weight = weight / weight.sum()

    def loss(theta):
        delta, bias = theta[:-k].reshape(len(index), k), theta[-k:]
        z = base + x @ delta + bias
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        p = np.exp(logp)
        kept = np.where(allowed, p, 0.0).sum(axis=1)
        value = -(weight * np.log(np.maximum(kept, 1e-300))).sum() + 0.5 * l2 * (theta @ theta)
        # d(−log Σ_allowed p)/dz = p − p·1[allowed]/Σ_allowed p
        grad_z = weight[:, None] * (p - np.where(allowed, p, 0.0) / np.maximum(kept, 1e-300)[:, None])
        grad = np.concatenate([(x.T @ grad_z).ravel(), grad_z.sum(axis=0)]) + l2 * theta
        return value, grad

    result = minimize(loss, np.zeros(len(index) * k + k), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    delta, bias = result.x[:-k].reshape(len(index), k), result.x[-k:]
    order = [parent.classes.index(c) for c in data["classes"]]
    for (b, term), row in index.items():
        entry = data["blocks"][b]["terms"][term]
        data["blocks"][b]["terms"][term] = [entry[0]] + [round(entry[1 + j] + float(delta[row, order[j]]), 7)
                                                         for j in range(k)]
    data["intercept"] = [round(v + float(bias[order[j]]), 7) for j, v in enumerate(data["intercept"])]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    return out_path

