"""The SQLite feedback store: migrations, idempotent upserts, removal, two runners at once, clear errors."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.feedback import CommentInfo, FeedbackRecord
from bot.store import MIGRATIONS, Store, open_for_reading, open_store

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
    with pytest.raises(StoreError, match="not a SQLite database"):
        open_store(junk)


# ---------------------------------------------------------------- failures name their cause and lose nothing
def _fill_to_the_limit(store, extra_pages: int = 0) -> None:
    """SQLite's own size cap: from now on the file may not grow (beyond ``extra_pages``): a "full disk"."""
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages + extra_pages}")


def test_a_full_disk_names_the_cause_and_keeps_what_was_saved(tmp_path: Path):
    store = open_store(tmp_path / "f.db")
    store.sync(INFO, [rec("a", 1)], "t1")
    _fill_to_the_limit(store)
    big = CommentInfo(**{**INFO.__dict__, "comment_id": "56", "code": "+x = 1\n" * 20_000})
    with pytest.raises(StoreError) as caught:
        store.sync(big, [FeedbackRecord("gitlab", "g/p", "56", "b", -1, True)], "t2")
    text = str(caught.value)
    assert "the disk is full" in text and "free space" in text and "rollback" not in text
    assert store.count("comments") == 1 and store.count("votes") == 1  # comment 56: nothing, not half
    store.db.execute("PRAGMA max_page_count = 1000000")  # space again: the same connection goes on
    store.sync(big, [FeedbackRecord("gitlab", "g/p", "56", "b", -1, True)], "t3")
    assert store.count("comments") == 2 and store.count("votes") == 2


def test_a_collect_that_fills_the_disk_keeps_every_comment_synced_before(tmp_path: Path):
    from bot import feedback_app
    from tests.fake_github import FakeGitHub
    from tests.test_github_host import BOT, TOKEN, findings_for, host_for, make_change, open_pull, run_review

    with FakeGitHub("octo", "app") as fake:
        fake.add_token(TOKEN, BOT)
        repo, base, head = make_change(tmp_path, edits=tuple(range(0, 60, 2)))
        open_pull(fake, repo, base, head)
        run_review(host_for(fake), findings_for(repo, base, head))
        for cid in fake.review_comments:
            fake.react("pulls", cid, "octo", "+1")
        store = open_store(tmp_path / "f.db")
        _fill_to_the_limit(store, extra_pages=2)
        with pytest.raises(StoreError, match="the disk is full"):
            feedback_app.collect(host_for(fake), "octo/app", None, store)
    saved = store.count("comments")
    assert 1 <= saved < len(fake.review_comments) == 30
    assert store.count("votes") == saved  # each saved comment has its vote; the failed one has neither
    assert not store.query("SELECT comment_id FROM comments WHERE comment_id NOT IN (SELECT comment_id FROM votes)")


def _permissions_enforced(tmp_path: Path) -> bool:
    """False where this user ignores file permissions (root, unless its DAC capabilities are dropped)."""
    probe = tmp_path / "probe"
    probe.write_text("x")
    probe.chmod(0o444)
    try:
        with probe.open("a"):
            return False
    except PermissionError:
        return True
    finally:
        probe.chmod(0o644)


@pytest.fixture
def enforced(tmp_path: Path) -> None:
    if not _permissions_enforced(tmp_path):
        pytest.skip("this user ignores file permissions (root): a read-only store cannot be made here")


def _filled(path: Path) -> None:
    store = open_store(path)
    store.sync(INFO, [rec("a", 1), rec("b", -1, False)], "t1")
    store.close()


