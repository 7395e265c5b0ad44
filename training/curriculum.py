"""Curricula: what the student trains on next, built from the teacher, the maintainers and earlier rounds.

Merging rules, decided here only:

* sources in priority order — maintainers' feedback, then teacher-written items, then earlier curricula;
  an item seen twice (same normalised code + review) keeps the first, higher-priority version;
* a rejected rating (vote −1, no correction) says "this should not have been posted": as team memory reads it,
  at most the level below the posting threshold (or below the posted level, if lower); it trains on the levels
  left (``meta["allowed"]``), with a lower weight;
* untrusted feedback is dropped unless asked for;
* items in a weak area (level or source the student failed) get weight × λ; weights are rescaled to
  mean 1 so the learning rate means the same thing every round;
* a held-out exam item is never included (checked by content, by :func:`training.exam.assert_no_leak`).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.errors import TrainingError
from bot.severity import LABELS
from training.evaluate import source_group
from training.exam import Exam, assert_no_leak, item_key
from training.examples import Example, dump_jsonl, from_record, load_jsonl


@dataclass
class CurriculumConfig:
    """How a curriculum weighs its parts."""

    weak_lambda: float = 2.0  # λ_t: weight multiplier for items in a weak level or source area
    feedback_weight: float = 1.5  # maintainers' confirmations and corrections count more than teacher items
    negative_weight: float = 0.5  # a bare rejection (👎, no correction) carries less information
    #: the posting threshold a bare 👎 is read against: "this should not have been posted" rules out the
    #: threshold's level and every level above it (or, when the comment was posted below the threshold, its
    #: own level and above) — the reading team memory gives the same 👎 (docs/memory.md, the combination rule)
    threshold: str = "minor"
    #: a team's 👎 is rarer than its 👍 (Sieve posts what it believes), so a round hears mostly "yes": when set,
    #: the rows that ask for a lower level (bare 👎, corrections downward) are weighted up, at most ×4, until they
    #: weigh as much as the rest of the feedback (:func:`balance_feedback`)
    balance: bool = False
    previous_weight: float = 0.7  # items carried over from earlier curricula (decays each round)
    include_untrusted: bool = False  # also use votes from users the host does not trust
    max_items: int | None = None  # cap (highest weights kept first); None keeps everything
    seed: int = 0


@dataclass
class Curriculum:
    examples: list[Example]
    stats: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: str | Path) -> Path:
        """``curriculum.jsonl`` + ``curriculum.stats.json`` in ``folder``."""
        folder = Path(folder)
        dump_jsonl(self.examples, folder / "curriculum.jsonl")
        (folder / "curriculum.stats.json").write_text(json.dumps(self.stats, indent=1), encoding="utf-8")
        return folder / "curriculum.jsonl"


def areas_of(example: Example) -> tuple[str, str]:
    """The weak-area keys an item belongs to: its level and its source group."""
    return f"level:{example.label}", f"source:{source_group(example.source, example.id)}"


def feedback_example(record: dict[str, Any], config: CurriculumConfig, where: str = "") -> Example | None:
    """One ``sieve feedback export`` record → an Example (None when it must not train)."""
    trusted = record.get("trust", "trusted") in ("trusted", True, 1)
    if not trusted and not config.include_untrusted:
        return None
    example = from_record(record, where)
    example.weight = config.feedback_weight * (1.0 if trusted else 0.5)
    vote = int(record.get("vote") or 0)
    if vote < 0 and not record.get("correction"):
        rejected = str(record.get("predicted") or example.label)
        below = rejection_allows(rejected, config.threshold)
        probs = record.get("probabilities") or {}
        others = {label: float(probs.get(label, 0.0)) + 0.05 for label in below}
        total = sum(others.values())
        example.soft = {label: others.get(label, 0.0) / total for label in LABELS}
        example.label = max(others, key=others.__getitem__)
        example.acceptable = tuple(others)
        example.weight *= config.negative_weight
        example.meta["rejected"] = rejected  # a bare rejection: finetune trains "none of these", not the runner-up
        example.meta["allowed"] = list(below)
    return example


def asks_lower(example: Example) -> bool:
    """A feedback row asking for a lower level than posted: a bare 👎, or a correction below the posted level."""
    meta = example.meta or {}
    if meta.get("rejected"):
        return True
    posted, correction = meta.get("predicted"), meta.get("correction")
    return posted in LABELS and correction in LABELS and LABELS.index(correction) > LABELS.index(posted)


def balance_feedback(examples: Sequence[Example], cap: float = 4.0) -> dict[str, float]:
    """Weight up, in place, the feedback rows that ask for a lower level until they weigh as much as the others
    (never down, at most ``cap`` times). Returns the factor and both sides' weights before it."""
    down = [e for e in examples if asks_lower(e)]
    down_weight = sum(e.weight for e in down)
    up_weight = sum(e.weight for e in examples) - down_weight
    factor = min(cap, up_weight / down_weight) if down_weight > 0 and up_weight > down_weight else 1.0
    for e in down:
        e.weight *= factor
    return {"factor": round(factor, 3), "down": round(down_weight, 3), "up": round(up_weight, 3)}


