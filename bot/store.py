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
from bot.memory import Reaction

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
    # team memory (bot.memory): the rule id a comment's marker names, and the entries a maintainer revoked
    """
    ALTER TABLE comments ADD COLUMN rule_id TEXT;
    CREATE TABLE memory_revoked (
        entry_id TEXT PRIMARY KEY, revoked_at TEXT NOT NULL, scope TEXT, direction TEXT);
    """,
)
#: the columns of ``comments`` this version writes, by name (migrations only ever add columns)
_COMMENT_COLUMNS = ("host", "repo", "comment_id", "number", "url", "path", "line", "predicted", "probabilities",
                    "model", "prompt_version", "commit_sha", "code", "review", "reviewer", "created_at",
                    "collected_at", "rule_id")


@dataclass
class SyncCounts:
    new: int = 0
    changed: int = 0
    removed: int = 0


#: seconds a run waits for another one holding the store's write lock before it gives up
LOCK_TIMEOUT_S = 30.0


class Store:
    """One SQLite connection; every sync is one short IMMEDIATE transaction so parallel runners serialise."""

    def __init__(self, path: str | Path, lock_timeout: float | None = None, *, read_only: bool = False) -> None:
        self.path = str(path)
        self.lock_timeout = LOCK_TIMEOUT_S if lock_timeout is None else lock_timeout
        try:
            target = f"{Path(self.path).resolve().as_uri()}?mode=ro" if read_only else self.path
            self.db = sqlite3.connect(target, timeout=self.lock_timeout, isolation_level=None, uri=read_only)
            self.db.row_factory = sqlite3.Row
            self.db.execute(f"PRAGMA busy_timeout={int(self.lock_timeout * 1000)}")
            if read_only:  # a review reads the file as it is: no migration, nothing written
                self._check_version()
                return
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

    def _check_version(self) -> int:
        """The file's schema version; a StoreError when it is newer than this Sieve knows."""
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"the feedback store {self.path} has schema version {version}, newer than this "
                             f"Sieve knows ({len(MIGRATIONS)})", hint="upgrade Sieve or use another --db file")
        return int(version)

    def _migrate(self) -> None:
        """Apply the migrations this version knows and the file has not seen; refuse a newer file."""
        version = self._check_version()
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
            f"INSERT INTO comments ({', '.join(_COMMENT_COLUMNS)}) VALUES ({','.join('?' * len(_COMMENT_COLUMNS))}) "
            "ON CONFLICT (host, repo, comment_id) "
            "DO UPDATE SET url=excluded.url, predicted=excluded.predicted, probabilities=excluded.probabilities, "
            "model=excluded.model, prompt_version=excluded.prompt_version, commit_sha=excluded.commit_sha, "
            "code=excluded.code, review=excluded.review, collected_at=excluded.collected_at, "
            "rule_id=excluded.rule_id",
            (info.host, info.repo, info.comment_id, info.number, info.url, info.path, info.line, info.predicted,
             json.dumps(info.probabilities, sort_keys=True), info.model, info.prompt_version, info.commit,
             info.code, info.review, info.reviewer, info.created_at, now, info.rule_id))

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
                            review=r["review"], reviewer=r["reviewer"], created_at=r["created_at"] or "",
                            rule_id=r["rule_id"] if "rule_id" in r.keys() else None)  # noqa: SIM118 (Row: `in` is values)
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

    # --- team memory (bot.memory) ------------------------------------------------------------------------------

    def _columns(self, table: str) -> set[str]:
        """The table's columns; empty when the file does not have it (an older or a new, empty store)."""
        return {r["name"] for r in self.db.execute(f"PRAGMA table_info({table})")}

    def reactions(self, repo: str | None = None) -> list[Reaction]:
        """Every trusted, current vote and correction, one Reaction per (comment, maintainer); only ``repo``'s
        (compared without case) when given. Untrusted and removed ones never leave the store this way."""
        columns = self._columns("comments")
        if not columns:
            return []
        comment = ("c.host, c.repo, c.comment_id, c.reviewer, c.path, c.review, c.predicted, "
                   + ("c.rule_id" if "rule_id" in columns else "NULL"))
        join = "JOIN comments c ON x.host = c.host AND x.repo = c.repo AND x.comment_id = c.comment_id"
        where, params = (" AND lower(c.repo) = lower(?)", (repo,)) if repo else ("", ())
        cursor = self.db.cursor()
        cursor.row_factory = None  # plain tuples: 10,000 reactions are read on every review
        votes = cursor.execute(f"SELECT {comment}, x.voter, x.vote, NULL FROM votes x {join} "
                               f"WHERE x.trusted = 1 AND x.removed = 0{where}", params).fetchall()
        fixes = cursor.execute(f"SELECT {comment}, x.author, 0, x.level FROM corrections x {join} "
                               f"WHERE x.trusted = 1{where}", params).fetchall()
        found: dict[tuple[str, str, str, str], list[Any]] = {}
        for r in (*votes, *fixes):  # (host, repo, id, reviewer, path, review, predicted, rule, user, vote, level)
            row = found.setdefault((r[0], r[1], r[2], r[8]), list(r))
            row[9] = r[9] or row[9]
            row[10] = r[10] or row[10]
        return [Reaction(comment=f"{k[0]}/{k[1]}/{k[2]}", repo=r[1], source=r[3] or "", rule=r[7] or "",
                         path=r[4] or "", review=r[5] or "", posted=r[6], user=r[8], vote=int(r[9]), correction=r[10])
                for k, r in sorted(found.items())]

    def remembered(self, repo: str | None = None) -> tuple[tuple[str, str, str, str], ...]:
        """(reviewer, rule id, review, path) of every remembered comment, reacted to or not (of ``repo`` when
        given): memory learns from them which path names recur in the tree (``tests/``, ``__init__.py``)."""
        columns = self._columns("comments")
        if not columns:
            return ()
        rule = "rule_id" if "rule_id" in columns else "''"
        where, params = (" WHERE lower(repo) = lower(?)", (repo,)) if repo else ("", ())
        rows = self.db.execute(f"SELECT DISTINCT reviewer, {rule}, review, path FROM comments{where}", params)
        return tuple((r[0] or "", r[1] or "", r[2] or "", r[3] or "") for r in rows)

    def revoked(self) -> frozenset[str]:
        """Ids of the memory entries a maintainer revoked (never applied again)."""
        if not self._columns("memory_revoked"):
            return frozenset()
        return frozenset(r[0] for r in self.db.execute("SELECT entry_id FROM memory_revoked"))

    def revoke(self, entry_id: str, scope: str, direction: str, now: str) -> bool:
        """Mark an entry revoked (the reactions behind it stay); False when it already was."""
        self._begin()
        try:
            done = self.db.execute("INSERT OR IGNORE INTO memory_revoked VALUES (?,?,?,?)",
                                   (entry_id, now, scope, direction)).rowcount
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return bool(done)

    def add_records(self, items: list[tuple[CommentInfo, FeedbackRecord]], now: str) -> int:
        """Upsert comments and their users' votes and corrections in ONE transaction (all or nothing), without
        removing anyone else's: what ``sieve feedback import`` writes. Returns how many records were written."""
        self._begin()
        try:
            for info, rec in items:
                self._upsert_comment(info, now)
                key = (info.host, info.repo, info.comment_id)
                if rec.vote:
                    self.db.execute(
                        "INSERT INTO votes (host, repo, comment_id, voter, vote, trusted, created_at, removed, "
                        "updated_at) VALUES (?,?,?,?,?,?,?,0,?) ON CONFLICT (host, repo, comment_id, voter) DO UPDATE "
                        "SET vote=excluded.vote, trusted=excluded.trusted, created_at=excluded.created_at, removed=0, "
                        "updated_at=excluded.updated_at", (*key, rec.voter, rec.vote, int(rec.trusted),
                                                           rec.created_at, now))
                if rec.correction:
                    self.db.execute(
                        "INSERT INTO corrections (host, repo, comment_id, author, level, trusted, created_at, "
                        "updated_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (host, repo, comment_id, author) DO UPDATE "
                        "SET level=excluded.level, trusted=excluded.trusted, created_at=excluded.created_at, "
                        "updated_at=excluded.updated_at", (*key, rec.voter, rec.correction, int(rec.trusted),
                                                           rec.created_at, now))
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            self.db.execute("ROLLBACK")
            raise StoreError(f"writing to the feedback store {self.path} failed ({exc}); nothing was imported",
                             hint="check the file and the disk, then run the import again") from None
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return len(items)


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


def open_for_reading(path: str | Path) -> Store | None:
    """The store at ``path`` opened read-only (no migration, nothing written), or None when there is no such file:
    a review without a store behaves exactly as one with memory off."""
    if "://" in str(path) and not str(path).startswith("sqlite:///"):
        raise StoreError(f"only SQLite feedback stores are supported, not {str(path).split('://')[0]}",
                         hint="pass --db path/to/feedback.db")
    target = Path(str(path).removeprefix("sqlite:///"))
    if not target.is_file():
        return None
    return Store(target, read_only=True)
