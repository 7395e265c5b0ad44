"""The feedback store: SQLite (WAL, ``PRAGMA user_version`` migrations, idempotent upserts).

Keys make collection idempotent: a comment is (host, repo, comment_id); a vote or correction is
(host, repo, comment_id, user). Collecting twice, or from two runners at once, counts each reaction once; a
reaction that disappeared is marked removed (kept for history, never counted); a changed one is updated.
Only SQLite is supported; other SQL URLs are out of scope for now.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.errors import StoreError
from bot.feedback import CommentInfo, FeedbackRecord

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE comments (
        host TEXT NOT NULL, repo TEXT NOT NULL, comment_id TEXT NOT NULL, number INTEGER, url TEXT,
        path TEXT, line INTEGER, predicted TEXT NOT NULL, probabilities TEXT, model TEXT, prompt_version TEXT,
        commit_sha TEXT, code TEXT, review TEXT, reviewer TEXT, created_at TEXT, collected_at TEXT,
        PRIMARY KEY (host, repo, comment_id));
    CREATE TABLE votes (
        host TEXT NOT NULL, repo TEXT NOT NULL, comment_id TEXT NOT NULL, voter TEXT NOT NULL,
        vote INTEGER NOT NULL, trusted INTEGER NOT NULL, created_at TEXT, removed INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT, PRIMARY KEY (host, repo, comment_id, voter));
    CREATE TABLE corrections (
        host TEXT NOT NULL, repo TEXT NOT NULL, comment_id TEXT NOT NULL, author TEXT NOT NULL,
        level TEXT NOT NULL, trusted INTEGER NOT NULL, created_at TEXT, updated_at TEXT,
        PRIMARY KEY (host, repo, comment_id, author));
    CREATE INDEX comments_model ON comments (model, predicted);
    """,
)


@dataclass
class SyncCounts:
    new: int = 0
    changed: int = 0
    removed: int = 0


#: seconds a run waits for another one holding the store's write lock before it gives up
LOCK_TIMEOUT_S = 30.0


