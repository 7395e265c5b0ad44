"""The ratings ``make demo`` shows, and the demo goal: the real review of ``examples/change.patch`` with ruff.

    .venv/bin/python -m benchmarks.demo_ratings --model models/default [--model DIR ...] [--json]

Runs ``sieve review --diff examples/change.patch --repo examples/demo --format json --model DIR`` (the app's own
code path: ruff, the diff, the served rating with the model's lexical prior) and prints each ruff rule with its
severity, P(severity >= major) and the four probabilities. Beside it, the student alone (no lexical prior) on the
same findings as the rater reads them (review + origin ``ruff <rule>, level: <ruff's category>``; the code excerpt
only matters to models trained with one, and is left out here). The goal (issue 14): S608, S307, S602 and F821 at
major or above; F401 and E711 at minor or below — from the model, not a rule table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AT_LEAST_MAJOR = ("S608", "S307", "S602", "F821")
AT_MOST_MINOR = ("F401", "E711")
_SEVERE = ("critical", "major")


def served_review(model: Path) -> dict:
    """The JSON of ``sieve review`` on the demo patch (what ``make demo`` rates)."""
    command = [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())", "review",
               "--diff", str(ROOT / "examples/change.patch"), "--repo", str(ROOT / "examples/demo"),
               "--format", "json", "--model", str(model)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        raise ValueError(f"sieve review failed (exit {done.returncode}): {done.stderr.strip()[-300:]}") from None


def student_alone(model: Path, findings: list[dict], threads: int) -> list[dict]:
    from bot.prompt import origin_text
    from bot.reviewers.origin import ruff_level
    from bot.reviewers.ruff import find_ruff
    from training.examples import Example
    from training.heldout import model_rater

    ruff = find_ruff()
    items = [Example(code="", review=f["review"], label="minor",
                     meta={"origin": origin_text("ruff", f["rule_id"], ruff_level(f["rule_id"], ruff) or "")})
             for f in findings]
    _, rater, rate, _ = model_rater(model, n_threads=threads)
    try:
        return rate(items)
    finally:
        rater.close()


def verdict(rule: str, severity: str) -> str:
    if rule in AT_LEAST_MAJOR:
        return "ok" if severity in _SEVERE else "MISS (goal: major or above)"
    if rule in AT_MOST_MINOR:
        return "ok" if severity not in _SEVERE else "MISS (goal: minor or below)"
    return ""


def run(args: argparse.Namespace) -> dict:
    from training.metrics import argmax

    out = {}
    for model in map(Path, args.model):
        review = served_review(model)
        findings = [f for f in review.get("findings", []) if f.get("source") == "ruff"]
        alone = student_alone(model, findings, args.threads)
        rows = []
        for f, probs in zip(findings, alone):
            rows.append({"rule": f["rule_id"], "review": f["review"], "severity": f["severity"],
                         "p_major_or_above": round(sum(f["probabilities"][k] for k in _SEVERE), 3),
                         "probabilities": f["probabilities"], "goal": verdict(f["rule_id"], f["severity"]),
                         "student_alone": argmax(probs),
                         "student_p_major_or_above": round(sum(probs[k] for k in _SEVERE), 3),
                         "student_goal": verdict(f["rule_id"], argmax(probs))})
        seen = {r["rule"] for r in rows}
        goal_rules = [r for r in rows if r["goal"]]
        out[str(model)] = {"model": review.get("summary", {}).get("model"), "rows": rows,
                           "missing_rules": [r for r in AT_LEAST_MAJOR + AT_MOST_MINOR if r not in seen],
                           "goal_met": all(r["goal"] == "ok" for r in goal_rules) and seen >= set(
                               AT_LEAST_MAJOR + AT_MOST_MINOR),
                           "student_goal_met": all(r["student_goal"] == "ok" for r in goal_rules)}
    return out


def to_text(result: dict) -> str:
    lines = []
    for model, r in result.items():
        lines += [(f"{model} ({r['model']}): demo goal {'met' if r['goal_met'] else 'NOT met'} as served; "
                   f"student alone: {'met' if r['student_goal_met'] else 'NOT met'}"),
                  f"  {'rule':<6}{'served':>9}{'P>=maj':>8}  {'goal':<28}{'student':>9}{'P>=maj':>8}  review"]
        for row in r["rows"]:
            lines.append(f"  {row['rule']:<6}{row['severity']:>9}{row['p_major_or_above']:>8.3f}  {row['goal']:<28}"
                         f"{row['student_alone']:>9}{row['student_p_major_or_above']:>8.3f}  {row['review'][:60]}")
        if r["missing_rules"]:
            lines.append(f"  not found in the review: {', '.join(r['missing_rules'])}")
        lines.append("")
    return "\n".join(lines).rstrip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.demo_ratings", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="a model folder (repeatable)")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON instead of a table")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads for the student alone")
    args = parser.parse_args(argv)
    if not (ROOT / "examples/change.patch").is_file():
        print("skipped: examples/change.patch is absent")
        return 0
    from benchmarks.heldout import finish

    return finish(run, to_text, args)


if __name__ == "__main__":
    raise SystemExit(main())
