"""The feedback store: SQLite (WAL, ``PRAGMA user_version`` migrations, idempotent upserts).

Keys make collection idempotent: a comment is (host, repo, comment_id); a vote or correction is
(host, repo, comment_id, user). Collecting twice, or from two runners at once, counts each reaction once; a
reaction that disappeared is marked removed (kept for history, never counted); a changed one is updated.
Only SQLite is supported; other SQL URLs are out of scope for now.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.errors import ConfigError, StoreError
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
    # 2: who voted, by the host's stable user id (a login can be renamed and taken by someone else), and whether
    # the host's answer on their permission was unclear (trust unknown: left out like untrusted, but reported)
    """
    ALTER TABLE votes ADD COLUMN voter_id INTEGER;
    ALTER TABLE votes ADD COLUMN trust_unknown INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE corrections ADD COLUMN author_id INTEGER;
    ALTER TABLE corrections ADD COLUMN trust_unknown INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: team memory (bot.memory): the rule id a comment's marker names, and the entries a maintainer revoked
    """
    ALTER TABLE comments ADD COLUMN rule_id TEXT;
    CREATE TABLE memory_revoked (
        entry_id TEXT PRIMARY KEY, revoked_at TEXT NOT NULL, scope TEXT, direction TEXT);
    """,
    # 4: the tool's own level for the rule (the finding's origin as the student read it, for training)
    """
    ALTER TABLE comments ADD COLUMN level TEXT;
    """,
)
#: the columns of ``comments`` this version writes, by name (migrations only ever add columns)
_COMMENT_COLUMNS = ("host", "repo", "comment_id", "number", "url", "path", "line", "predicted", "probabilities",
                    "model", "prompt_version", "commit_sha", "code", "review", "reviewer", "created_at",
                    "collected_at", "rule_id", "level")


@dataclass
class SyncCounts:
    new: int = 0
    changed: int = 0
    removed: int = 0


#: seconds a run waits for another one holding the store's write lock before it gives up
LOCK_TIMEOUT_S = 30.0

# SQLite's primary result codes (an extended code carries one in its low byte)
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26


