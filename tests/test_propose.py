"""`sieve train propose` without training: the held-out split, the gate, the table, and refusals before any model
loads (tests/test_retrain_workflow.py runs the whole command, training included, through the shipped workflow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runner import ROOT
from tests.team_feedback import shared_items, write_store
from training.examples import Example, severity_split
from training.propose import TEAM, Check, gate, is_held_out, split_feedback, table
from training.registry import PromotionRule

needs_shared = pytest.mark.skipif(not severity_split("train").is_file(), reason="shared severity data is absent")


def export(tmp_path: Path, n: int) -> Path:
    from bot.feedback_app import export as write_export
    from bot.store import open_store

    store = open_store(write_store(tmp_path / "fb.db", shared_items(n) if n else []))
    try:
        write_export(store, tmp_path / "fb.jsonl")
    finally:
        store.close()
    return tmp_path / "fb.jsonl"


def propose(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "bot.cli", "train", "propose", "--models-dir",
                           str(tmp_path / "models"), "--out", str(tmp_path / "out"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def item(code: str, review: str, label: str = "minor") -> Example:
    return Example(code=code, review=review, label=label)


def test_the_split_keeps_each_finding_on_its_side_whatever_else_changes() -> None:
    items = [item(f"x = {i}\n", f"finding {i}") for i in range(400)]
    held = {e.review for e in items if is_held_out(e, 0.2)}
    assert 50 < len(held) < 110  # about a fifth
    reshuffled = list(reversed(items)) + [item("y = 1\n", "a new finding")]
    assert {e.review for e in reshuffled if is_held_out(e, 0.2) and e.review != "a new finding"} == held
    spaced = item("x  =  7\n", "  Finding 7 ")  # the same finding, re-indented: the same side
    assert is_held_out(spaced, 0.2) == ("finding 7" in held)
    assert {e.review for e in items if is_held_out(e, 0.3)} >= held  # a larger share only adds


@needs_shared
def test_split_feedback_reads_the_export_unchanged(tmp_path: Path) -> None:
    held, train = split_feedback(export(tmp_path, 40), 0.2)
    assert len(held) + len(train) == 40 and held and train
    assert all(r["trust"] == "trusted" and "vote" in r for r in held + train)
    again, _ = split_feedback(tmp_path / "fb.jsonl", 0.2)
    assert again == held


def figures(team_old: float, team_new: float, rules_old: float, rules_new: float) -> dict:
    def summary(f1: float) -> dict:
        return {"n": 10, "accuracy": f1, "band_accuracy": f1, "macro_f1": f1}

    return {TEAM: (summary(team_old), summary(team_new)), "ruff rules": (summary(rules_old), summary(rules_new))}


def test_the_gate_needs_a_gain_on_team_feedback_and_no_loss_elsewhere() -> None:
    rule = PromotionRule(min_gain=0.05)
    assert all(c.passed for c in gate(figures(0.40, 0.46, 0.50, 0.49), rule, tolerance=0.02))
    no_gain = gate(figures(0.40, 0.44, 0.50, 0.55), rule, tolerance=0.02)
    assert [c.passed for c in no_gain] == [False, True]
    forgot = gate(figures(0.40, 0.60, 0.50, 0.47), rule, tolerance=0.02)
    assert [c.passed for c in forgot] == [True, False]
    assert "may drop at most 0.020" in forgot[1].rule


def test_the_table_is_one_markdown_table_whatever_the_names() -> None:
    checks = gate(figures(0.40, 0.46, 0.50, 0.40), PromotionRule(), tolerance=0.02)
    checks.append(Check("odd | name `x`", 3, {"macro_f1": 0.1}, {"macro_f1": 0.2}, True, "a | rule"))
    text = table(checks, name="team", current_id="team@aa|bb", candidate_id="team@cc\nrow", notes=["note | one"],
                 training={"feedback_train": 30, "heldout": 8, "steps": 2, "seconds": 9.1})
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + len(checks)
    assert all(line.replace("\\|", "").count("|") == 11 for line in rows)
    assert "candidate fails the promotion gate" in text and "FAILED" in rows[3] and "+0.060" in rows[2]
    assert "`team@aa\\|bb`" in text and "team@cc row" in text and "odd \\| name 'x'" in text


@needs_shared
@pytest.mark.parametrize("n, args, says", [
    (None, (), "no feedback export at"),
    (0, (), "holds no feedback to train on"),
    (12, (), "fewer than --min-heldout 20"),
    (12, ("--heldout-share", "1.5"), "--heldout-share 1.5 is outside (0, 1)"),
], ids=["no export", "empty export", "too few held out", "bad share"])
def test_refusals_are_one_line_before_anything_loads(tmp_path: Path, n, args, says: str) -> None:
    feedback = tmp_path / "missing.jsonl" if n is None else export(tmp_path, n)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "decision").write_text("promote\n")  # an earlier run's
    done = propose(tmp_path, "--feedback", str(feedback), *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and says in done.stderr, done.stderr
    assert not (tmp_path / "out" / "decision").exists() and not (tmp_path / "models").exists()


def test_the_command_is_listed_with_its_options() -> None:
    from training.cli import build_parser

    args = build_parser().parse_args(["propose", "--feedback", "f.jsonl", "--models-dir", "m", "--min-gain", "0.01"])
    assert args.command == "propose" and args.model_name == "team" and args.min_gain == 0.01
    assert json.loads(json.dumps(vars(args)))["heldout_share"] == 0.2
