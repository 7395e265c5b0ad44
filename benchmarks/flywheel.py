"""The product loop, simulated: review → 👍/👎 → feedback export → one training round → review again.

    .venv/bin/python -m benchmarks.flywheel [--rounds 3] [--per-round 40] [--dev-limit 60] [--noise 0.1]

Each round the current student rates a fresh slice of the train split (the "stream of findings"); findings
it would post (P(severity ≥ threshold) ≥ 0.5) get a maintainer reaction decided by the gold label: 👍 when
the predicted level is inside the gold band, 👎 otherwise, flipped with probability ``--noise``; a share
``--corrections`` of 👎 also carry a ``/sieve severity <gold>`` correction. The reactions are exported in
the shape of ``sieve feedback export`` (label = predicted level, vote ±1, acceptable band, trust) and one
loop round runs on all feedback so far plus the previous round's curriculum (its teacher-written items and
earlier feedback, as ``sieve train loop --previous`` carries them; ``--no-carry`` leaves them out), with the
dataset teacher on another slice of train.
Training uses the default student's recipe (``training.recipe``) with ``--max-steps`` steps per round, or
``--epochs`` passes over the round's curriculum (which grows as feedback accumulates); from round 2 on, each
candidate trains on from the adapter in service, as ``sieve train loop`` does (``--fresh``: a new LoRA each
round).
Reported after each round: accuracy / macro-F1 on the first ``--dev-limit`` dev items (0: all of dev), of
the model in service and, when the held-out exam rejected the round's candidate, of that candidate too.
Everything is written under ``--out`` with its own model registry; ``models/`` is not touched.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from bot.models import resolve_model
from bot.severity import LABELS, mass_at_least, parse_severity
from training.evaluate import evaluate
from training.exam import Exam, stratified_sample
from training.examples import Example, load_jsonl, severity_split
from training.loop import LoopConfig, llamacpp_rater, run_loop
from training.teacher import DatasetTeacher, DatasetTeacherConfig


def react(example: Example, rating, rng: random.Random, noise: float, corrections: float) -> dict | None:
    """One maintainer's reaction to a posted finding, as a feedback-export record (None: no reaction)."""
    predicted = rating.severity
    band = set(example.acceptable) | {example.label}
    vote = 1 if predicted in band else -1
    if rng.random() < noise:
        vote = -vote
    correction = example.label if vote < 0 and rng.random() < corrections else None
    if correction:
        label, acceptable = correction, [correction]
    elif vote > 0:
        label, acceptable = predicted, [predicted]
    else:
        label, acceptable = predicted, [x for x in LABELS if x != predicted]
    return {"id": f"feedback-sim-{example.id}", "code": example.code, "code_kind": "diff_excerpt",
            "review": example.review, "label": label, "acceptable_labels": acceptable, "label_quality": "feedback",
            "lang": example.lang, "source": "feedback:simulated", "orig_label": predicted, "predicted": predicted,
            "probabilities": rating.probabilities, "model": rating.model_id, "prompt_version": rating.prompt_version,
            "vote": vote, "trust": "trusted", "correction": correction}


