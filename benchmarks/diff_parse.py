"""Throughput of ``bot.diff.parse`` vs raw ``unidiff.PatchSet`` on a large real ``git log -p``, and a
robustness table over the shared real-world diffs (crashed must stay 0).

Run: ``.venv/bin/python -m benchmarks.diff_parse [--commits N]``
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import unidiff

from bot.diff import parse
from bot.errors import DiffError

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SIEVE_SHARED", ROOT / ".." / "shared"))
sys.path.insert(0, str(ROOT))
from tests.gitrepo import make_repo  # reused so the diff is real git output


def build_log(workdir: Path, commits: int, seed: int = 7) -> bytes:
    """A generated repository with many edit commits; returns ``git log -p`` of it (real git bytes)."""
    rng = random.Random(seed)
    repo = make_repo(workdir / "repo")
    files = {f"pkg/mod_{k:02d}.py": [f"value_{k}_{n} = compute({n}, '{'x' * (n % 30)}')\n" for n in range(1500)]
             for k in range(30)}
    for name, body in files.items():
        repo.write(name, "".join(body))
    repo.commit("initial")
    for number in range(commits):
        for name in rng.sample(sorted(files), 6):
            body = files[name]
            for _ in range(15):
                at = rng.randrange(len(body))
                op = rng.random()
                if op < 0.4:
                    body[at] = f"value_{number}_{at} = changed({rng.random():.6f})\n"
                elif op < 0.7:
                    body.insert(at, f"inserted_{number} = {rng.randrange(10**6)}  # new line\n")
                elif len(body) > 100:
                    del body[at]
            repo.write(name, "".join(body))
        repo.commit(f"commit {number}")
    return repo.git("log", "-p", "--no-color", "--format=commit %H%nAuthor: %an%n%n    %s%n")


def best_of(runs: int, func) -> float:
    """Best wall time of ``runs`` calls (least disturbed by the shared CPU)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def throughput(data: bytes, runs: int) -> None:
    text = data.decode("utf-8")
    megabytes = len(data) / 1e6
    ours = best_of(runs, lambda: parse(data))
    theirs = best_of(runs, lambda: unidiff.PatchSet(text))
    parsed = parse(data)
    reference = unidiff.PatchSet(text)
    ref_hunks = sum(len(f) for f in reference)
    print(f"input: git log -p, {megabytes:.1f} MB, {len(parsed.files)} file patches, {len(parsed.hunks)} hunks "
          f"(unidiff: {len(reference)} files, {ref_hunks} hunks)")
    print(f"{'parser':<28}{'best s':>9}{'MB/s':>9}")
    print(f"{'bot.diff.parse (bytes in)':<28}{ours:>9.3f}{megabytes / ours:>9.1f}")
    print(f"{'unidiff.PatchSet (str in)':<28}{theirs:>9.3f}{megabytes / theirs:>9.1f}")
    print(f"ratio bot.diff / unidiff throughput: {theirs / ours:.2f}x")


def robustness() -> int:
    """Parse every shared real-world diff; returns the number of crashes (anything but DiffError)."""
    folder = SHARED / "data" / "diffs"
    if not folder.is_dir():
        print(f"shared diffs not found at {folder} (set SIEVE_SHARED); skipping the robustness table")
        return 0
    totals, reasons, crashed = Counter(), Counter(), 0
    print(f"\n{'file':<62}{'files':>6}{'hunks':>6}{'skip':>5}  outcome")
    for path in sorted(p for p in folder.iterdir() if p.name != "MANIFEST.jsonl"):
        try:
            parsed = parse(path.read_bytes())
        except DiffError as err:
            totals["rejected (DiffError)"] += 1
            print(f"{path.name[:61]:<62}{'-':>6}{'-':>6}{'-':>5}  rejected: {str(err)[:70]}")
            continue
        except Exception as err:  # noqa: BLE001 — counting crashes is the point of this table
            crashed += 1
            print(f"{path.name[:61]:<62}{'-':>6}{'-':>6}{'-':>5}  CRASHED: {type(err).__name__}: {err}")
            continue
        totals["parsed"] += 1
        reasons.update(s.reason.split(":")[0].split(" from ")[0] for s in parsed.skipped)
        outcome = "; ".join(sorted({s.reason[:40] for s in parsed.skipped})) or "ok"
        print(f"{path.name[:61]:<62}{len(parsed.files):>6}{len(parsed.hunks):>6}{len(parsed.skipped):>5}  {outcome}")
    print(f"\ninputs: {dict(totals)}, crashed: {crashed}")
    print("skipped files by reason: " + ", ".join(f"{r} ×{n}" for r, n in reasons.most_common()))
    return crashed


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--commits", type=int, default=120, help="generated commits (≈30 KB of diff each, after a 2.3 MB initial commit)")
    options.add_argument("--runs", type=int, default=3, help="timed runs per parser; the best is reported")
    args = options.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        data = build_log(Path(tmp), args.commits)
        print(f"built the repository and its log in {time.perf_counter() - started:.1f} s")
    throughput(data, args.runs)
    if robustness():
        raise SystemExit("some diffs crashed the parser")


if __name__ == "__main__":
    main()
