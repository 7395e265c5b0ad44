"""`sieve feedback import`: the issue's row shape, one clear line per bad row, all-or-nothing writes, and imported
rows feeding `feedback export` and team memory like harvested ones."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bot import cli
from bot.store import open_store

ROW = {"repo": "org/name", "path": "src/x.py", "line": 12, "tool": "ruff", "rule": "S101",
       "review": "S101 Use of `assert` detected", "code": "", "severity": "major", "reaction": "+1",
       "correction": "trivial", "user": "alice", "trusted": True, "at": "2026-11-30T12:00:00Z"}


def write(tmp: Path, rows: list) -> Path:
    path = tmp / "reactions.jsonl"
    path.write_bytes(b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows))
    return path


def test_the_issue_row_imports_and_is_exported_like_a_harvested_one(tmp_path: Path, capsys):
    db = tmp_path / "f.db"
    rows = [ROW, {**ROW, "user": "bob", "reaction": "-1", "correction": None},
            {k: v for k, v in ROW.items() if k not in ("code", "correction", "at")} | {"user": "cy", "line": 40}]
    assert cli.main(["feedback", "import", str(write(tmp_path, rows)), "--db", str(db)]) == 0
    assert "imported 3 row(s)" in capsys.readouterr().out
    again = cli.main(["feedback", "import", str(write(tmp_path, rows)), "--db", str(db)])  # idempotent
    store = open_store(db)
    assert again == 0 and store.count("comments") == 2 and store.count("votes") == 3 and store.count("corrections") == 1
    assert {c.rule_id for c in store.comments()} == {"S101"}
    store.close()
    out = tmp_path / "curriculum.jsonl"
    assert cli.main(["feedback", "export", "--db", str(db), "--out", str(out)]) == 0
    labels = sorted((r["label"], r["correction"]) for r in map(json.loads, out.read_text().splitlines()))
    assert labels == [("major", None), ("trivial", "trivial")]  # alice's correction wins over bob's 👎


def test_an_imported_level_is_the_origin_the_export_shows(tmp_path: Path):
    db = tmp_path / "f.db"
    rows = [{**ROW, "level": "security"}, {**ROW, "line": 30, "review": "S101 again"},
            {**ROW, "line": 31, "tool": "llm", "rule": "", "review": "this leaks the token", "level": "high"}]
    assert cli.main(["feedback", "import", str(write(tmp_path, rows)), "--db", str(db)]) == 0
    out = tmp_path / "curriculum.jsonl"
    assert cli.main(["feedback", "export", "--db", str(db), "--out", str(out)]) == 0
    origins = {r["review"]: r["origin"] for r in map(json.loads, out.read_text().splitlines())}
    assert origins == {"S101 Use of `assert` detected": "ruff S101, level: security", "S101 again": "ruff S101",
                       "this leaks the token": ""}  # an LLM review has no tool: its level is not an origin


@pytest.mark.parametrize("row, message", [
    (b"{not json", "line 2: not JSON"),
    ([1, 2], "line 2: expected a JSON object, found list"),
    ({**ROW, "reaction": "up"}, 'line 2: reaction must be "+1" or "-1", not "up"'),
    ({**ROW, "reaction": 1}, 'line 2: reaction must be "+1" or "-1", not 1'),
    ({**ROW, "severity": "Major"}, 'line 2: severity must be one of critical, major, minor, trivial, not "Major"'),
    ({**ROW, "correction": "meh"}, "line 2: correction must be one of critical, major, minor, trivial or null"),
    ({**ROW, "line": "12"}, 'line 2: line must be a whole number ≥ 1, not "12"'),
    ({**ROW, "trusted": "yes"}, 'line 2: trusted must be true or false, not "yes"'),
    ({**ROW, "at": "yesterday"}, "line 2: at must be an ISO 8601 time"),
    ({k: v for k, v in ROW.items() if k != "user"}, "line 2: missing field 'user'"),
    ({**ROW, "corection": "minor"}, "line 2: unknown field 'corection'"),
    ({**ROW, "level": 3}, "line 2: level must be a string, not 3"),
    (b"\xff\xfe", "line 2: not UTF-8 text"),
])
def test_a_bad_row_is_one_clear_line_and_the_rest_is_imported(tmp_path: Path, capsys, row, message: str):
    db = tmp_path / "f.db"
    path = write(tmp_path, [ROW, row, {**ROW, "user": "bob"}])
    assert cli.main(["feedback", "import", str(path), "--db", str(db)]) == 2
    captured = capsys.readouterr()
    errors = captured.err.splitlines()
    assert errors[0].startswith(f"error: {path}: {message}") and len(errors) == 2 and "Traceback" not in captured.err
    assert "1 row(s) of" in errors[1] and "imported 2 row(s)" in captured.out
    assert open_store(db).count("votes") == 2


def test_an_import_that_fails_half_way_writes_nothing(tmp_path: Path, capsys):
    db = tmp_path / "f.db"
    open_store(db).close()
    with sqlite3.connect(db) as con:  # the store refuses the third write, as a full disk or a constraint would
        con.execute("CREATE TRIGGER refuse BEFORE INSERT ON votes WHEN NEW.voter = 'cy' "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    rows = [ROW, {**ROW, "user": "bob"}, {**ROW, "user": "cy"}, {**ROW, "user": "dee"}]
    assert cli.main(["feedback", "import", str(write(tmp_path, rows)), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "nothing was imported" in err and "Traceback" not in err
    store = open_store(db)
    assert store.count("votes") == store.count("comments") == store.count("corrections") == 0


def test_a_burst_of_untrusted_reactions_teaches_memory_nothing(tmp_path: Path, capsys):
    db = tmp_path / "f.db"
    burst = [{**ROW, "path": f"src/m{i}.py", "user": f"drive-by-{i % 100}", "trusted": False, "reaction": "-1",
              "correction": "trivial"} for i in range(300)]
    assert cli.main(["feedback", "import", str(write(tmp_path, burst)), "--db", str(db)]) == 0
    store = open_store(db)
    assert store.count("votes", "trusted=0") == 300 and store.reactions() == []
    store.close()
    capsys.readouterr()
    assert cli.main(["feedback", "memory", "--db", str(db)]) == 0
    assert capsys.readouterr().out.strip() == "0 entries, 0 applied at review time (threshold minor)"


def test_unreadable_inputs_are_clear(tmp_path: Path, capsys):
    assert cli.main(["feedback", "import", str(tmp_path / "missing.jsonl"), "--db", str(tmp_path / "f.db")]) == 64
    assert "error: cannot read" in capsys.readouterr().err
    assert cli.main(["feedback", "memory", "--db", str(tmp_path / "none.db")]) == 64
    assert "error: there is no feedback store at" in capsys.readouterr().err
