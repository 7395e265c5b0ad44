"""What team memory costs a review, with 10,000 remembered reactions, as a ratio to the same review without it.

    .venv/bin/python -m benchmarks.memory_cost [--reactions 10000] [--files 10] [--json]

A real feedback store is filled through ``sieve feedback import`` with ``--reactions`` trusted reactions (two
maintainers per comment, over ruff's rule catalogue and a spread of paths, some on the rules the diff below
triggers). A real git diff of ``--files`` Python files full of ruff findings is then reviewed by ``bot.app.review``
with the default student, twice in one process and with one loaded rater: memory off, then on. Reported: the whole
review's seconds both ways and their ratio; memory's own cost per finding (open the store, read the reactions,
learn, adjust every rating — what the review's one call does) and the look-up alone once learned.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

LINES = ("    if value == None:\n", "        return eval(value)\n", "    try:\n        open(value)\n    except:\n",
         "        pass\n", "    unused = value\n")


def _module(i: int) -> str:
    body = "".join(LINES) * 3
    return f"def handler_{i}(value, items=[]):\n{body}    return items\n"


def make_diff(root: Path, files: int) -> tuple[bytes, Path]:
    """A real ``git diff`` adding ``files`` modules (a third under tests/), and the work tree holding them."""
    repo = root / "repo"
    repo.mkdir()

    def git(*args: str) -> bytes:
        return subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", *args],
                              cwd=repo, check=True, capture_output=True, timeout=60).stdout

    git("init", "-q")
    (repo / "README").write_text("x\n")
    git("add", "-A")
    git("commit", "-qm", "base")
    for i in range(files):
        target = repo / ("tests" if i % 3 == 0 else "src") / f"mod_{i}.py"
        target.parent.mkdir(exist_ok=True)
        target.write_text(_module(i))
    git("add", "-A")
    return git("diff", "--cached", "--no-color", "HEAD"), repo


def reaction_rows(count: int, seed: int) -> list[dict]:
    """``count`` import rows: two maintainers per comment, rules from ruff's catalogue (and the diff's own)."""
    from bot.reviewers.origin import ruff_catalogue
    from bot.reviewers.ruff import find_ruff

    rng = random.Random(seed)
    rules = sorted(ruff_catalogue(find_ruff())) or [f"X{i:03d}" for i in range(800)]
    rules += ["E711", "S307", "E722", "F841", "B006"] * 20
    folders = ["src", "lib", "tests", "docs", "tools", "src/app/api", "pkg/tests/unit"]
    rows = []
    for n in range(count // 2):
        rule, folder = rng.choice(rules), rng.choice(folders)
        vote = rng.choice(("+1", "-1", "-1"))
        for user in ("maintainer-1", "maintainer-2"):
            rows.append({"repo": "bench/app", "path": f"{folder}/m{n % 97}.py", "line": n % 400 + 1, "tool": "ruff",
                         "rule": rule, "review": f"{rule} finding number {n}", "severity": "minor",
                         "reaction": vote, "user": user, "trusted": True,
                         "correction": "trivial" if vote == "-1" and n % 3 == 0 else None})
    return rows


def run(args) -> dict:
    from bot import app, memory, memory_app
    from bot.config import Config
    from bot.store import open_store

    with tempfile.TemporaryDirectory(prefix="sieve-memcost-") as tmp:
        folder = Path(tmp)
        data, root = make_diff(folder, args.files)
        rows = reaction_rows(args.reactions, args.seed)
        (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        store = open_store(folder / "store.db")
        written, bad = memory_app.import_file(store, str(folder / "rows.jsonl"))
        store.close()
        assert not bad
        source = app.Source(diff=data, name="bench.patch", read_file=app.worktree_reader(root), repo_root=root,
                            repo="bench/app")
        off = replace(Config(), db=str(folder / "store.db"), memory=False)
        on = replace(off, memory=True)
        rater = app.make_rater(off)
        app.review(source, off, rater=rater)  # warm: model, ruff catalogue, caches
        timed = {}
        for name, config in (("off", off), ("on", on), ("off_again", off), ("on_again", on)):
            started = time.perf_counter()
            outcome = app.review(source, config, rater=rater)
            timed[name] = time.perf_counter() - started
        decisions = outcome.plan.decisions
        findings = [d.finding for d in decisions]
        ratings = [replace(d.rating, probabilities=d.rating.memory_note.before_probabilities, memory_note=None)
                   if d.rating.memory_note else d.rating for d in decisions]
        started = time.perf_counter()
        for _ in range(args.repeat):
            memory_app.adjust(findings, ratings, on, "bench/app")
        whole = (time.perf_counter() - started) / args.repeat
        learned = memory_app.load(on, "bench/app")
        started = time.perf_counter()
        for _ in range(args.repeat):
            memory.adjust(findings, ratings, learned)
        lookup = (time.perf_counter() - started) / args.repeat
    n = len(findings)
    review_off, review_on = min(timed["off"], timed["off_again"]), min(timed["on"], timed["on_again"])
    return {"reactions": written, "entries": len(learned.entries), "findings": n,
            "adjusted": sum(d.rating.memory_note is not None for d in decisions),
            "review_s_off": round(review_off, 3), "review_s_on": round(review_on, 3),
            "ratio_on_to_off": round(review_on / review_off, 3),
            "memory_ms_per_finding": round(1000 * whole / n, 3), "lookup_ms_per_finding": round(1000 * lookup / n, 4),
            "memory_ms_per_review": round(1000 * whole, 1), "goal_ms_per_finding": 5.0}


def to_text(r: dict) -> str:
    return (f"{r['reactions']} remembered reactions → {r['entries']} entries; {r['findings']} findings, "
            f"{r['adjusted']} adjusted by memory\n"
            f"review (default student): {r['review_s_off']} s without memory, {r['review_s_on']} s with it "
            f"(ratio {r['ratio_on_to_off']})\n"
            f"memory: {r['memory_ms_per_finding']} ms per finding (store read + learning + adjusting, "
            f"{r['memory_ms_per_review']} ms per review); look-up alone {r['lookup_ms_per_finding']} ms per finding "
            f"(goal ≤ {r['goal_ms_per_finding']} ms per finding)")


def main(argv: list[str] | None = None) -> int:
    from benchmarks.heldout import finish

    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reactions", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=10, help="Python files in the reviewed diff")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of the memory-only timings")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--json", action="store_true")
    return finish(run, to_text, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