class Store:
    """One SQLite connection; every sync is one short IMMEDIATE transaction so parallel runners serialise."""

    def __init__(self, path: str | Path, lock_timeout: float | None = None) -> None:
        self.path = str(path)
        self.lock_timeout = LOCK_TIMEOUT_S if lock_timeout is None else lock_timeout
        try:
            self.db = sqlite3.connect(self.path, timeout=self.lock_timeout, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute(f"PRAGMA busy_timeout={int(self.lock_timeout * 1000)}")
            self.db.execute("PRAGMA journal_mode=WAL")
            self._migrate()
        except sqlite3.OperationalError as exc:
            raise self._locked() if _is_lock(exc) else self._unopenable(exc) from None
        except sqlite3.DatabaseError as exc:
            raise self._unopenable(exc) from None

    def _unopenable(self, exc: Exception) -> StoreError:
        return StoreError(f"cannot open the feedback store {self.path}: {exc}",
                          hint="pass --db with a writable SQLite file (it is created if missing)")

    def _locked(self) -> StoreError:
        return StoreError(f"the feedback store {self.path} stayed locked by another process for "
                          f"{self.lock_timeout:g} s", hint="wait for the other sieve run to finish, then run again")

    def _begin(self) -> None:
        """Take the write lock (waiting up to ``lock_timeout``), or a clear StoreError."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_lock(exc):
                raise self._locked() from None
            raise

    def _migrate(self) -> None:
        """Apply the migrations this version knows and the file has not seen; refuse a newer file."""
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"the feedback store {self.path} has schema version {version}, newer than this "
                             f"Sieve knows ({len(MIGRATIONS)})", hint="upgrade Sieve or use another --db file")
        for number in range(version, len(MIGRATIONS)):
            self._begin()
            try:
                if self.db.execute("PRAGMA user_version").fetchone()[0] == number:  # another runner may have won
                    for statement in MIGRATIONS[number].split(";"):
                        if statement.strip():
                            self.db.execute(statement)
                    self.db.execute(f"PRAGMA user_version = {number + 1}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self.db.close()

    def sync(self, info: CommentInfo, records: list[FeedbackRecord], now: str) -> SyncCounts:
        """Upsert a comment and the full current set of its votes/corrections (absent ones → removed)."""
        counts = SyncCounts()
        key = (info.host, info.repo, info.comment_id)
        self._begin()
        try:
            self._upsert_comment(info, now)
            old = {r["voter"]: (r["vote"], r["trusted"], r["removed"]) for r in self.db.execute(
                "SELECT voter, vote, trusted, removed FROM votes WHERE host=? AND repo=? AND comment_id=?", key)}
            current = {r.voter: r for r in records if r.vote != 0}
            for voter, rec in current.items():
                before = old.get(voter)
                if before is None or before[2]:
                    counts.new += 1
                elif (before[0], bool(before[1])) != (rec.vote, rec.trusted):
                    counts.changed += 1
                else:
                    continue
                self.db.execute(
                    "INSERT INTO votes VALUES (?,?,?,?,?,?,?,0,?) ON CONFLICT (host, repo, comment_id, voter) DO "
                    "UPDATE SET vote=excluded.vote, trusted=excluded.trusted, created_at=excluded.created_at, "
                    "removed=0, updated_at=excluded.updated_at", (*key, voter, rec.vote, int(rec.trusted),
                                                                  rec.created_at, now))
            for voter, before in old.items():
                if voter not in current and not before[2]:
                    counts.removed += 1
                    self.db.execute("UPDATE votes SET removed=1, updated_at=? WHERE host=? AND repo=? AND "
                                    "comment_id=? AND voter=?", (now, *key, voter))
            self._sync_corrections(key, records, now)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return counts

    def _upsert_comment(self, info: CommentInfo, now: str) -> None:
        self.db.execute(
            "INSERT INTO comments VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (host, repo, comment_id) "
            "DO UPDATE SET url=excluded.url, predicted=excluded.predicted, probabilities=excluded.probabilities, "
            "model=excluded.model, prompt_version=excluded.prompt_version, commit_sha=excluded.commit_sha, "
            "code=excluded.code, review=excluded.review, collected_at=excluded.collected_at",
            (info.host, info.repo, info.comment_id, info.number, info.url, info.path, info.line, info.predicted,
             json.dumps(info.probabilities, sort_keys=True), info.model, info.prompt_version, info.commit,
             info.code, info.review, info.reviewer, info.created_at, now))

    def _sync_corrections(self, key: tuple[str, str, str], records: list[FeedbackRecord], now: str) -> None:
        """Corrections mirror the thread: a deleted or edited reply updates the row, a gone one deletes it."""
        current = {r.voter: r for r in records if r.correction}
        keep = f" AND author NOT IN ({','.join('?' * len(current))})" if current else ""  # NOT IN () is invalid
        self.db.execute(f"DELETE FROM corrections WHERE host=? AND repo=? AND comment_id=?{keep}", (*key, *current))
        for author, rec in current.items():
            self.db.execute(
                "INSERT INTO corrections VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (host, repo, comment_id, author) DO "
                "UPDATE SET level=excluded.level, trusted=excluded.trusted, created_at=excluded.created_at, "
                "updated_at=excluded.updated_at", (*key, author, rec.correction, int(rec.trusted), rec.created_at,
                                                   now))

    # --- reading ---------------------------------------------------------------------------------------------

    def comments(self) -> list[CommentInfo]:
        rows = self.db.execute("SELECT * FROM comments ORDER BY host, repo, created_at, comment_id").fetchall()
        return [CommentInfo(host=r["host"], repo=r["repo"], number=r["number"], comment_id=r["comment_id"],
                            url=r["url"], path=r["path"], line=r["line"], predicted=r["predicted"],
                            probabilities=json.loads(r["probabilities"] or "{}"), model=r["model"],
                            prompt_version=r["prompt_version"], commit=r["commit_sha"], code=r["code"],
                            review=r["review"], reviewer=r["reviewer"], created_at=r["created_at"] or "")
                for r in rows]

    def votes(self, include_removed: bool = False) -> dict[tuple[str, str, str], list[tuple[int, bool]]]:
        out: dict[tuple[str, str, str], list[tuple[int, bool]]] = {}
        sql = "SELECT * FROM votes" + ("" if include_removed else " WHERE removed=0")
        for r in self.db.execute(sql):
            out.setdefault((r["host"], r["repo"], r["comment_id"]), []).append((r["vote"], bool(r["trusted"])))
        return out

    def corrections(self) -> dict[tuple[str, str, str], list[tuple[str, bool, str]]]:
        out: dict[tuple[str, str, str], list[tuple[str, bool, str]]] = {}
        for r in self.db.execute("SELECT * FROM corrections"):
            out.setdefault((r["host"], r["repo"], r["comment_id"]), []).append(
                (r["level"], bool(r["trusted"]), r["created_at"] or ""))
        return out

    def count(self, table: str, where: str = "1=1") -> int:
        if table not in ("comments", "votes", "corrections"):
            raise StoreError(f"no table {table!r} in the feedback store")
        return int(self.db.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}").fetchone()[0])

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self.db.execute(sql, params).fetchall()


def _is_lock(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def open_store(path: str | Path) -> Store:
    """Open (creating and migrating as needed) the SQLite feedback store at ``path``."""
    if "://" in str(path) and not str(path).startswith("sqlite:///"):
        raise StoreError(f"only SQLite feedback stores are supported, not {str(path).split('://')[0]}",
                         hint="pass --db path/to/feedback.db")
    target = Path(str(path).removeprefix("sqlite:///"))
    if target.parent and not target.parent.exists():
        raise StoreError(f"the folder for the feedback store {target} does not exist", hint="create it first")
    return Store(target)
