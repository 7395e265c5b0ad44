"""The vendor-rule teacher: ruff's real catalogue, SARIF rule metadata and the shared analyser rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.errors import TrainingError
from bot.reviewers.origin import ruff_catalogue, ruff_level, sarif_level
from bot.reviewers.ruff import find_ruff
from training import corpus
from training.mixed import DEMO_RULES, family, split_rules

ROOT = Path(__file__).resolve().parents[1]
ANALYSERS = ROOT.parent / "shared" / "data" / "analysers" / "analysers.jsonl"


def test_ruffs_own_catalogue_becomes_labelled_examples():
    rules = ruff_catalogue(find_ruff())
    assert len(rules) > 500 and ruff_level("S608", find_ruff()) == "security"
    examples = corpus.build(ruff=True, ruff_executable=find_ruff())
    by_rule = {}
    for e in examples:
        by_rule.setdefault(e.meta["rule"], []).append(e)
    assert {e.label for e in by_rule["S608"]} == {"critical"}  # security
    assert {e.label for e in by_rule["F821"]} == {"major"}  # correctness
    assert {e.label for e in by_rule["E711"]} == {"trivial"}  # pedantic
    s608 = by_rule["S608"][0]
    assert s608.review.startswith("S608 Possible SQL injection")  # as the ruff reviewer words a finding
    assert s608.meta["group"] == "ruff:S608" and s608.acceptable == ("critical", "major")
    assert len({(e.meta["tool"], " ".join(e.review.lower().split())) for e in examples}) == len(examples)


def _sarif(rules: list[dict]) -> dict:
    return {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "CodeQL", "rules": rules}}, "results": []}]}


def test_sarif_rule_metadata_is_mapped_in_one_place(tmp_path):
    log = _sarif([
        {"id": "py/sql-injection", "shortDescription": {"text": "SQL query built from user-controlled sources"},
         "fullDescription": {"text": "Building a SQL query from user-controlled sources is vulnerable."},
         "defaultConfiguration": {"level": "error"}, "properties": {"security-severity": "8.8", "tags": ["security"]}},
        {"id": "py/unused-import", "shortDescription": {"text": "Unused import"},
         "defaultConfiguration": {"level": "note"}},
        {"id": "py/no-level", "shortDescription": {"text": "Says nothing about severity"}},
        {"id": "py/bad-score", "shortDescription": {"text": "Broken score"},
         "properties": {"security-severity": "NaN"}, "defaultConfiguration": {"level": "warning"}},
    ])
    path = tmp_path / "codeql.sarif"
    path.write_text(json.dumps(log))
    examples = corpus.build(sarif=[path])
    got = {(e.meta["rule"], e.review): (e.label, e.meta["level"]) for e in examples}
    assert got[("py/sql-injection", "SQL query built from user-controlled sources")] == ("critical", "security-severity 8.8")
    assert got[("py/unused-import", "Unused import")] == ("trivial", "note")
    assert got[("py/bad-score", "Broken score")] == ("minor", "warning")  # a non-number score is ignored
    assert not any(rule == "py/no-level" for rule, _ in got)  # no level, no label: left out
    assert sarif_level({}, log["runs"][0]["tool"]["driver"]["rules"][0]) == "security-severity 8.8"
    assert sarif_level({"level": "warning"}, {}) == "warning"


def test_a_broken_sarif_log_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.sarif"
    bad.write_text("{not json")
    with pytest.raises(TrainingError, match="cannot read SARIF log"):
        corpus.build(sarif=[bad])
    bad.write_text(json.dumps({"runs": "nope"}))
    with pytest.raises(TrainingError, match="no 'runs' list"):
        corpus.build(sarif=[bad])


@pytest.mark.skipif(not ANALYSERS.is_file(), reason="../shared/data/analysers is not beside the repository")
def test_held_out_rules_never_meet_training_and_the_demo_rules_stay_out():
    examples = corpus.build(ruff=True, ruff_executable=find_ruff(), analysers=ANALYSERS)
    train, held = split_rules(examples, fraction=0.15, seed=0)
    groups = lambda items: {e.meta["group"] for e in items}  # noqa: E731
    assert not groups(train) & groups(held)
    assert set(DEMO_RULES) & groups(examples) <= groups(held)
    for tool in ("ruff", "codeql", "clippy", "staticcheck", "eslint"):
        total = {g for g in groups(examples) if g.startswith(tool + ":")}
        out = {g for g in groups(held) if g.startswith(tool + ":")}
        assert 0.1 <= len(out) / len(total) <= 0.2, tool
    assert {family(e) for e in held} == {"ruff", "codeql", "clippy", "staticcheck", "eslint"}


def test_sieve_train_corpus_writes_the_jsonl_the_trainer_reads(tmp_path):
    out = tmp_path / "corpus.jsonl"
    done = subprocess.run([sys.executable, "-m", "bot.cli", "train", "corpus", "--ruff", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    from training.examples import load_jsonl

    items = load_jsonl(out)
    assert len(items) > 1000 and all(e.meta["tool"] == "ruff" for e in items)
    assert "wrote" in done.stderr and "ruff" in done.stderr
    missing = subprocess.run([sys.executable, "-m", "bot.cli", "train", "corpus", "--out", str(out)],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) <= 2
