"""The SQLite feedback store: migrations, idempotent upserts, removal, two runners at once, clear errors."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.feedback import CommentInfo, FeedbackRecord
from bot.store import MIGRATIONS, open_for_reading, open_store

INFO = CommentInfo("gitlab", "g/p", 1, "55", "http://h/#note_55", "a.py", 3, "minor",
                   {"critical": 0.1, "major": 0.2, "minor": 0.6, "trivial": 0.1}, "m1", "p1", "abc", "+x", "r", "llm")


def rec(voter: str, vote: int, trusted: bool = True, correction: str | None = None) -> FeedbackRecord:
    return FeedbackRecord("gitlab", "g/p", "55", voter, vote, trusted, correction, "2024-01-01")


def test_migrates_once_and_reopens(tmp_path: Path):
    store = open_store(tmp_path / "f.db")
    assert store.version == len(MIGRATIONS)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.sync(INFO, [rec("a", 1)], "t1")
    store.close()
    again = open_store(f"sqlite:///{tmp_path / 'f.db'}")
    assert again.version == len(MIGRATIONS) and again.count("votes") == 1 and again.comments()[0] == INFO


def test_upserts_are_idempotent_changes_update_and_absence_removes(tmp_path: Path):
    store = open_store(tmp_path / "f.db")
    first = store.sync(INFO, [rec("a", 1), rec("b", -1, False), rec("c", 0, True, "major")], "t1")
    assert (first.new, first.changed, first.removed) == (2, 0, 0)
    same = store.sync(INFO, [rec("a", 1), rec("b", -1, False), rec("c", 0, True, "major")], "t2")
    assert (same.new, same.changed, same.removed) == (0, 0, 0)
    moved = store.sync(INFO, [rec("a", -1), rec("c", 0, True, "trivial")], "t3")
    assert (moved.new, moved.changed, moved.removed) == (0, 1, 1)
    assert store.votes() == {("gitlab", "g/p", "55"): [(-1, True)]}
    assert store.corrections() == {("gitlab", "g/p", "55"): [("trivial", True, "2024-01-01")]}
    back = store.sync(INFO, [rec("a", -1), rec("b", -1, False)], "t4")  # b reacted again; c's reply deleted
    assert (back.new, back.removed) == (1, 0) and store.corrections() == {}
    assert store.count("votes") == 2 and store.count("votes", "removed=1") == 0


def test_two_runners_at_once_count_each_reaction_once(tmp_path: Path):
    path = tmp_path / "f.db"
    open_store(path).close()
    totals: list[int] = []
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            store = open_store(path)
            for i in range(30):
                info = CommentInfo(**{**INFO.__dict__, "comment_id": str(i)})
                records = [FeedbackRecord("gitlab", "g/p", str(i), v, 1, True) for v in ("a", "b")]
                totals.append(store.sync(info, records, "t").new)
            store.close()
        except (sqlite3.Error, StoreError) as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(totals) == 60 and open_store(path).count("votes") == 60


def test_clear_errors(tmp_path: Path):
    with pytest.raises(StoreError, match="only SQLite"):
        open_store("postgresql://db/sieve")
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "nope" / "f.db")
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 9")
    with pytest.raises(StoreError, match="newer than this"):
        open_store(newer)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        open_store(junk)


def _version_one_store(path: Path) -> None:
    """A store as the first schema wrote it (before rule ids and revocations), with one trusted 👎."""
    with sqlite3.connect(path) as db:
        for statement in MIGRATIONS[0].split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        db.execute("INSERT INTO comments (host, repo, comment_id, path, line, predicted, review, reviewer) "
                   "VALUES ('github', 'Org/App', '9', 'tests/test_a.py', 3, 'major', 'S101 Use of assert', 'ruff')")
        db.execute("INSERT INTO votes VALUES ('github', 'Org/App', '9', 'ann', -1, 1, 't', 0, 't')")


def test_a_review_reads_an_older_store_without_changing_it(tmp_path: Path):
    path = tmp_path / "old.db"
    _version_one_store(path)
    store = open_for_reading(path)
    assert store.version == 1
    [reaction] = store.reactions("org/app")  # the repository is compared without case
    assert (reaction.rule, reaction.vote, reaction.user) == ("", -1, "ann") and store.revoked() == frozenset()
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.db.execute("DELETE FROM votes")
    store.close()
    assert open_for_reading(tmp_path / "absent.db") is None and not (tmp_path / "absent.db").exists()
    upgraded = open_store(path)  # a harvest migrates it, keeping what it holds
    assert upgraded.version == len(MIGRATIONS) and upgraded.reactions()[0].review == "S101 Use of assert"


def test_reactions_are_trusted_current_and_per_repository(tmp_path: Path):
    store = open_store(tmp_path / "f.db")
    info = CommentInfo(**{**INFO.__dict__, "rule_id": "B006", "reviewer": "ruff"})
    store.sync(info, [rec("a", -1), rec("b", 1, trusted=False), rec("c", 0, True, "trivial"), rec("d", -1)], "t1")
    store.sync(info, [rec("a", -1), rec("b", 1, trusted=False), rec("c", 0, True, "trivial")], "t2")  # d removed
    other = CommentInfo(**{**info.__dict__, "repo": "g/other", "comment_id": "56"})
    store.sync(other, [FeedbackRecord("gitlab", "g/other", "56", "a", 1, True)], "t3")
    mine = store.reactions("g/p")
    assert [(r.user, r.vote, r.correction, r.rule) for r in mine] == [("a", -1, None, "B006"),
                                                                     ("c", 0, "trivial", "B006")]
    assert len(store.reactions()) == 3 and store.comments()[0].rule_id == "B006"
    assert store.revoke("abc", "ruff B006", "down", "t4") and not store.revoke("abc", "ruff B006", "down", "t5")
    assert store.revoked() == frozenset({"abc"})
