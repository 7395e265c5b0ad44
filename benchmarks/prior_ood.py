"""Does a student's lexical prior help on review comments from a project it never saw?

    .venv/bin/python -m benchmarks.prior_ood [--model models/default] [--folds 4] [--json]

The prior's weight was chosen on held-out sets drawn like its training data, where a review comment's wording
often repeats its project's (one repository holds a sixth of the review comments). A team's reviews come from
another project. This benchmark takes the human review comments (crc-py) of the held-out exam and of dev — the
student never trained on them — and rates each with:

- the student alone (through the serving rater, prior off);
- the student + the **shipped** prior, fitted on the student's training items, which include other comments
  from the same repositories as the dev items;
- the student + a **leave-project-out** prior: the same fit with every item of the rated comment's repository
  left out (repositories in ``--folds`` groups, so each comment is rated by a prior that never read its project).

at each weight of the grid, and reports accuracy and macro-F1 with a 95% cluster-bootstrap interval (clusters =
repositories) for "leave-project-out at the shipped weight minus the student alone". The training items are
rebuilt from the recipe (``training.mixed.plan``, the manifest's seed). Comments on the projects kept for
evaluation (``benchmarks.team_data.RESERVED``) are left out. Nothing here is tuned: the weight grid and the
folds are fixed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks.team_data import RESERVED

GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def repository(example) -> str:
    """The repository of a crc-py review comment (``crcpy-OWNER-NAME-ID``), else ""."""
    parts = example.id.split("-")
    return f"{parts[1]}/{parts[2]}" if example.id.startswith("crcpy-") and len(parts) >= 4 else ""


def comments(sources: dict) -> list:
    """The held-out human review comments: exam and dev crc-py, reserved projects left out."""
    out = []
    for name in ("exam", "dev"):
        for example in sources[name]:
            repo = repository(example)
            if repo and not set(repo.lower().split("/")) & set(RESERVED):  # projects kept for evaluation
                out.append((name, example))
    return out


def folds_of(repos: list[str], folds: int) -> dict[str, int]:
    """Repositories dealt into ``folds`` groups, the largest first, so folds hold similar numbers of comments."""
    counts: dict[str, int] = {}
    for repo in repos:
        counts[repo] = counts.get(repo, 0) + 1
    order = sorted(counts, key=lambda r: (-counts[r], r))
    return {repo: i % folds for i, repo in enumerate(order)}


def measure(model: Path, folds: int, threads: int | None) -> dict:
    from bot.prompt import expert_text
    from bot.rater.lexical import LexicalPrior
    from bot.reviewers.ruff import find_ruff
    from training.evaluate import paired_difference
    from training.examples import Example
    from training.heldout import model_rater
    from training.lexical import blend, export_prior, fit_prior
    from training.metrics import severity_metrics
    from training.mixed import load_sources, plan

    began = time.time()
    info, rater, rate, shipped = model_rater(model, n_threads=threads)
    try:
        if shipped is None:
            raise SystemExit(f"error: {model} has no lexical prior to examine")
        seed = int((info.manifest.get("hyperparameters") or {}).get("seed", 0))
        sources = load_sources(seed=seed, ruff_executable=find_ruff())
        rated = comments(sources)
        examples: list[Example] = [e for _, e in rated]
        student = rate(examples)
    finally:
        rater.close()
    items = plan(sources["train_reviews"], sources["train_rules"], total=5200, seed=seed)
    texts = [expert_text(e.review, "", info.prompt_version) for e in examples]
    repos = [repository(e) for e in examples]
    fold = folds_of(repos, folds)
    prior_shipped = [shipped[0].probabilities(t) for t in texts]
    prior_lpo: list = [None] * len(examples)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for k in range(folds):
            held = {r for r, f in fold.items() if f == k}
            fitted = fit_prior([e for e in items if repository(e) not in held])
            prior = LexicalPrior.load(export_prior(fitted, Path(tmp) / f"prior{k}.json"))
            for i, repo in enumerate(repos):
                if repo in held:
                    prior_lpo[i] = prior.probabilities(texts[i])
    table: dict[str, dict] = {}
    for name, prior in (("shipped prior", prior_shipped), ("leave-project-out prior", prior_lpo)):
        for weight in GRID:
            probs = blend(student, prior, weight) if weight else student
            row = {}
            for part in ("exam", "dev", "all"):
                idx = [i for i, (p, _) in enumerate(rated) if part in ("all", p)]
                m = severity_metrics([examples[i] for i in idx], [probs[i] for i in idx])
                row[part] = {"n": len(idx), "accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4)}
            table[f"{name} @ {weight:g}"] = row
    weight = shipped[1]
    difference = paired_difference(examples, blend(student, prior_lpo, weight), student, groups=repos)
    return {"model": str(model), "model_id": info.model_id, "shipped_weight": weight, "comments": len(examples),
            "repositories": len(set(repos)), "folds": folds, "table": table,
            "lpo_at_shipped_weight_minus_student": difference, "seconds": round(time.time() - began, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prior_ood", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/default", help="model folder with a lexical prior")
    parser.add_argument("--folds", type=int, default=4, help="groups of repositories left out in turn")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    result = measure(Path(args.model), args.folds, args.threads)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{result['model_id']}: {result['comments']} review comments from {result['repositories']} repositories "
          f"(exam + dev crc-py), {result['folds']} folds, {result['seconds']} s")
    print(f"{'system @ weight':<34} {'exam acc / F1':>16} {'dev acc / F1':>16} {'all acc / F1':>16}")
    for name, row in result["table"].items():
        cells = [f"{row[p]['accuracy']:.3f} / {row[p]['macro_f1']:.3f}" for p in ("exam", "dev", "all")]
        print(f"{name:<34} {cells[0]:>16} {cells[1]:>16} {cells[2]:>16}")
    d = result["lpo_at_shipped_weight_minus_student"]
    print(f"leave-project-out prior at the shipped weight {result['shipped_weight']:g} minus the student alone: "
          f"accuracy {d['accuracy_delta']:+.3f} {d['accuracy_ci95']}, "
          f"macro-F1 {d['macro_f1_delta']:+.3f} {d['macro_f1_ci95']} ({d['clusters']} repositories)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