class Store:
    """One SQLite connection; every sync is one short IMMEDIATE transaction so parallel runners serialise.

    ``read_only`` (``sieve feedback stats`` / ``export``) opens the file with ``mode=ro``: nothing is written, not
    even the WAL switch or a migration, so a store on a read-only file or in a read-only folder can be read as
    long as its schema is current."""

    def __init__(self, path: str | Path, lock_timeout: float | None = None, *, read_only: bool = False,
                 require_current: bool = True) -> None:
        self.path = str(path)
        self.read_only = read_only
        self.lock_timeout = LOCK_TIMEOUT_S if lock_timeout is None else lock_timeout
        try:
            self.db = self._connect_read_only() if read_only else self._connect(self.path)
            self.db.row_factory = sqlite3.Row
            if read_only and require_current:
                self._check_current()
            elif read_only:  # a review reads an older store as it is (bot.memory checks the columns it finds)
                self._version_of_file()
            else:
                self.db.execute("PRAGMA journal_mode=WAL")
                self._migrate()
        except sqlite3.Error as exc:
            raise self._failure(exc, "opening") from None

    def _connect(self, target: str, uri: bool = False) -> sqlite3.Connection:
        db = sqlite3.connect(target, timeout=self.lock_timeout, isolation_level=None, uri=uri)
        db.execute(f"PRAGMA busy_timeout={int(self.lock_timeout * 1000)}")
        return db

    def _connect_read_only(self) -> sqlite3.Connection:
        """``mode=ro``. In a read-only folder SQLite cannot create the WAL index beside the file; when no WAL file
        is there (every write is in the main file) the file is then read as immutable, which needs no index."""
        uri = Path(self.path).resolve().as_uri() + "?mode=ro"
        db = self._connect(uri, uri=True)
        try:
            db.execute("PRAGMA user_version").fetchone()
            return db
        except sqlite3.OperationalError as exc:
            if _code(exc) not in (_READONLY, _CANTOPEN) or Path(self.path + "-wal").exists():
                raise
            db.close()
        db = self._connect(uri + "&immutable=1", uri=True)
        db.execute("PRAGMA user_version").fetchone()
        return db

    def _failure(self, exc: sqlite3.Error, doing: str) -> StoreError:
        """One StoreError that names the real cause of a SQLite failure and what to do about it."""
        code = _code(exc)
        if code in (_BUSY, _LOCKED):
            return self._locked()
        cause, hint = _CAUSES.get(code, (str(exc), "run again; if it keeps failing, pass --db with a new file"))
        kept = (" (nothing was imported)" if doing.startswith("importing") else
                " (nothing is half-written: what was saved before is kept)" if doing.startswith("saving") else "")
        return StoreError(f"{doing} the feedback store {self.path} failed: {cause}{kept}",
                          hint=hint.format(path=self.path))

    def _locked(self) -> StoreError:
        return StoreError(f"the feedback store {self.path} stayed locked by another process for "
                          f"{self.lock_timeout:g} s", hint="wait for the other sieve run to finish, then run again")

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` (waiting up to ``lock_timeout`` for the write lock) … ``COMMIT``: all or nothing.

        On any failure the transaction is rolled back and a SQLite error becomes one StoreError naming its cause.
        SQLite rolls back by itself on some errors (a full disk among them); the ROLLBACK is then skipped, and a
        ROLLBACK that fails is not allowed to replace the error that made it necessary."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._failure(exc, doing) from None
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException as exc:
            self._rollback()
            if isinstance(exc, sqlite3.Error):
                raise self._failure(exc, doing) from None
            raise

    def _rollback(self) -> None:
        if not self.db.in_transaction:
            return
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the cause is raised by the caller; SQLite discards an unfinished transaction on close anyway

    def _migrate(self) -> None:
        """Apply the migrations this version knows and the file has not seen; refuse a newer file."""
        version = self._version_of_file()
        for number in range(version, len(MIGRATIONS)):
            with self._transaction("upgrading"):
                if self.db.execute("PRAGMA user_version").fetchone()[0] == number:  # another runner may have won
                    for statement in MIGRATIONS[number].split(";"):
                        if statement.strip():
                            self.db.execute(statement)
                    self.db.execute(f"PRAGMA user_version = {number + 1}")

    def _version_of_file(self) -> int:
        version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise StoreError(f"the feedback store {self.path} has schema version {version}, newer than this "
                             f"Sieve knows ({len(MIGRATIONS)})", hint="upgrade Sieve or use another --db file")
        return version

    def _check_current(self) -> None:
        """A reading command migrates nothing: an older schema is one clear line saying how to upgrade it."""
        version = self._version_of_file()
        if version < len(MIGRATIONS):
            raise StoreError(f"the feedback store {self.path} has schema version {version} and needs an upgrade to "
                             f"{len(MIGRATIONS)} before it can be read",
                             hint="run `sieve feedback collect` on it once where the file is writable (that upgrades "
                                  "it), then read it again")

    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self.db.close()

    def sync(self, info: CommentInfo, records: list[FeedbackRecord], now: str) -> SyncCounts:
        """Upsert a comment and the full current set of its votes/corrections (absent ones → removed), in one
        transaction: a failure leaves this comment as it was and the comments synced before it untouched."""
        counts = SyncCounts()
        key = (info.host, info.repo, info.comment_id)
        with self._transaction(f"saving feedback on comment {info.comment_id} to"):
            self._upsert_comment(info, now)
            old = {r["voter"]: (r["vote"], bool(r["trusted"]), r["removed"], r["voter_id"], bool(r["trust_unknown"]))
                   for r in self.db.execute("SELECT voter, vote, trusted, removed, voter_id, trust_unknown FROM votes "
                                            "WHERE host=? AND repo=? AND comment_id=?", key)}
            current = {r.voter: r for r in records if r.vote != 0}
            for voter, rec in current.items():
                before = old.get(voter)
                known_id = before[3] if before is not None and before[3] is not None else rec.voter_id
                if before is None or before[2]:
                    counts.new += 1
                elif (before[0], before[1], known_id, before[4]) != (rec.vote, rec.trusted, rec.voter_id, rec.unknown):
                    counts.changed += 1  # a new vote, a new trust answer, or the login now names someone else
                elif before[3] is not None or rec.voter_id is None:
                    continue  # unchanged (a row from before schema 2 only gets its voter's id filled in)
                self.db.execute(
                    "INSERT INTO votes (host, repo, comment_id, voter, vote, trusted, created_at, removed, updated_at, "
                    "voter_id, trust_unknown) VALUES (?,?,?,?,?,?,?,0,?,?,?) "
                    "ON CONFLICT (host, repo, comment_id, voter) DO UPDATE SET vote=excluded.vote, "
                    "trusted=excluded.trusted, created_at=excluded.created_at, removed=0, "
                    "updated_at=excluded.updated_at, voter_id=excluded.voter_id, trust_unknown=excluded.trust_unknown",
                    (*key, voter, rec.vote, int(rec.trusted), rec.created_at, now, rec.voter_id, int(rec.unknown)))
            for voter, before in old.items():
                if voter not in current and not before[2]:
                    counts.removed += 1
                    self.db.execute("UPDATE votes SET removed=1, updated_at=? WHERE host=? AND repo=? AND "
                                    "comment_id=? AND voter=?", (now, *key, voter))
            self._sync_corrections(key, records, now)
        return counts

    def _upsert_comment(self, info: CommentInfo, now: str) -> None:
        self.db.execute(
            f"INSERT INTO comments ({', '.join(_COMMENT_COLUMNS)}) VALUES ({','.join('?' * len(_COMMENT_COLUMNS))}) "
            "ON CONFLICT (host, repo, comment_id) "
            "DO UPDATE SET url=excluded.url, predicted=excluded.predicted, probabilities=excluded.probabilities, "
            "model=excluded.model, prompt_version=excluded.prompt_version, commit_sha=excluded.commit_sha, "
            "code=excluded.code, review=excluded.review, collected_at=excluded.collected_at, "
            "rule_id=excluded.rule_id, level=excluded.level",
            (info.host, info.repo, info.comment_id, info.number, info.url, info.path, info.line, info.predicted,
             json.dumps(info.probabilities, sort_keys=True), info.model, info.prompt_version, info.commit,
             info.code, info.review, info.reviewer, info.created_at, now, info.rule_id, info.level))

    def _sync_corrections(self, key: tuple[str, str, str], records: list[FeedbackRecord], now: str) -> None:
        """Corrections mirror the thread: a deleted or edited reply updates the row, a gone one deletes it."""
        current = {r.voter: r for r in records if r.correction}
        keep = f" AND author NOT IN ({','.join('?' * len(current))})" if current else ""  # NOT IN () is invalid
        self.db.execute(f"DELETE FROM corrections WHERE host=? AND repo=? AND comment_id=?{keep}", (*key, *current))
        for author, rec in current.items():
            self.db.execute(
                "INSERT INTO corrections (host, repo, comment_id, author, level, trusted, created_at, updated_at, "
                "author_id, trust_unknown) VALUES (?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (host, repo, comment_id, author) DO UPDATE SET level=excluded.level, "
                "trusted=excluded.trusted, created_at=excluded.created_at, updated_at=excluded.updated_at, "
                "author_id=excluded.author_id, trust_unknown=excluded.trust_unknown",
                (*key, author, rec.correction, int(rec.trusted), rec.created_at, now, rec.voter_id, int(rec.unknown)))

    # --- reading ---------------------------------------------------------------------------------------------

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Every row of a query; a SQLite failure while reading is a StoreError naming its cause."""
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._failure(exc, "reading") from None

    def comments(self) -> list[CommentInfo]:
        rows = self._rows("SELECT * FROM comments ORDER BY host, repo, created_at, comment_id")
        return [CommentInfo(host=r["host"], repo=r["repo"], number=r["number"], comment_id=r["comment_id"],
                            url=r["url"], path=r["path"], line=r["line"], predicted=r["predicted"],
                            probabilities=json.loads(r["probabilities"] or "{}"), model=r["model"],
                            prompt_version=r["prompt_version"], commit=r["commit_sha"], code=r["code"],
                            review=r["review"], reviewer=r["reviewer"], created_at=r["created_at"] or "",
                            rule_id=r["rule_id"] if "rule_id" in r.keys() else None,  # noqa: SIM118 (Row: `in` is values)
                            level=r["level"] if "level" in r.keys() else None)  # noqa: SIM118
                for r in rows]

    def votes(self, include_removed: bool = False) -> dict[tuple[str, str, str], list[tuple[int, bool]]]:
        out: dict[tuple[str, str, str], list[tuple[int, bool]]] = {}
        sql = "SELECT * FROM votes" + ("" if include_removed else " WHERE removed=0")
        for r in self._rows(sql):
            out.setdefault((r["host"], r["repo"], r["comment_id"]), []).append((r["vote"], bool(r["trusted"])))
        return out

    def corrections(self) -> dict[tuple[str, str, str], list[tuple[str, bool, str]]]:
        out: dict[tuple[str, str, str], list[tuple[str, bool, str]]] = {}
        for r in self._rows("SELECT * FROM corrections"):
            out.setdefault((r["host"], r["repo"], r["comment_id"]), []).append(
                (r["level"], bool(r["trusted"]), r["created_at"] or ""))
        return out

    def not_trusted(self) -> dict[tuple[str, str, str], tuple[int, int]]:
        """Per comment, the current votes and corrections that do not count as trusted:
        (from users below the trust bar, from users whose permission the host did not answer clearly)."""
        out: dict[tuple[str, str, str], tuple[int, int]] = {}
        sql = ("SELECT host, repo, comment_id, SUM(trust_unknown = 0), SUM(trust_unknown) FROM ("
               "SELECT host, repo, comment_id, trust_unknown FROM votes WHERE removed=0 AND trusted=0 UNION ALL "
               "SELECT host, repo, comment_id, trust_unknown FROM corrections WHERE trusted=0) "
               "GROUP BY host, repo, comment_id")
        for r in self._rows(sql):
            out[(r[0], r[1], r[2])] = (int(r[3]), int(r[4]))
        return out

    def count(self, table: str, where: str = "1=1") -> int:
        if table not in ("comments", "votes", "corrections"):
            raise StoreError(f"no table {table!r} in the feedback store")
        return int(self._rows(f"SELECT COUNT(*) FROM {table} WHERE {where}")[0][0])

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self._rows(sql, params)

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
        # a maintainer is counted by the host's stable user id where the store has it (a login can change hands)
        voter = "COALESCE('id:' || x.voter_id, x.voter)" if "voter_id" in self._columns("votes") else "x.voter"
        author = ("COALESCE('id:' || x.author_id, x.author)" if "author_id" in self._columns("corrections")
                  else "x.author")
        votes = cursor.execute(f"SELECT {comment}, {voter}, x.vote, NULL FROM votes x {join} "
                               f"WHERE x.trusted = 1 AND x.removed = 0{where}", params).fetchall()
        fixes = cursor.execute(f"SELECT {comment}, {author}, 0, x.level FROM corrections x {join} "
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
        with self._transaction("saving a revocation to"):
            done = self.db.execute("INSERT OR IGNORE INTO memory_revoked VALUES (?,?,?,?)",
                                   (entry_id, now, scope, direction)).rowcount
        return bool(done)

    def add_records(self, items: list[tuple[CommentInfo, FeedbackRecord]], now: str) -> int:
        """Upsert comments and their users' votes and corrections in ONE transaction (all or nothing), without
        removing anyone else's: what ``sieve feedback import`` writes. Returns how many records were written."""
        with self._transaction("importing into"):
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
        return len(items)


#: primary result code → (the cause in words, what to do); ``{path}`` is the store's file
_CAUSES = {
    _FULL: ("the disk is full",
            "free space on the disk that holds {path}, or pass --db with a file on another disk, then run again"),
    _READONLY: ("the store is read-only",
                ("make {path} and its folder writable for this user, or pass --db with a writable file "
                 "(`sieve feedback stats` and `export` can read it as it is)")),
    _NOTADB: ("it is not a SQLite database",
              "pass --db with a Sieve feedback store, or with a new file name to start one"),
    _CORRUPT: ("the file is damaged (the database disk image is malformed)",
               "restore {path} from a copy, or pass --db with a new file"),
    _CANTOPEN: ("the file cannot be opened",
                "check that {path} is a file this user may read (and, to collect, write), in a folder it may write"),
    _IOERR: ("the disk reported an input/output error", "check the disk that holds {path}, then run again"),
}


#: words of SQLite's messages → primary result code, for an error that carries no code
_WORDS = (("locked", _LOCKED), ("busy", _BUSY), ("readonly", _READONLY), ("disk is full", _FULL),
          ("not a database", _NOTADB), ("malformed", _CORRUPT), ("unable to open", _CANTOPEN), ("disk i/o", _IOERR))


def _code(exc: sqlite3.Error) -> int:
    """SQLite's primary result code of an error (from the code Python keeps, else from the message)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    text = str(exc).lower()
    for words, primary in _WORDS:
        if words in text:
            return primary
    return -1


def open_store(path: str | Path, *, read_only: bool = False) -> Store:
    """Open (creating and migrating as needed) the SQLite feedback store at ``path``; ``read_only``: open an
    existing one for reading only (no migration, no write of any kind)."""
    if "://" in str(path) and not str(path).startswith("sqlite:///"):
        raise StoreError(f"only SQLite feedback stores are supported, not {str(path).split('://')[0]}",
                         hint="pass --db path/to/feedback.db")
    target = Path(str(path).removeprefix("sqlite:///"))
    if target.parent and not target.parent.exists():
        raise StoreError(f"the folder for the feedback store {target} does not exist", hint="create it first")
    if read_only and not target.is_file():
        raise ConfigError(f"there is no feedback store at {target}",
                          hint="run `sieve feedback collect` first, or pass --db with the store's path")
    return Store(target, read_only=read_only)


def open_for_reading(path: str | Path) -> Store | None:
    """The store at ``path`` opened read-only (no migration, nothing written), or None when there is no such file:
    a review without a store behaves exactly as one with memory off."""
    if "://" in str(path) and not str(path).startswith("sqlite:///"):
        raise StoreError(f"only SQLite feedback stores are supported, not {str(path).split('://')[0]}",
                         hint="pass --db path/to/feedback.db")
    target = Path(str(path).removeprefix("sqlite:///"))
    if not target.is_file():
        return None
    return Store(target, read_only=True, require_current=False)
