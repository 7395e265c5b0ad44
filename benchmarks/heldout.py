"""Held-out severity figures of one or more students and their TF-IDF baselines, every source, both ways.

    .venv/bin/python -m benchmarks.heldout --model models/default [--model DIR ...] [--json] [--limit N]
                                           [--threads 1] [--verify-hash]

Held-out sets (:func:`training.mixed.load_sources` with the seed of the models' manifest commands; models held out
with different seeds are compared in separate runs): the review-data
exam per source family (crc-py, sonar-python, sven), each analyser tool's held-out rules (ruff, codeql, clippy,
staticcheck, eslint) and dev per family — each rated with the finding's origin and without it
(:func:`training.heldout.held_out_sets`). Systems per model: as served (with its lexical prior, when the manifest has
one) and the student alone, through the serving rater; **TF-IDF same items**: TF-IDF + logistic regression
(:func:`training.examples.tfidf_teacher`, word + character n-grams of :func:`training.examples.teacher_text`) fitted
on exactly the student's training items, rebuilt from the manifest's command (``training.mixed.plan`` for prompt v4,
train minus the exam for v3) and checked against the manifest's counts (``--verify-hash``: its data hash too). Once:
**TF-IDF review**, the old baseline (:class:`training.baselines.TfidfBaseline` on the review text) fitted on
``train.jsonl`` (for the exam: ``train.jsonl`` minus the exam). Figures come from :mod:`training.metrics` only:
accuracy, band accuracy, macro-F1 over the levels present, concordance. Also: the share of held-out CodeQL rules
with security-severity >= 7 rated major or above, and the paired difference student alone minus each TF-IDF on dev
crc-py with a 95% cluster-bootstrap interval (:func:`training.evaluate.paired_difference`).

Ratings are cached per model in ``~/.cache/sieve/benchmarks`` (keyed by adapter hash and what the student reads).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import shlex
import sys
from pathlib import Path

SETS = ("exam", "rules", "dev")
_SEVERITY = re.compile(r"security-severity\s+([0-9.]+)")


def shared_ready() -> str:
    """"" when the shared data is there, else the one line saying what is missing."""
    from training.examples import severity_split, shared_dir

    for path in (severity_split("train"), severity_split("dev"), shared_dir() / "data/analysers/analysers.jsonl"):
        if not path.is_file():
            return f"skipped: {path} is absent (the shared data folder; set SIEVE_SHARED to point at it)"
    return ""


def label_for(folder: Path, taken: set[str]) -> str:
    name = folder.name if folder.name not in ("model", *taken) else f"{folder.parent.name}/{folder.name}"
    taken.add(name)
    return name


# -- ratings ------------------------------------------------------------------------------------------------

class RatingCache:
    """Probabilities per item for one model, keyed by exactly what its student reads; one JSONL file."""

    def __init__(self, info) -> None:
        from bot.prompt import V3
        from bot.rater.locate import cache_dir

        self.code_chars, self.v3 = info.code_chars, info.prompt_version == V3
        digest = (info.manifest.get("adapter") or {}).get("sha256") or info.model_id
        tag = hashlib.sha256(json.dumps([digest, info.prompt_version, info.code_chars, info.label_bias,
                                         info.template], sort_keys=True).encode()).hexdigest()[:16]
        self.path = cache_dir() / "benchmarks" / f"ratings-{tag}.jsonl"
        self.table: dict[str, dict] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                self.table[row["key"]] = row["probs"]

    def key(self, e) -> str:
        origin = "" if self.v3 else str(e.meta.get("origin") or "")
        seen = [e.code if self.code_chars else "", e.review, origin]
        return hashlib.sha256(json.dumps(seen).encode()).hexdigest()

    def rate(self, rate, examples: list) -> list[dict]:
        missing = {self.key(e): e for e in examples if self.key(e) not in self.table}
        if missing:
            keys = list(missing)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                for start in range(0, len(keys), 50):
                    chunk = keys[start:start + 50]
                    for k, probs in zip(chunk, rate([missing[k] for k in chunk])):
                        self.table[k] = probs
                        fh.write(json.dumps({"key": k, "probs": probs}) + "\n")
                    print(f"  rated {min(start + 50, len(keys))}/{len(keys)}", file=sys.stderr)
        return [self.table[self.key(e)] for e in examples]


def rate_model(folder: Path, sets: dict[str, list], threads: int) -> tuple[object, dict, dict | None]:
    """(info, student probabilities per set, served probabilities per set or None without a prior)."""
    from training.heldout import model_rater, served

    info, rater, rate, prior = model_rater(folder, n_threads=threads)
    cache = RatingCache(info)
    try:
        student = {name: cache.rate(rate, items) for name, items in sets.items()}
    finally:
        rater.close()
    if prior is None:
        return info, student, None
    return info, student, {name: served(sets[name], student[name], prior[0], prior[1], info.prompt_version,
                                                info.lexical_scope)
                           for name in sets}


# -- the student's training items, rebuilt ----------------------------------------------------------------

def recipe_args(manifest: dict) -> argparse.Namespace | None:
    """The data options of the manifest's ``python -m training.recipe`` command; None when it is not one."""
    words = shlex.split(str(manifest.get("command") or ""))
    if "training.recipe" not in words:
        return None
    parser = argparse.ArgumentParser(add_help=False)
    for flag, default in (("--seed", 0), ("--train-seed", None), ("--total", 5200), ("--limit", 0),
                          ("--per-review", 0)):
        parser.add_argument(flag, type=int, default=default)
    args, _ = parser.parse_known_args(words[words.index("training.recipe") + 1:])
    return args