def dev_score(model_name: str, root: Path, dev: list[Example]) -> dict:
    rater = llamacpp_rater(resolve_model(model_name, root))
    report = evaluate(rater, dev)
    rater.close()
    return report.summary()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=40, help="findings reviewed per round")
    parser.add_argument("--dev-limit", type=int, default=60, help="dev items scored after each round (0: all)")
    parser.add_argument("--noise", type=float, default=0.1, help="probability a reaction is flipped")
    parser.add_argument("--corrections", type=float, default=0.3, help="share of 👎 that carry a correction")
    parser.add_argument("--threshold", default="minor", help="post findings at or above this level")
    parser.add_argument("--max-steps", type=int, default=6, help="optimizer steps per round")
    parser.add_argument("--epochs", type=float, default=0.0,
                        help="passes over each round's curriculum instead of --max-steps (steps grow with feedback)")
    parser.add_argument("--grad-accum", type=int, default=4)
    parser.add_argument("--teacher-examples", type=int, default=16, help="dataset-teacher items per round")
    parser.add_argument("--heldout", type=int, default=24, help="held-out exam size (from train)")
    parser.add_argument("--recipe", default="default", help="training.recipe RECIPES entry each round trains with "
                        "(default: the shipped student's, from the bare Gemma 3 270M base; smollm2: the earlier one)")
    parser.add_argument("--start-from", default=None,
                        help="first model (default: the recipe's bare base, 'base' or 'gemma3-270m')")
    parser.add_argument("--lexical-weight", type=float, default=None,
                        help="serve each candidate with a lexical prior fitted on its curriculum at this weight "
                             "(default: as the model in service, i.e. none from a bare base)")
    parser.add_argument("--fresh", action="store_true",
                        help="each round's candidate is a fresh LoRA (sieve train loop --fresh); default: it trains "
                             "on from the adapter in service")
    parser.add_argument("--no-carry", action="store_true",
                        help="do not carry the previous round's curriculum into the next (feedback alone accumulates)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preference", choices=("unlikelihood", "kto", "dpo"), default="unlikelihood",
                        help="how each round trains the reactions (training.preference; as `sieve train loop`)")
    parser.add_argument("--out", default="runs/flywheel")
    args = parser.parse_args(argv)
    from training.finetune import FinetuneConfig
    from training.recipe import RECIPES

    rng = random.Random(args.seed)
    out = Path(args.out)
    root = out / "models"
    train = load_jsonl(severity_split("train"))
    dev = load_jsonl(severity_split("dev"))[: args.dev_limit or None]
    rng.shuffle(train)
    heldout = Exam(items=stratified_sample(train[: args.heldout * 3], args.heldout, args.seed), kind="heldout")
    rest = [e for e in train if e.id not in heldout.ids()]
    stream, teacher_pool = rest[: len(rest) // 2], rest[len(rest) // 2:]
    threshold = parse_severity(args.threshold)
    recipe = RECIPES[args.recipe]
    base = recipe.get("base", "smollm2")
    current = args.start_from or base  # the recipe's packaged base by its key
    history = [{"round": 0, "model": current, "dev": dev_score(current, root, dev)}]
    print(f"round 0: {current} dev[:{len(dev)}] {history[0]['dev']}", flush=True)
    feedback_files: list[str] = []
    carried: tuple[str, ...] = ()
    for k in range(1, args.rounds + 1):
        began = time.monotonic()
        batch = stream[(k - 1) * args.per_round: k * args.per_round]
        rater = llamacpp_rater(resolve_model(current, root))
        ratings = rater.rate_texts([(e.code, e.review) for e in batch])
        rater.close()
        posted = [(e, r) for e, r in zip(batch, ratings) if mass_at_least(r.probabilities, threshold) >= 0.5]
        records = [react(e, r, rng, args.noise, args.corrections) for e, r in posted]
        path = out / f"round-{k:02d}" / "feedback.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        feedback_files.append(str(path))
        teacher = DatasetTeacher(teacher_pool, DatasetTeacherConfig(seed=args.seed + k), exclude=heldout.item_keys())
        config = LoopConfig(run_dir=str(out / f"round-{k:02d}" / "loop"), rounds=1, exam_size=8,
                            examples_per_round=args.teacher_examples, start_from=current, model_name="default",
                            models_root=str(root), feedback=tuple(feedback_files), previous=carried, base=base,
                            lexical_weight=args.lexical_weight, warm_start=not args.fresh,
                            finetune=FinetuneConfig(**{**recipe,
                                                       "max_steps": None if args.epochs else args.max_steps,
                                                       "epochs": args.epochs or 1.0,
                                                       "grad_accum": args.grad_accum, "seed": args.seed + k,
                                                       "checkpoint_every": 0, "preference": args.preference}))
        result = run_loop(config, teacher, heldout, log=lambda line: print("   ", line, flush=True))
        if result.promoted:
            current = "default"
        votes = [r["vote"] for r in records]
        entry = {"round": k, "reviewed": len(batch), "posted": len(posted), "up": votes.count(1),
                 "down": votes.count(-1), "corrections": sum(bool(r["correction"]) for r in records),
                 "promoted": bool(result.promoted), "heldout": result.current,
                 "dev": dev_score(current, root, dev), "seconds": round(time.monotonic() - began, 1)}
        candidate = Path(config.run_dir) / "round-01" / "candidate"
        if not args.no_carry and (candidate.parent / "curriculum.jsonl").is_file():
            carried = (str(candidate.parent / "curriculum.jsonl"),)
        if not result.promoted and (candidate / "manifest.json").is_file():  # was rejecting it right?
            entry["rejected_candidate_dev"] = dev_score(str(candidate), root, dev)
        history.append(entry)
        print(f"round {k}: posted {entry['posted']}/{entry['reviewed']} (👍 {entry['up']} 👎 {entry['down']}, "
              f"{entry['corrections']} corrections), promoted={entry['promoted']}, dev[:{len(dev)}] {entry['dev']}, "
              f"{entry['seconds']} s" + (f"; the rejected candidate on dev: {entry['rejected_candidate_dev']}"
                                          if "rejected_candidate_dev" in entry else ""), flush=True)
    (out / "flywheel.json").write_text(json.dumps(history, indent=1))
    print("\nround  model-after   dev acc  dev macro-F1  rejected candidate's dev acc / macro-F1")
    for h in history:
        rejected = h.get("rejected_candidate_dev")
        print(f"{h['round']:>5}  {'promoted' if h.get('promoted') else 'kept':<12}{h['dev']['accuracy']:>8.3f}"
              f"{h['dev']['macro_f1']:>13.3f}"
              + (f"  {rejected['accuracy']:.3f} / {rejected['macro_f1']:.3f}" if rejected else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
