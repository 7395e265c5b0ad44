"""Exams: a list of examples plus where they came from, and the held-out exam that never trains.

Why a separate module: the promise "the held-out exam never enters training" must be checked in one
place, by content (normalised code + review), not by id alone — the same finding can come back under a
new id from a teacher, a feedback export or an earlier curriculum.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bot.errors import TrainingError
from bot.severity import LABELS
from training.examples import Example, from_record, to_record

_SPACE = re.compile(r"\s+")


def item_key(example: Example) -> str:
    """Content key of an item: sha256 of its code and review with whitespace and case normalised.

    Why normalised: a re-indented hunk or a review with a trailing newline is still the same item.
    """
    code = _SPACE.sub(" ", example.code or "").strip().lower()
    review = _SPACE.sub(" ", example.review or "").strip().lower()
    return hashlib.sha256(f"{code}\x00{review}".encode()).hexdigest()[:32]


@dataclass
class Exam:
    """An exam: items to answer, plus metadata saying what it is for."""

    items: list[Example]
    name: str = "exam"
    kind: str = "practice"  # "practice" (may be trained on later) or "heldout" (never trains)
    seed: int | None = None
    origin: str = ""  # which teacher or file produced it
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def __len__(self) -> int:
        return len(self.items)

    def item_keys(self) -> set[str]:
        """Content keys of every item (see :func:`item_key`)."""
        return {item_key(e) for e in self.items}

    def ids(self) -> set[str]:
        return {e.id for e in self.items if e.id}

    def save(self, path: str | Path) -> Path:
        """Write the exam as one JSON file (metadata + items) so a run can be replayed."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"name": self.name, "kind": self.kind, "seed": self.seed, "origin": self.origin,
                "created": self.created, "items": [to_record(e) for e in self.items]}
        path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Exam:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            items = [from_record(r, f"{path}:item {i}") for i, r in enumerate(data["items"])]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise TrainingError(f"cannot read exam {path}: {exc}",
                                hint="pass a file written by `sieve train exam`") from None
        return cls(items=items, name=data.get("name", path.stem), kind=data.get("kind", "practice"),
                   seed=data.get("seed"), origin=data.get("origin", ""), created=data.get("created", ""))


def stratified_sample(pool: list[Example], n: int, seed: int) -> list[Example]:
    """Draw ``n`` items spread as evenly as the pool allows over the four labels (seeded).

    Why balanced: an exam dominated by 'trivial' would reward a student that always says 'trivial'.
    Labels with too few items give their unused share to the others.
    """
    rng = random.Random(seed)
    by_label: dict[str, list[Example]] = defaultdict(list)
    for example in pool:
        by_label[example.label].append(example)
    for items in by_label.values():
        rng.shuffle(items)
    picked: list[Example] = []
    want = min(n, len(pool))
    while len(picked) < want:
        open_labels = [label for label in LABELS if by_label.get(label)]
        share = max(1, (want - len(picked)) // max(1, len(open_labels)))
        for label in open_labels:
            take = by_label[label][:share]
            del by_label[label][:share]
            picked.extend(take[: want - len(picked)])
            if len(picked) >= want:
                break
    rng.shuffle(picked)
    return picked


def split_heldout(examples: list[Example], n: int, seed: int = 0,
                  name: str = "heldout") -> tuple[Exam, list[Example]]:
    """Cut a balanced held-out exam of ``n`` items off ``examples``; returns (exam, the rest).

    Items whose content equals a held-out item are removed from the rest too (duplicates in the data).
    """
    if n <= 0 or n >= len(examples):
        raise TrainingError(f"cannot hold out {n} of {len(examples)} examples",
                            hint="choose a held-out size between 1 and the number of examples minus one")
    chosen = stratified_sample(list(examples), n, seed)
    exam = Exam(items=chosen, name=name, kind="heldout", seed=seed, origin="split")
    return exam, exclude(examples, exam)


def exclude(examples: Iterable[Example], heldout: Exam | set[str] | None) -> list[Example]:
    """The examples whose content is not in the held-out exam."""
    if heldout is None:
        return list(examples)
    keys = heldout.item_keys() if isinstance(heldout, Exam) else heldout
    return [e for e in examples if item_key(e) not in keys]


def assert_no_leak(training: Iterable[Example], heldout: Exam | None) -> None:
    """Refuse training data that contains a held-out item (by content key or by id)."""
    if heldout is None:
        return
    keys, ids = heldout.item_keys(), heldout.ids()
    leaked = [e.id or item_key(e) for e in training if item_key(e) in keys or (e.id and e.id in ids)]
    if leaked:
        raise TrainingError(f"{len(leaked)} held-out exam item(s) found in the training data "
                            f"(first: {leaked[0]})",
                            hint="the held-out exam must never be trained on; drop those items with exam.exclude()")