def training_items(manifest: dict, sources: dict, args: argparse.Namespace) -> list:
    """Exactly the items :func:`training.recipe.build_mixed` (prompt v4) or ``build_default`` (v3) trained on,
    before teacher soft labels and weights."""
    from bot.prompt import V3
    from training.examples import dedupe_reviews
    from training.mixed import plan

    seed = args.seed if args.train_seed is None else args.train_seed
    if manifest.get("prompt_version") == V3:
        items = [_plain(e) for e in sources["train_reviews"]]
        items = dedupe_reviews(items, keep=args.per_review) if args.per_review else items
        return random.Random(args.seed).sample(items, min(args.limit, len(items))) if args.limit else items
    items = plan(sources["train_reviews"], sources["train_rules"], total=args.total, seed=seed)
    return random.Random(seed).sample(items, min(args.limit, len(items))) if args.limit else items


def _plain(example):
    """A review item as prompt v3's recipe read it (no analyser fields: those came with v4)."""
    from dataclasses import replace

    meta = {k: v for k, v in example.meta.items() if k not in ("tool", "rule", "level", "group")}
    return replace(example, meta=meta)


def check_rebuilt(manifest: dict, items: list, seed: int, verify_hash: bool) -> str:
    """How sure the rebuilt items are the student's own: counts against the manifest, optionally the hash."""
    from collections import Counter

    from training.mixed import family

    data = manifest.get("data") or {}
    counts = dict(sorted(Counter(family(e) for e in items).items()))
    same = len(items) == data.get("train") and counts == data.get("per_family", counts)
    note = (f"{len(items)} items rebuilt, manifest says {data.get('train')}"
            + ("; per-family counts match" if "per_family" in data and same else ""))
    if not same:
        return "NOT the student's items (counts differ): " + note
    if verify_hash:
        note += "; data hash " + ("matches" if _hash(manifest, items, seed) == manifest.get("data_hash") else
                                  "differs (soft labels or items changed since training)")
    return note


def _hash(manifest: dict, items: list, seed: int) -> str:
    from bot.prompt import V3
    from training.examples import balance_weights, data_hash, with_teacher_soft_labels
    from training.mixed import family

    if manifest.get("prompt_version") == V3:
        return data_hash(balance_weights(with_teacher_soft_labels(items, seed=seed)))
    reviews = [e for e in items if not e.meta.get("tool") or family(e) == "sonar-python"]
    rules = [e for e in items if e.meta.get("tool") and family(e) != "sonar-python"]
    return data_hash([e for part in (reviews, rules) if part for e in with_teacher_soft_labels(part, seed=seed)])


