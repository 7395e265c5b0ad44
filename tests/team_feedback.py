"""A team's harvested feedback store, written through the real store (SQLite, its migrations and upserts).

Each finding is a real review item of the shared severity data, posted as a Sieve comment on a pull request of
``octo/shop``; a maintainer with write access replied ``/sieve severity <gold level>``, or reacted 👍 when the
student had rated it right. That is what ``sieve feedback collect`` stores; ``sieve feedback export`` turns it
into the trusted feedback the retraining reads.
"""

from __future__ import annotations

from pathlib import Path

from bot.feedback import CommentInfo, FeedbackRecord
from bot.store import open_store
from training.exam import stratified_sample
from training.examples import Example, load_jsonl, severity_split

NOW = "2026-01-05T03:17:00Z"


def shared_items(n: int, seed: int = 11) -> list[Example]:
    """``n`` review items of the shared train split, balanced over the four levels."""
    return stratified_sample(load_jsonl(severity_split("train")), n, seed=seed)


def write_store(path: Path, items: list[Example], model: str = "team@0123456789ab") -> Path:
    """A feedback store holding one Sieve comment per item and a trusted maintainer's verdict on it."""
    rows = []
    for number, item in enumerate(items, 1):
        predicted = "minor" if number % 3 else item.label  # the student was right on every third finding
        info = CommentInfo(host="github", repo="octo/shop", number=100 + number % 7, comment_id=str(5000 + number),
                           url=f"http://127.0.0.1/octo/shop/pull/{100 + number % 7}#r{5000 + number}",
                           path="shop/app.py", line=number, predicted=predicted,
                           probabilities={"critical": 0.1, "major": 0.2, "minor": 0.5, "trivial": 0.2},
                           model=model, prompt_version="sieve-severity-v3", commit="a" * 40, code=item.code,
                           review=item.review, reviewer="ruff", created_at=NOW)
        agreed = predicted == item.label
        rows.append((info, FeedbackRecord(host="github", repo="octo/shop", comment_id=info.comment_id,
                                          voter="maint", vote=1 if agreed else 0, trusted=True,
                                          correction=None if agreed else item.label, created_at=NOW)))
    store = open_store(path)
    try:
        store.add_records(rows, NOW)
    finally:
        store.close()
    return path
