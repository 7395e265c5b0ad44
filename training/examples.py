"""Training and exam items: one :class:`Example` shape for the shared dataset, teacher output and feedback.

Why one shape: the teacher, the exam, the curriculum and the fine-tuner all pass the same items along,
so a curriculum weight or a teacher's soft labels travel with the item instead of in side tables.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bot.errors import TrainingError
from bot.severity import LABELS


@dataclass
class Example:
    """One training/exam item. ``label`` is one of :data:`bot.severity.LABELS`."""

    code: str
    review: str
    label: str
    weight: float = 1.0  # curriculum weight (λ): how much this item counts in the loss
    soft: dict[str, float] | None = None  # teacher probabilities over the four labels (distillation)
    acceptable: tuple[str, ...] = ()  # lenient band: labels also counted as right
    source: str = ""
    id: str = ""
    lang: str = ""
    meta: dict = field(default_factory=dict)  # anything else the file carried (kept on round trips)

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise TrainingError(f"example {self.id or '?'} has label {self.label!r}",
                                hint=f"use one of: {', '.join(LABELS)}")
        if not self.weight >= 0:
            raise TrainingError(f"example {self.id or '?'} has weight {self.weight!r}",
                                hint="weights must be non-negative numbers")
        self.acceptable = tuple(self.acceptable)
        if self.soft is not None:
            self.soft = _normalise_soft(self.soft, self.id)


def _normalise_soft(soft: dict[str, float], ident: str) -> dict[str, float]:
    """Teacher probabilities over exactly the four labels, summing to one."""
    unknown = set(soft) - set(LABELS)
    total = sum(float(soft.get(label, 0.0)) for label in LABELS)
    if unknown or total <= 0:
        raise TrainingError(f"example {ident or '?'} has unusable soft labels {soft!r}",
                            hint=f"give non-negative probabilities over {', '.join(LABELS)}")
    return {label: float(soft.get(label, 0.0)) / total for label in LABELS}


_KNOWN = {"code", "review", "label", "weight", "soft", "acceptable", "acceptable_labels", "source", "id", "lang"}


def from_record(record: dict, where: str = "") -> Example:
    """Build an Example from one JSON object (dataset row, feedback export or our own dump)."""
    try:
        code = record.get("code") or ""
        review = record["review"]
        label = str(record["label"]).strip().lower()
    except (KeyError, AttributeError) as exc:
        raise TrainingError(f"{where}: record lacks field {exc}",
                            hint="each line needs at least 'review' and 'label' (and usually 'code')") from None
    acceptable = record.get("acceptable") or record.get("acceptable_labels") or ()
    meta = {k: v for k, v in record.items() if k not in _KNOWN}
    return Example(code=code, review=review, label=label, weight=float(record.get("weight", 1.0)),
                   soft=record.get("soft"), acceptable=tuple(acceptable), source=record.get("source", ""),
                   id=str(record.get("id", "")), lang=record.get("lang", ""), meta=meta)


def load_jsonl(path: str | Path) -> list[Example]:
    """Read examples from a JSON-lines file (shared dataset shape, feedback export, or :func:`dump_jsonl`)."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"no example file at {path}", hint="check the path (shared data lives in ../shared)")
    out: list[Example] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainingError(f"{path}:{number}: not JSON ({exc.msg})",
                                    hint="each line must be one JSON object") from None
            out.append(from_record(record, f"{path}:{number}"))
    return out


def read_records(path: str | Path, missing_hint: str) -> list[tuple[str, dict]]:
    """``(where, record)`` for each JSON object of a JSON-lines file; one clear error for a missing file or a
    line that is not JSON."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"no such file {path}", hint=missing_hint)
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append((f"{path}:{number}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise TrainingError(f"{path}:{number}: not JSON ({exc.msg})", hint="one JSON object per line") from None
    return out


def to_record(example: Example) -> dict:
    """The JSON object for one example (inverse of :func:`from_record`)."""
    record = asdict(example)
    meta = record.pop("meta") or {}
    record["acceptable"] = list(example.acceptable)
    return {**meta, **record}


def dump_jsonl(examples: Iterable[Example], path: str | Path) -> None:
    """Write examples as JSON lines (UTF-8, one object per line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for example in examples:
            fh.write(json.dumps(to_record(example), ensure_ascii=False, sort_keys=True) + "\n")


def data_hash(examples: Iterable[Example]) -> str:
    """sha256 over the examples' canonical JSON, independent of their order.

    Why order-independent: shuffling or re-sorting the same data must not look like new data in a manifest.
    """
    lines = sorted(json.dumps(to_record(e), ensure_ascii=False, sort_keys=True) for e in examples)
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def shared_dir() -> Path:
    """The shared material folder: ``$SIEVE_SHARED`` or ``../shared`` next to the repository."""
    import os

    override = os.environ.get("SIEVE_SHARED")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1] / ".." / "shared"