def tfidf_same(items: list, sets: dict[str, list], version: str) -> dict[str, list]:
    """TF-IDF + LR fitted on the student's own items, reading what the student reads (no origin for v3)."""
    from bot.prompt import V3
    from training.examples import teacher_probabilities
    from training.heldout import without_origin
    from training.lexical import fit_prior

    model = fit_prior(items)
    view = without_origin if version == V3 else list
    return {name: teacher_probabilities(model, view(examples)) for name, examples in sets.items()}


def tfidf_review(sources: dict, sets: dict[str, list]) -> dict[str, list]:
    """The old baseline: TF-IDF on the review text, fitted on train.jsonl (minus the exam for the exam sets)."""
    from training.baselines import TfidfBaseline
    from training.examples import load_jsonl, severity_split

    full = TfidfBaseline().fit(load_jsonl(severity_split("train")))
    minus_exam = TfidfBaseline().fit(sources["train_reviews"])
    return {name: (minus_exam if name.startswith("exam") else full).predict_proba(examples)
            for name, examples in sets.items()}


# -- figures ----------------------------------------------------------------------------------------------

def security_share(sets: dict[str, list], probs: dict[str, list]) -> dict[str, dict]:
    """Held-out CodeQL rules with security-severity >= 7: share rated major or above, with and without origin."""
    from training.metrics import at_least
    from training.mixed import family

    out = {}
    for name in ("rules", "rules_no_origin"):
        idx = [i for i, e in enumerate(sets[name]) if family(e) == "codeql"
               and (m := _SEVERITY.search(str(e.meta.get("level") or ""))) and float(m.group(1)) >= 7.0]
        out[name] = {"n": len(idx), "major_or_above": round(at_least([probs[name][i] for i in idx], "major"), 4)}
    return out


def paired_on_dev(sets: dict[str, list], student: dict[str, list], baseline: dict[str, list]) -> dict:
    """Student alone minus a baseline on dev crc-py (no origin: review comments carry none)."""
    from training.evaluate import paired_difference
    from training.mixed import family

    idx = [i for i, e in enumerate(sets["dev_no_origin"]) if family(e) == "crc-py"]
    pick = lambda xs: [xs[i] for i in idx]
    return paired_difference(pick(sets["dev_no_origin"]), pick(student["dev_no_origin"]),
                             pick(baseline["dev_no_origin"]))


def run(args: argparse.Namespace) -> dict:
    from bot.models import read_manifest
    from bot.reviewers.ruff import find_ruff
    from training.heldout import held_out_sets, report
    from training.mixed import load_sources

    models = [(Path(f), read_manifest(Path(f))) for f in args.model]
    seeds = {(recipe_args(m) or argparse.Namespace(seed=0)).seed for _, m in models}
    if len(seeds) > 1:
        raise ValueError(f"the models were held out with different seeds {sorted(seeds)}: compare them in "
                         "separate runs")
    seed = seeds.pop()
    sources = load_sources(seed=seed, ruff_executable=find_ruff())
    sets = {k: spread(v, args.limit) for k, v in held_out_sets(sources).items()}
    systems: dict[str, dict] = {"TF-IDF review": tfidf_review(sources, sets)}
    result: dict = {"seed": seed, "n": {k: len(v) for k, v in sets.items()}, "models": {}, "paired_dev_crc_py": {}}
    taken: set[str] = set()
    for folder, manifest in models:
        name, rargs = label_for(folder, taken), recipe_args(manifest)
        print(f"rating {sum(map(len, sets.values()))} held-out items with {folder}", file=sys.stderr)
        info, student, as_served = rate_model(folder, sets, args.threads)
        if as_served is not None:
            systems[f"{name} served"] = as_served
        systems[f"{name} student"] = student
        if rargs is None:
            note = "cannot rebuild the training items: the manifest's command is not a training.recipe run"
        else:
            items = training_items(manifest, sources, rargs)
            note = check_rebuilt(manifest, items, rargs.seed, args.verify_hash)
            if not note.startswith("NOT"):
                systems[f"{name} TF-IDF same items"] = tfidf_same(items, sets, info.prompt_version)
        result["models"][name] = {"folder": str(folder), "prompt_version": info.prompt_version,
                                  "lexical_weight": info.lexical[1] if info.lexical else None,
                                  "command": manifest.get("command"), "training_items": note}
        for baseline in ("TF-IDF review", f"{name} TF-IDF same items"):
            if baseline in systems:
                result["paired_dev_crc_py"][f"{name} student - {baseline}"] = paired_on_dev(
                    sets, student, systems[baseline])
    result["security"] = {system: security_share(sets, probs) for system, probs in systems.items()}
    result["systems"] = {system: report(sets, probs) for system, probs in systems.items()}
    return result


