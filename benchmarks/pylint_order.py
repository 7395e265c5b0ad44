"""Does the student rank pylint's probable bugs above its conventions? pylint is used here for evaluation only.

    .venv/bin/python -m benchmarks.pylint_order --model models/default [--model DIR ...] [--json] [--threads 1]

pylint (all checks enabled, JSON output) runs over a pinned list of installed, pure-Python packages
(:data:`PACKAGES`); its output is cached in ``~/.cache/sieve/benchmarks`` keyed by pylint's and the packages'
versions. Messages are deduplicated by text and at most :data:`PER_SYMBOL` kept per message symbol (a seeded hash
picks them), so no single check (``no-member``, ``missing-function-docstring``) decides the figures. Each message
becomes a finding as Sieve's SARIF reviewer presents it: review ``<symbol> <message>``, code = the flagged line,
origin ``pylint <msg-id>, level: <category>`` — and rated again with no origin, as an LLM's or a person's finding
arrives. pylint's category gives the gold order (:func:`gold`): error/fatal above warning above refactor/convention.

Figures (:mod:`training.metrics`): concordance of error vs convention/refactor pairs (the headline: does a probable
bug outrank a style remark?), concordance over all three tiers, and the share of pylint errors rated minor or
trivial. Systems: each model as served and its student alone, TF-IDF on the model's own training items, and TF-IDF on
the review text fitted on ``train.jsonl`` (:mod:`benchmarks.heldout`). pylint's messages never train anything.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

#: Installed packages pylint reads (stable, pure Python, already in the environment).
PACKAGES = ("requests", "urllib3", "unidiff", "click", "jinja2", "dateutil", "diskcache", "yaml", "attr")
_DISTRIBUTIONS = {"dateutil": "python-dateutil", "yaml": "PyYAML", "attr": "attrs"}
PER_SYMBOL = 12
SEED = 0
#: pylint's category -> the gold tier it stands for (info messages are not findings and are left out).
TIERS = {"fatal": "major", "error": "major", "warning": "minor", "refactor": "trivial", "convention": "trivial"}


def gold(category: str) -> str | None:
    """The severity tier a pylint category stands for: error/fatal "major", warning "minor", refactor and
    convention "trivial"; None for categories that are not findings (info)."""
    return TIERS.get(category)


def package_dirs() -> list[Path]:
    import importlib.util

    out = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            out.append(Path(next(iter(spec.submodule_search_locations))))
    return out


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("pylint", *PACKAGES):
        try:
            out[name] = version(_DISTRIBUTIONS.get(name, name))
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def pylint_messages(threads: int = 1) -> list[dict]:
    """pylint's JSON messages over :data:`PACKAGES` (cached; the first run takes a few minutes)."""
    from bot.rater.locate import cache_dir

    tag = hashlib.sha256(json.dumps(versions(), sort_keys=True).encode()).hexdigest()[:16]
    cached = cache_dir() / "benchmarks" / f"pylint-{tag}.json"
    if cached.is_file():
        return json.loads(cached.read_text(encoding="utf-8"))
    empty = cached.parent / "empty-pylintrc"
    empty.parent.mkdir(parents=True, exist_ok=True)
    empty.write_text("", encoding="utf-8")
    command = [sys.executable, "-m", "pylint", f"--rcfile={empty}", "--enable=all", "--output-format=json",
               "--persistent=n", f"--jobs={threads}", *map(str, package_dirs())]
    print(f"running pylint over {', '.join(PACKAGES)} (cached afterwards)", file=sys.stderr)
    done = subprocess.run(command, capture_output=True, text=True, cwd=cached.parent, check=False)
    try:
        messages = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise ValueError(f"pylint gave no JSON (exit {done.returncode}): {done.stderr.strip()[-300:]}") from None
    cached.write_text(json.dumps(messages), encoding="utf-8")
    return messages


def sample(messages: list[dict], per_symbol: int = PER_SYMBOL, seed: int = SEED) -> list[dict]:
    """Distinct message texts of finding categories, at most ``per_symbol`` per symbol (seeded hash order)."""
    seen: dict[tuple[str, str], dict] = {}
    for m in messages:
        if gold(m.get("type", "")) and (m["symbol"], m["message"]) not in seen:
            seen[(m["symbol"], m["message"])] = m
    by_symbol: dict[str, list[dict]] = {}
    for m in seen.values():
        by_symbol.setdefault(m["symbol"], []).append(m)
    key = lambda m: hashlib.sha256(f"{seed}:{m['symbol']}:{m['message']}".encode()).hexdigest()
    return [m for symbol in sorted(by_symbol) for m in sorted(by_symbol[symbol], key=key)[:per_symbol]]