def allowed_levels(example: Example) -> tuple[str, ...] | None:
    """The levels a feedback row's bare 👎 leaves possible (``meta["allowed"]``, else all but the rejected one);
    None when the row is no bare rejection."""
    meta = example.meta or {}
    named = tuple(x for x in meta.get("allowed") or () if x in LABELS)
    rejected = meta.get("rejected")
    if named:
        return named
    return tuple(x for x in LABELS if x != rejected) if rejected in LABELS else None


def rejection_allows(posted: str, threshold: str) -> tuple[str, ...]:
    """The levels a bare 👎 on a comment posted at ``posted`` leaves possible: the level team memory reads it as
    asking for at most (:func:`bot.memory_learn.rejection_target`) and those below it."""
    from bot.memory_learn import rejection_target
    from bot.severity import parse_severity

    if posted not in LABELS or threshold not in LABELS:
        raise TrainingError(f"not a severity level: {posted if posted not in LABELS else threshold!r}",
                            hint="levels are " + ", ".join(LABELS))
    return LABELS[LABELS.index(rejection_target(posted, parse_severity(threshold))):]


def load_feedback(path: str | Path, config: CurriculumConfig | None = None) -> list[Example]:
    """Read a feedback export (JSONL); drops records that must not train (see :func:`feedback_example`)."""
    config = config or CurriculumConfig()
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"no feedback export at {path}", hint="run `sieve feedback export --out FILE` first")
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainingError(f"{path}:{number}: not JSON ({exc.msg})", hint="one JSON object per line") from None
            example = feedback_example(record, config, f"{path}:{number}")
            if example is not None:
                out.append(example)
    return out


def load_labeled(path: str | Path, config: CurriculumConfig | None = None) -> list[Example]:
    """Gold-labeled items from a dataset file or a feedback export, for a teacher to examine with.

    Feedback records (they carry ``vote``) go through :func:`feedback_example`; a bare rejection says only
    "not that level", which cannot grade an answer, so it is left out here (curricula still use it).
    """
    config = config or CurriculumConfig()
    out = []
    for example in load_jsonl(path):
        if "vote" in example.meta:
            record = {**example.meta, "code": example.code, "review": example.review, "label": example.label,
                      "acceptable": list(example.acceptable), "source": example.source, "id": example.id,
                      "lang": example.lang}
            example = feedback_example(record, config)
            if example is None or example.meta.get("rejected"):
                continue
        out.append(example)
    return out


def _copy(example: Example, weight: float, origin: str) -> Example:
    meta = {**example.meta, "origin": origin}
    return Example(code=example.code, review=example.review, label=example.label, weight=weight,
                   soft=dict(example.soft) if example.soft else None, acceptable=example.acceptable,
                   source=example.source, id=example.id, lang=example.lang, meta=meta)


def build_curriculum(*, teacher: Sequence[Example] = (), feedback: Sequence[Example] = (),
                     previous: Sequence[Example] = (), weak_areas: Iterable[str] = (),
                     heldout: Exam | None = None, config: CurriculumConfig | None = None) -> Curriculum:
    """Merge, dedupe, drop held-out items and weight weak areas up; see the module docstring for the rules."""
    config = config or CurriculumConfig()
    weak = set(weak_areas)
    held = heldout.item_keys() if heldout else set()
    seen: set[str] = set()
    merged: list[Example] = []
    counts = {"feedback": 0, "teacher": 0, "previous": 0, "duplicates": 0, "heldout_dropped": 0, "weak": 0}
    parts = (("feedback", feedback, 1.0), ("teacher", teacher, 1.0), ("previous", previous, config.previous_weight))
    for origin, items, factor in parts:
        for example in items:
            key = item_key(example)
            if key in held or (heldout and example.id and example.id in heldout.ids()):
                counts["heldout_dropped"] += 1
                continue
            if key in seen:
                counts["duplicates"] += 1
                continue
            seen.add(key)
            weight = example.weight * factor
            if weak.intersection(areas_of(example)):
                weight *= config.weak_lambda
                counts["weak"] += 1
            merged.append(_copy(example, weight, origin))
            counts[origin] += 1
    merged = _cap(merged, config)
    _normalise(merged)
    assert_no_leak(merged, heldout)
    counts["total"] = len(merged)
    counts["labels"] = {label: sum(e.label == label for e in merged) for label in LABELS}
    counts["weak_areas"] = sorted(weak)
    return Curriculum(examples=merged, stats=counts)


def _cap(items: list[Example], config: CurriculumConfig) -> list[Example]:
    if config.max_items is None or len(items) <= config.max_items:
        return items
    rng = random.Random(config.seed)
    order = sorted(items, key=lambda e: (-e.weight, rng.random()))
    return order[: config.max_items]


def _normalise(items: list[Example]) -> None:
    """Rescale weights to mean 1 (relative weights are what the curriculum decides)."""
    total = sum(e.weight for e in items)
    if items and total > 0:
        scale = len(items) / total
        for example in items:
            example.weight = round(example.weight * scale, 6)


def weighted_sample(items: Sequence[Example], weights: Sequence[float], n: int, seed: int) -> list[Example]:
    """``n`` distinct items drawn with probability proportional to ``weights`` (Efraimidis–Spirakis keys)."""
    rng = random.Random(seed)
    keyed = [(math.log(max(rng.random(), 1e-300)) / w, i) for i, w in enumerate(weights) if w > 0]
    keyed.sort(reverse=True)
    return [items[i] for _, i in keyed[:n]]