def spread(items: list, limit: int) -> list:
    """Every item, or ``limit`` of them spread over the whole set (sets are ordered by source)."""
    return items if not limit or limit >= len(items) else items[:: len(items) // limit][:limit]


def _cell(m: dict | None) -> str:
    if not m:
        return f"{'-':>6}{'-':>6}{'-':>6}{'-':>6}"
    conc = "-" if m["concordance"] is None else f"{m['concordance']:.3f}"
    return f"{m['accuracy']:6.3f}{m['band_accuracy']:6.3f}{m['macro_f1']:6.3f}{conc:>6}"


def to_text(result: dict) -> str:
    n = ", ".join(f"{k} {v}" for k, v in result["n"].items() if not k.endswith("no_origin"))
    lines = [f"held-out sets (seed {result['seed']}): {n}; each with the finding's origin and without"]
    for name, m in result["models"].items():
        lines.append(f"  {name}: {m['folder']}, {m['prompt_version']}, lexical weight {m['lexical_weight']}; "
                     f"{m['command']}\n    training items for TF-IDF same items: {m['training_items']}")
    width = max(map(len, result["systems"])) + 2
    head = f"{'acc':>6}{'band':>6}{'mF1':>6}{'conc':>6}"
    for set_name in SETS:
        families = next(iter(result["systems"].values()))[set_name]
        for fam in [f for f in families if f != "all"] + ["all"]:
            n_items = families[fam]["n"]
            lines += ["", f"{set_name} / {fam} (n={n_items})".ljust(width) + f"{'with origin':>24} | no origin",
                      "system".ljust(width) + head + " | " + head]
            for system, rep in result["systems"].items():
                lines.append(system.ljust(width) + _cell(rep[set_name].get(fam)) + " | "
                             + _cell(rep[f"{set_name}_no_origin"].get(fam)))
    lines += ["", "held-out CodeQL rules with security-severity >= 7 rated major or above (goal >= 0.95)"]
    for system, row in result["security"].items():
        lines.append(f"  {system.ljust(width)}with origin {row['rules']['major_or_above']:.3f} (n="
                     f"{row['rules']['n']})  no origin {row['rules_no_origin']['major_or_above']:.3f}")
    lines += ["", "dev crc-py, paired on the same items, clusters resampled (95% interval)"]
    for pair, d in result["paired_dev_crc_py"].items():
        lines.append(f"  {pair}: accuracy {d['accuracy_delta']:+.3f} {d['accuracy_ci95']}, macro-F1 "
                     f"{d['macro_f1_delta']:+.3f} {d['macro_f1_ci95']} (n={d['n']}, {d['clusters']} clusters)")
    return "\n".join(lines)


def finish(run, to_text, args) -> int:
    """Run a benchmark and print its result (``--json`` or text); a Sieve, value or file error is one line, exit 2.
    Shared by the benchmarks of this folder that report tables."""
    from bot.errors import SieveError

    try:
        result = run(args)
    except (SieveError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1) if args.json else to_text(result))
    return 0


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(prog="python -m benchmarks.heldout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="a model folder (repeatable)")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON instead of tables")
    parser.add_argument("--limit", type=int, default=0, help="rate only N items of each set (quick look)")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (default 1: shares the CPU)")
    parser.add_argument("--verify-hash", action="store_true",
                        help="also compare the rebuilt training items' data hash with the manifest's (slow)")
    args = parser.parse_args(argv)
    missing = shared_ready()
    if missing:
        print(missing)
        return 0
    return finish(run, to_text, args)


if __name__ == "__main__":
    raise SystemExit(main())