def severity_split(name: str) -> Path:
    """Path of a split of the shared severity dataset (``train`` or ``dev``)."""
    return shared_dir() / "data" / "severity" / f"{name}.jsonl"


def group_key(example: Example) -> str:
    """Items that must land on the same side of a split: same repository (review comments), same commit
    (CVE fixes) or same rule file (analyser fixtures) — the id minus its last dash-separated part; items that
    name their group (analyser rules: ``tool:rule``) use it."""
    if example.meta.get("group"):
        return str(example.meta["group"])
    stem = example.id.rsplit("-", 1)[0] if "-" in example.id else example.id
    return f"{example.source.split('@')[0]}:{stem}"


def split_exam(examples: list[Example], fraction: float = 0.15, seed: int = 0) -> tuple[list[Example], list[Example]]:
    """(train, exam): a held-out exam taken from every source alike, stratified by label, grouped by
    :func:`group_key`.

    Why grouped: near-duplicates (same rule, same commit) on both sides would make the exam an echo of
    training and overstate accuracy. Why per source: groups differ wildly in size (one repository can hold
    a tenth of a review-comment dataset), so one grouped fold over everything took 44% of one source and
    6% of another; within each source the fold closest to ``fraction`` of it is held out instead.
    """
    from collections import defaultdict

    from sklearn.model_selection import StratifiedGroupKFold

    by_source: dict[str, list[int]] = defaultdict(list)
    for i, example in enumerate(examples):
        by_source[example.source.split("@")[0]].append(i)
    folds = max(2, round(1 / fraction))
    held: set[int] = set()
    for indices in by_source.values():
        groups = [group_key(examples[i]) for i in indices]
        if len(set(groups)) < folds:  # too few groups to split this source: it stays in training
            continue
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        fold_sets = [exam_idx for _, exam_idx in splitter.split(indices, [examples[i].label for i in indices], groups)]
        best = min(fold_sets, key=lambda f: abs(len(f) - fraction * len(indices)))
        held.update(indices[j] for j in best)
    return ([e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held])


def teacher_text(example: Example, code_chars: int = 0) -> str:
    """What the dataset teacher and the lexical prior read: exactly the student's view of the finding (origin
    and capped, folded review: :func:`bot.prompt.expert_text`); the code excerpt only on request (it made the
    teacher worse on dev: 0.63 vs 0.68)."""
    from bot.prompt import expert_text

    text = expert_text(example.review, str(example.meta.get("origin") or ""))
    return text + ("\n" + example.code[-code_chars:] if code_chars else "")


def tfidf_teacher(train: list[Example]):
    """A TF-IDF + logistic-regression classifier fitted on ``train`` (a 'dataset teacher')."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    features = make_union(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                          TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True))
    model = make_pipeline(features, LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced"))
    model.fit([teacher_text(e) for e in train], [e.label for e in train])
    return model


def teacher_probabilities(model, examples: list[Example]) -> list[dict[str, float]]:
    probs = model.predict_proba([teacher_text(e) for e in examples])
    classes = list(model.classes_)
    return [{label: float(row[classes.index(label)]) if label in classes else 0.0 for label in LABELS}
            for row in probs]


def with_teacher_soft_labels(train: list[Example], folds: int = 5, seed: int = 0) -> list[Example]:
    """Copies of ``train`` carrying cross-fitted (out-of-fold) TF-IDF teacher probabilities as ``soft``.

    Why out-of-fold: a teacher scoring its own training items is over-confident and would only echo the
    gold label; out-of-fold probabilities carry its real uncertainty, which is what distillation transfers.
    """
    from dataclasses import replace

    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    soft: list[dict[str, float] | None] = [None] * len(train)
    for fit_idx, held_idx in splitter.split(train, [e.label for e in train], [group_key(e) for e in train]):
        teacher = tfidf_teacher([train[i] for i in fit_idx])
        for i, probs in zip(held_idx, teacher_probabilities(teacher, [train[i] for i in held_idx])):
            soft[i] = probs
    return [replace(e, soft=s) for e, s in zip(train, soft)]


def balance_weights(examples: list[Example]) -> list[Example]:
    """Copies with ``weight`` multiplied by inverse label frequency (mean weight stays 1), for macro-F1."""
    from collections import Counter
    from dataclasses import replace

    counts = Counter(e.label for e in examples)
    raw = {label: len(examples) / (len(counts) * n) for label, n in counts.items()}
    return [replace(e, weight=e.weight * raw[e.label]) for e in examples]


def dedupe_reviews(examples: list[Example], keep: int = 1) -> list[Example]:
    """At most ``keep`` examples per identical review text (first ones kept, order preserved).

    Why: analyser fixtures and CVE items repeat one review text (a rule title, a CWE name) over many code
    excerpts with the same label; the copies cost training time and teach almost nothing new.
    """
    from collections import Counter

    seen: Counter[str] = Counter()
    out = []
    for example in examples:
        key = " ".join(example.review.split()).lower()
        if seen[key] < keep:
            out.append(example)
        seen[key] += 1
    return out