def _read_commands(db: Path, out: Path, capsys) -> tuple[str, str]:
    from bot.cli import main

    capsys.readouterr()
    assert main(["feedback", "stats", "--db", str(db)]) == 0
    assert main(["feedback", "export", "--db", str(db), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_reading_commands_work_on_a_read_only_file(tmp_path: Path, enforced, capsys):
    db = tmp_path / "f.db"
    _filled(db)
    db.chmod(0o444)
    try:
        out, _ = _read_commands(db, tmp_path / "out.jsonl", capsys)
        assert "model=m1  severity=minor  posted=1  voted=1  up=1" in out and "wrote 1 example(s)" in out
        with pytest.raises(StoreError, match="the store is read-only"):
            Store(db).sync(INFO, [rec("c", 1)], "t2")
    finally:
        db.chmod(0o644)


def test_reading_commands_work_in_a_read_only_folder(tmp_path: Path, enforced, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    _filled(folder / "f.db")
    folder.chmod(0o555)
    try:
        out, err = _read_commands(folder / "f.db", tmp_path / "out.jsonl", capsys)
        assert "posted=1" in out and "wrote 1 example(s)" in out and "error" not in err
        assert sorted(p.name for p in folder.iterdir()) == ["f.db"]  # nothing written beside it
        with pytest.raises(StoreError, match="read-only"):
            open_store(folder / "f.db").sync(INFO, [rec("c", 1)], "t2")
    finally:
        folder.chmod(0o755)


def _old_store(path: Path) -> None:
    """A store as the first release of the schema wrote it (version 1), with one vote."""
    with sqlite3.connect(path) as db:
        db.executescript(MIGRATIONS[0])
        db.execute("INSERT INTO comments (host, repo, comment_id, predicted) VALUES ('gitlab', 'g/p', '55', 'minor')")
        db.execute("INSERT INTO votes (host, repo, comment_id, voter, vote, trusted) VALUES "
                   "('gitlab', 'g/p', '55', 'a', 1, 1)")
        db.execute("PRAGMA user_version = 1")
    path.chmod(0o444)


def test_an_old_read_only_store_says_it_needs_an_upgrade(tmp_path: Path, enforced, capsys):
    from bot.cli import main

    db = tmp_path / "f.db"
    _old_store(db)
    try:
        assert main(["feedback", "stats", "--db", str(db)]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "needs an upgrade" in err and "sieve feedback collect" in err
    finally:
        db.chmod(0o644)


def test_the_id_migration_keeps_old_votes_and_stores_ids(tmp_path: Path):
    db = tmp_path / "f.db"
    _old_store(db)
    db.chmod(0o644)
    store = open_store(db)
    assert store.version == len(MIGRATIONS)
    assert [(r["voter"], r["voter_id"], r["trust_unknown"]) for r in store.query("SELECT * FROM votes")] == [
        ("a", None, 0)]
    changed = store.sync(INFO, [FeedbackRecord("gitlab", "g/p", "55", "a", 1, True, voter_id=7),
                                FeedbackRecord("gitlab", "g/p", "55", "z", -1, False, voter_id=8, unknown=True)], "t")
    assert (changed.new, changed.changed) == (1, 0)  # z: new; a: the same vote, its id filled in
    assert {r["voter"]: r["voter_id"] for r in store.query("SELECT * FROM votes")} == {"a": 7, "z": 8}
    assert store.not_trusted() == {("gitlab", "g/p", "55"): (0, 1)}  # z: permission unknown
    again = store.sync(INFO, [FeedbackRecord("gitlab", "g/p", "55", "a", 1, True, voter_id=9)], "t")
    assert (again.changed, again.removed) == (1, 1)  # "a" is someone else now; z's vote is gone


@pytest.mark.parametrize("content,cause", [
    (b"this is not a database" * 100, "it is not a SQLite database"),
])
def test_reading_a_file_that_is_not_a_store_is_one_line(tmp_path: Path, capsys, content: bytes, cause: str):
    from bot.cli import main

    db = tmp_path / "f.db"
    db.write_bytes(content)
    assert main(["feedback", "stats", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and cause in err and "internal error" not in err
    assert main(["feedback", "stats", "--db", str(tmp_path / "nope.db")]) == 64
    assert "there is no feedback store at" in capsys.readouterr().err


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