def to_examples(messages: list[dict]) -> dict[str, list]:
    """The findings, with origin and without (labels = :func:`gold`)."""
    from bot.prompt import origin_text
    from training.examples import Example

    lines: dict[str, list[str]] = {}
    with_origin, without = [], []
    for i, m in enumerate(messages):
        path = m.get("path") or ""
        if path not in lines:
            source = Path(m.get("absolute_path") or path)
            lines[path] = source.read_text(encoding="utf-8", errors="replace").splitlines() if source.is_file() else []
        code = lines[path][m["line"] - 1] if 0 < (m.get("line") or 0) <= len(lines[path]) else ""
        fields = {"code": code, "review": f"{m['symbol']} {m['message']}", "label": gold(m["type"]),
                  "source": f"pylint:{m['type']}", "id": f"pylint-{i}", "lang": "python"}
        meta = {"category": m["type"], "message_id": m["message-id"]}
        with_origin.append(Example(**fields, meta={**meta, "origin": origin_text("pylint", m["message-id"],
                                                                                 m["type"])}))
        without.append(Example(**fields, meta={**meta, "origin": ""}))
    return {"with origin": with_origin, "no origin": without}


def figures(examples: list, probs: list[dict]) -> dict:
    from training.metrics import at_least, concordance

    e_cr = [i for i, e in enumerate(examples) if e.label in ("major", "trivial")]
    errors = [probs[i] for i, e in enumerate(examples) if e.label == "major"]
    order = concordance([examples[i].label for i in e_cr], [probs[i] for i in e_cr])
    tiers = concordance([e.label for e in examples], probs)
    return {"concordance_E_vs_CR": None if order is None else round(order, 4),
            "concordance_three_tiers": None if tiers is None else round(tiers, 4),
            "errors_minor_or_trivial": round(1 - at_least(errors, "major"), 4), "errors": len(errors)}


def run(args: argparse.Namespace) -> dict:
    from collections import Counter

    from benchmarks.heldout import (
        check_rebuilt,
        label_for,
        rate_model,
        recipe_args,
        spread,
        tfidf_review,
        tfidf_same,
        training_items,
    )
    from bot.models import read_manifest
    from bot.reviewers.ruff import find_ruff
    from training.mixed import load_sources

    messages = spread(sample(pylint_messages(args.threads)), args.limit)
    sets = to_examples(messages)
    sources = load_sources(seed=0, ruff_executable=find_ruff())
    systems = {"TF-IDF review": tfidf_review(sources, sets)}
    notes, taken = {}, set()
    for folder in map(Path, args.model):
        manifest, name = read_manifest(folder), label_for(folder, taken)
        print(f"rating {2 * len(messages)} pylint findings with {folder}", file=sys.stderr)
        info, student, as_served = rate_model(folder, sets, args.threads)
        if as_served is not None:
            systems[f"{name} served"] = as_served
        systems[f"{name} student"] = student
        rargs = recipe_args(manifest)
        if rargs is not None and rargs.seed == 0:
            items = training_items(manifest, sources, rargs)
            notes[name] = check_rebuilt(manifest, items, rargs.seed, False)
            if not notes[name].startswith("NOT"):
                systems[f"{name} TF-IDF same items"] = tfidf_same(items, sets, info.prompt_version)
    return {"versions": versions(), "messages": len(messages),
            "per_category": dict(Counter(m["type"] for m in messages)), "training_items": notes,
            "systems": {system: {way: figures(sets[way], probs[way]) for way in sets}
                        for system, probs in systems.items()}}


def to_text(result: dict) -> str:
    per = ", ".join(f"{k} {v}" for k, v in sorted(result["per_category"].items()))
    lines = [(f"pylint {result['versions']['pylint']} over {', '.join(PACKAGES)}: {result['messages']} findings "
              f"({per}); at most {PER_SYMBOL} per symbol")]
    width = max(map(len, result["systems"])) + 2
    head = f"{'conc E>C/R':>11}{'conc 3-tier':>12}{'E<=minor':>9}"
    lines += ["", " " * width + f"{'with origin':>32} | no origin", "system".ljust(width) + head + " | " + head]
    for system, ways in result["systems"].items():
        cells = []
        for way in ("with origin", "no origin"):
            f = ways[way]
            cells.append("".join(f"{'-' if v is None else format(v, '.3f'):>{w}}" for v, w in (
                (f["concordance_E_vs_CR"], 11), (f["concordance_three_tiers"], 12),
                (f["errors_minor_or_trivial"], 9))))
        lines.append(system.ljust(width) + " | ".join(cells))
    lines.append("E<=minor: share of pylint errors rated minor or trivial (lower is better)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.heldout import shared_ready

    parser = argparse.ArgumentParser(prog="python -m benchmarks.pylint_order", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="a model folder (repeatable)")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON instead of a table")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp and pylint threads (default 1)")
    parser.add_argument("--limit", type=int, default=0, help="rate only N of the findings (quick look)")
    args = parser.parse_args(argv)
    missing = shared_ready()
    if missing:
        print(missing)
        return 0
    try:
        import pylint  # noqa: F401
    except ImportError:
        print("skipped: pylint is not installed (pip install -e '.[dev]')")
        return 0
    from benchmarks.heldout import finish

    return finish(run, to_text, args)


if __name__ == "__main__":
    raise SystemExit(main())
