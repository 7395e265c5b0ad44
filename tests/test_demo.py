"""The review `make demo` shows, rated by the packaged default student as served: the severity a user sees
first must be right for the findings ruff reports on the demo change (none of these rules was trained on)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEVERE = ("critical", "major")
MILD = ("minor", "trivial")


@pytest.mark.slow
def test_the_demo_review_rates_security_and_crash_findings_severe_and_style_mild(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bot.cli", "review", "--diff", "examples/change.patch", "--repo",
                           "examples/demo", "--format", "json", "--threshold", "trivial"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode in (0, 1), done.stderr  # 1: --fail-on found a critical finding
    rows = json.loads(done.stdout)
    rows = rows if isinstance(rows, list) else rows.get("findings", [])
    by_rule: dict[str, set[str]] = {}
    for row in rows:
        by_rule.setdefault(str(row.get("rule_id")), set()).add(row["severity"])
    expected = {"S608": SEVERE, "S307": SEVERE, "S602": SEVERE, "F821": SEVERE, "F401": MILD, "E711": MILD}
    missing = sorted(set(expected) - set(by_rule))
    assert not missing, f"ruff did not report {missing} on the demo change: {sorted(by_rule)}"
    wrong = {rule: sorted(by_rule[rule]) for rule, ok in expected.items() if not by_rule[rule] <= set(ok)}
    assert not wrong, f"rated outside the expected band: {wrong}"
