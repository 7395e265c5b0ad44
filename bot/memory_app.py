"""Team memory at the edges: the review's one call (``adjust``), ``sieve feedback import`` and
``sieve feedback memory [revoke ID]``. The decisions live in bot.memory (pure); this reads and writes the store.

The store is the one ``sieve feedback`` uses (the ``db`` setting, ``--db``), so a harvest and a review share one
file. A review opens it read-only and never creates it: with no file there, memory off (``memory = false``,
``--no-memory``) or no findings, the ratings are returned untouched and the review is exactly as without memory.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bot import feedback_import, memory
from bot.config import Config
from bot.errors import ConfigError, ImportRowsError
from bot.findings import Finding, Rating
from bot.store import Store, open_for_reading, open_store


def load(config: Config, repo: str | None) -> memory.Memory | None:
    """The memory the store holds for ``repo`` (every repository's when None), or None: no store, or memory off."""
    if not config.memory:
        return None
    store = open_for_reading(config.db)
    if store is None:
        return None
    try:
        return _learn(store, config, repo)
    finally:
        store.close()


def adjust(findings: list[Finding], ratings: list[Rating], config: Config, repo: str | None) -> list[Rating]:
    """The ratings after the team's memory (bot.memory.adjust); the same list when there is none to apply."""
    if not findings:
        return ratings
    remembered = load(config, repo)
    if remembered is None or remembered.empty:
        return ratings
    return memory.adjust(findings, ratings, remembered)


def import_file(store: Store, path: str) -> tuple[int, list[feedback_import.BadRow]]:
    """Import a JSONL file in one transaction; the bad rows are returned, the good ones written."""
    try:
        lines = Path(path).read_bytes().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", hint="pass a JSONL file of reactions") from None
    good, bad = feedback_import.parse_lines(lines)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return store.add_records(good, now), bad


def entry_line(entry: memory.Entry) -> str:
    """One line per entry: id, scope, direction, voters, comments (and whether it applies)."""
    state = "revoked" if entry.revoked else "applies" if entry.active else "split" if entry.blocking else "too few"
    return (f"{entry.id}  {entry.kind:<11} {entry.scope_text()}  {entry.direction_text()}  voters {entry.agree}"
            f"{f' (against {entry.against})' if entry.against else ''}  comments {entry.comments}  [{state}]")


def _learn(store: Store, config: Config, repo: str | None) -> memory.Memory:
    return memory.learn(store.reactions(repo), config.threshold, store.revoked(), store.remembered(repo))


def memory_command(args: argparse.Namespace, config: Config) -> int:
    """``sieve feedback memory [--repo R]`` lists entries; ``… memory revoke ID`` revokes one."""
    db = getattr(args, "db", None) or config.db
    if getattr(args, "memory_action", None) == "revoke":
        store = open_store(db)
        try:
            learned = _learn(store, config, None)
            entry = next((e for e in learned.entries if e.id == args.entry), None)
            if entry is None:
                raise ConfigError(f"no memory entry {args.entry!r} in {db}",
                                  hint="`sieve feedback memory` lists the entries and their ids")
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            fresh = store.revoke(entry.id, entry.scope_text(), entry.direction_text(), now)
        finally:
            store.close()
        print(f"revoked {entry.id}: {entry.scope_text()} {entry.direction_text()}" if fresh
              else f"{entry.id} was already revoked")
        return 0
    store = open_for_reading(db)
    if store is None:
        raise ConfigError(f"there is no feedback store at {db}",
                          hint="pass --db with the file `sieve feedback collect` or `import` wrote")
    try:
        learned = _learn(store, config, getattr(args, "repo", None))
    finally:
        store.close()
    entries = learned.entries
    for entry in entries:
        print(entry_line(entry))
    active = sum(e.active for e in entries)
    print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, {active} applied at review "
          f"time (threshold {config.threshold.label})")
    return 0


def feedback_command(args: argparse.Namespace, config: Config) -> int:
    """``sieve feedback import FILE`` and ``sieve feedback memory …``."""
    if args.action == "memory":
        return memory_command(args, config)
    store = open_store(getattr(args, "db", None) or config.db)
    try:
        written, bad = import_file(store, args.file)
    finally:
        store.close()
    for row in bad:
        print(f"error: {args.file}: {row}", file=sys.stderr)
    print(f"imported {written} row(s) from {args.file}" + (f"; {len(bad)} bad row(s) left out" if bad else ""))
    if bad:
        raise ImportRowsError(f"{len(bad)} row(s) of {args.file} were not imported (listed above); the other "
                              f"{written} were", hint="fix those rows and import the file again (rows already "
                              "imported are updated, not repeated)")
    return 0
