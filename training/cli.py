"""``sieve train exam|evaluate|curriculum|finetune|export|loop`` — the training side's command line.

``bot/cli.py`` hands everything after ``sieve train`` to :func:`main`. Each subcommand is a thin shell
over one module (exam, evaluate, curriculum, finetune, export, loop); errors are :class:`SieveError`
subclasses that the bot's CLI prints without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bot.errors import SieveError, TrainingError
from bot.models import resolve_model
from bot.prompt import MAX_CODE_CHARS
from bot.severity import LABELS
from training.examples import Example, data_hash, load_jsonl, severity_split
from training.propose import add_parser as propose_parser


def _examples(path: str, limit: int | None = None) -> list[Example]:
    """Examples from a JSONL file or an exam JSON (``sieve train exam`` output); 'train'/'dev' name shared splits."""
    from training.curriculum import load_labeled
    from training.exam import Exam

    target = severity_split(path) if path in ("train", "dev") else Path(path)
    items = Exam.load(target).items if target.suffix == ".json" else load_labeled(target)
    return items[:limit] if limit else items


def cmd_exam(args: argparse.Namespace) -> int:
    from training.exam import Exam, exclude, split_heldout, stratified_sample

    pool = _examples(args.data)
    if args.exclude:
        pool = exclude(pool, Exam.load(args.exclude))
    if args.heldout:
        exam, _ = split_heldout(pool, args.n, args.seed, name=Path(args.out).stem)
    else:
        exam = Exam(items=stratified_sample(pool, args.n, args.seed), name=Path(args.out).stem, seed=args.seed,
                    origin=args.data)
    exam.save(args.out)
    counts = {label: sum(e.label == label for e in exam.items) for label in ("critical", "major", "minor", "trivial")}
    print(f"wrote {exam.kind} exam of {len(exam)} items to {args.out} {counts}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.baselines import ContextualCalibration
    from training.evaluate import evaluate, save_pngs
    from training.loop import llamacpp_rater

    examples = _examples(args.data, args.limit)
    model = resolve_model(args.model, args.models_dir or os.environ.get("SIEVE_MODELS_DIR") or None)
    rater = llamacpp_rater(model)
    ratings = rater.rate_texts([(e.code, e.review) for e in examples])
    if args.calibrate:
        calibration = ContextualCalibration.measure(rater)
        ratings = [calibration.apply_rating(r) for r in ratings]
    report = evaluate(ratings, examples, model_id=model.model_id)
    if args.png:
        save_pngs(report, args.png, gold=[e.label for e in examples], probs=[r.probabilities for r in ratings],
                  stem=model.name)
    print(report.to_json() if args.format == "json" else report.to_text())
    return 0


def cmd_curriculum(args: argparse.Namespace) -> int:
    from training.curriculum import CurriculumConfig, build_curriculum, load_feedback
    from training.exam import Exam

    config = CurriculumConfig(weak_lambda=args.weak_lambda, include_untrusted=args.include_untrusted,
                              max_items=args.max_items, threshold=args.threshold)
    curriculum = build_curriculum(
        teacher=[e for path in args.teacher for e in _examples(path)],
        feedback=[e for path in args.feedback for e in load_feedback(path, config)],
        previous=[e for path in args.previous for e in _examples(path)],
        weak_areas=args.weak, heldout=Exam.load(args.heldout) if args.heldout else None, config=config)
    path = curriculum.save(args.out)
    print(f"wrote {len(curriculum.examples)} items to {path}: {json.dumps(curriculum.stats)}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from training.exam import Exam, assert_no_leak
    from training.finetune import FinetuneConfig, finetune
    from training.recipe import _parse_sets

    examples = _examples(args.data, args.limit)
    if args.heldout:
        assert_no_leak(examples, Exam.load(args.heldout))
    chosen = {"base": args.base, "max_steps": args.max_steps, "epochs": args.epochs, "rank": args.rank, "lr": args.lr,
              "grad_accum": args.grad_accum, "seed": args.seed, "code_chars": args.code_chars,
              "init_adapter": args.init_adapter or "", "gradient_checkpointing": args.gradient_checkpointing,
              "preference": args.preference, "preference_beta": args.preference_beta}
    config = FinetuneConfig(**{**chosen, **_parse_sets(args.set)})
    result = finetune(examples, config, Path(args.out), resume=args.resume)
    print(f"trained {result.steps} steps in {result.seconds:.0f} s (final loss {result.final_loss:.4f}); "
          f"adapter at {result.peft_dir}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from training.export import base_gguf_path, export_adapter
    from training.registry import write_manifest

    out = Path(args.out)
    export_adapter(Path(args.peft), out, base=args.base)
    print(f"wrote GGUF adapter {out}")
    if args.manifest:
        data = load_jsonl(args.data) if args.data else []
        trained = Path(args.peft) / "sieve_finetune.json"  # the prompt the adapter was trained on
        trained_with = json.loads(trained.read_text(encoding="utf-8")) if trained.is_file() else {}
        config = trained_with.get("config", {})
        write_manifest(out.parent, name=args.name or out.parent.name, base=args.base,
                       base_path=base_gguf_path(args.base), adapter_file=out.name,
                       data_hash=data_hash(data) if data else "", command="sieve train " + " ".join(sys.argv[1:]),
                       template=trained_with.get("template"), code_chars=config.get("code_chars"))
        print(f"wrote {out.parent / 'manifest.json'}")
    return 0


def cmd_loop(args: argparse.Namespace) -> int:
    from training.curriculum import CurriculumConfig
    from training.exam import Exam, split_heldout
    from training.finetune import FinetuneConfig
    from training.loop import LoopConfig, run_loop

    teacher_data = _examples(args.data) if args.data else []
    if args.heldout:
        heldout = Exam.load(args.heldout)
    elif teacher_data:
        heldout, teacher_data = split_heldout(teacher_data, args.heldout_size, args.seed)
    else:
        raise TrainingError("no held-out exam", hint="pass --heldout EXAM.json (from `sieve train exam --heldout`)")
    teacher = _teacher(args, teacher_data, heldout)
    args.base, args.code_chars = _lineage(args)
    if args.lexical_weight is not None and not 0.0 <= args.lexical_weight <= 1.0:
        raise TrainingError(f"--lexical-weight {args.lexical_weight} is outside [0, 1]",
                            hint="0 serves the student alone, 1 the lexical prior alone")
    config = LoopConfig(run_dir=args.run_dir, rounds=args.rounds, max_seconds=args.max_seconds,
                        exam_size=args.exam_size, examples_per_round=args.examples, start_from=args.start_from,
                        model_name=args.model_name, models_root=args.models_dir or "", base=args.base,
                        feedback=tuple(args.feedback), previous=tuple(args.previous),
                        lexical_weight=args.lexical_weight, warm_start=not args.fresh, prior_paths=args.prior_paths,
                        curriculum=CurriculumConfig(threshold=args.threshold),
                        finetune=FinetuneConfig(base=args.base, max_steps=args.max_steps, epochs=args.epochs,
                                                seed=args.seed, code_chars=args.code_chars,
                                                preference=args.preference, preference_beta=args.preference_beta))
    result = run_loop(config, teacher, heldout)
    print(f"stopped: {result.stop_reason}; promoted in rounds {result.promoted or 'none'}; "
          f"log at {Path(args.run_dir) / 'log.jsonl'}")
    return 0


def _teacher(args: argparse.Namespace, data: list[Example], heldout):
    from training.teacher import DatasetTeacher, DatasetTeacherConfig, OpenAITeacher, OpenAITeacherConfig

    if args.teacher == "dataset":
        if not data:
            raise TrainingError("the dataset teacher needs --data FILE.jsonl", hint="e.g. --data train")
        return DatasetTeacher(data, DatasetTeacherConfig(seed=args.seed, soft_labels=args.soft_labels),
                              exclude=heldout.item_keys())
    return OpenAITeacher(OpenAITeacherConfig(base_url=args.teacher_url, model=args.teacher_model,
                                             max_tokens=args.teacher_max_tokens, price_prompt_per_m=args.price_in,
                                             price_completion_per_m=args.price_out, soft_labels=args.soft_labels,
                                             seed=args.seed), exclude=heldout.item_keys())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sieve train", description="Teacher–student training of the severity model")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("exam", help="draw a balanced exam (or a held-out exam) from a labeled JSONL file")
    p.add_argument("--data", required=True, help="JSONL file, or 'train' / 'dev' for the shared splits")
    p.add_argument("--n", type=int, default=40, help="items")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--heldout", action="store_true", help="mark it held-out: it must never be trained on")
    p.add_argument("--exclude", help="an exam JSON whose items must not be drawn")
    p.add_argument("--out", required=True, help="exam JSON to write")
    p = sub.add_parser("evaluate", help="score a model on labeled data through the serving rater")
    p.add_argument("--data", required=True, help="JSONL or exam JSON; 'dev' / 'train' for the shared splits")
    p.add_argument("--model", default="default", help="registered name, model folder, .gguf, or 'base'")
    p.add_argument("--models-dir", help="your models folder, searched before the shipped students "
                                        "(default: $SIEVE_MODELS_DIR)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--png", help="folder for confusion-matrix and reliability PNGs")
    p.add_argument("--limit", type=int, help="only the first N examples")
    p.add_argument("--calibrate", action="store_true", help="contextual calibration (content-free prior)")
    p = sub.add_parser("curriculum", help="merge teacher items, feedback and earlier curricula")
    p.add_argument("--teacher", nargs="*", default=[], help="teacher-written JSONL files")
    p.add_argument("--feedback", nargs="*", default=[], help="`sieve feedback export` JSONL files")
    p.add_argument("--previous", nargs="*", default=[], help="earlier curriculum.jsonl files")
    p.add_argument("--weak", nargs="*", default=[], help="weak areas, e.g. level:major source:sven")
    p.add_argument("--heldout", help="held-out exam JSON whose items are dropped")
    p.add_argument("--weak-lambda", type=float, default=2.0, help="weight multiplier for weak areas")
    p.add_argument("--max-items", type=int)
    p.add_argument("--include-untrusted", action="store_true")
    _threshold_arg(p)
    p.add_argument("--out", required=True, help="folder for curriculum.jsonl and its stats")
    p = sub.add_parser("finetune", help="LoRA fine-tune on a JSONL file")
    _finetune_args(p)
    p.add_argument("--data", required=True)
    p.add_argument("--limit", type=int)
    p.add_argument("--heldout", help="refuse data that contains this exam's items")
    p.add_argument("--out", required=True, help="output folder (peft adapter in OUT/adapter)")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--grad-accum", type=int, default=8)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init-adapter", help="GGUF LoRA adapter to train on from (e.g. models/default/adapter.gguf; "
                                          "same base, rank and layers)")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute activations in the backward pass: less memory, more time (docs/training.md)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other FinetuneConfig field, e.g. --set freeze_layers=4 --set dropout=0.1 (applied last)")
    p = sub.add_parser("export", help="peft adapter → GGUF LoRA adapter (+ manifest)")
    p.add_argument("--peft", required=True, help="peft adapter folder")
    p.add_argument("--out", required=True, help="adapter .gguf path (its folder becomes the model folder)")
    p.add_argument("--base", default="smollm2")
    p.add_argument("--manifest", action="store_true", help="also write manifest.json next to it")
    p.add_argument("--name", help="model name for the manifest")
    p.add_argument("--data", help="training JSONL (for the manifest's data hash)")
    _corpus_parser(sub)
    _loop_parser(sub)
    propose_parser(sub)
    return parser


def _corpus_parser(sub) -> None:
    p = sub.add_parser("corpus", help="turn analysers' own rule metadata into labelled examples (vendor-rule teacher)")
    p.add_argument("--ruff", action="store_true", help="ruff's rule catalogue (`ruff rule --all`), by category")
    p.add_argument("--ruff-executable", help="ruff to ask (default: next to Python, then PATH)")
    p.add_argument("--sarif", nargs="*", default=[], help="SARIF logs whose rules (level, security-severity) to use")
    p.add_argument("--analysers", help="a rows file like ../shared/data/analysers/analysers.jsonl")
    p.add_argument("--out", required=True, help="JSONL to write (the training data's shape + tool, rule, level)")


def _loop_parser(sub) -> None:
    p = sub.add_parser("loop", help="K rounds of exam → grade → curriculum → finetune → export → promote")
    _finetune_args(p, inherit=True)
    p.add_argument("--teacher", choices=("dataset", "openai"), default="dataset")
    p.add_argument("--data", help="labeled JSONL the dataset teacher draws from ('train' for the shared split)")
    p.add_argument("--heldout", help="held-out exam JSON; else --heldout-size items are split off --data")
    p.add_argument("--heldout-size", type=int, default=60)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-seconds", type=float, help="wall-time budget")
    p.add_argument("--exam-size", type=int, default=40)
    p.add_argument("--examples", type=int, default=200, help="teacher-written training items per round")
    p.add_argument("--feedback", nargs="*", default=[], help="`sieve feedback export` files to fold in")
    _threshold_arg(p)
    p.add_argument("--previous", nargs="*", default=[],
                   help="curriculum.jsonl files of earlier loop runs to carry into the first round")
    p.add_argument("--start-from", default="default", help="current student (name, folder or 'base')")
    p.add_argument("--fresh", action="store_true",
                   help="train each candidate as a fresh LoRA on the base (default: on from the current student's "
                        "adapter, with its rank, alpha, targets and frozen layers)")
    p.add_argument("--lexical-weight", type=float, default=None,
                   help="weight of a lexical prior fitted on each candidate's curriculum, 0 to 1 (default: the "
                        "--start-from student's; 0 serves the student alone)")
    p.add_argument("--prior-paths", action="store_true",
                   help="the candidate's updated prior also learns which rules the feedback turned down in which "
                        "folders (S rules under tests/; docs/memory.md); off by default")
    p.add_argument("--model-name", default="default", help="registry name to promote to")
    p.add_argument("--models-dir", help="models folder the winner is promoted into (default: $SIEVE_MODELS_DIR; "
                                        "in a source checkout, its models/); never the installed package")
    p.add_argument("--run-dir", default="runs/loop")
    p.add_argument("--soft-labels", action="store_true", help="attach teacher soft labels (distillation)")
    p.add_argument("--teacher-url", default="http://127.0.0.1:8000/v1")
    p.add_argument("--teacher-model", default="teacher")
    p.add_argument("--teacher-max-tokens", type=int, default=200_000, help="teacher token budget")
    p.add_argument("--price-in", type=float, default=0.0, help="$ per 1M prompt tokens")
    p.add_argument("--price-out", type=float, default=0.0, help="$ per 1M completion tokens")


def _lineage(args: argparse.Namespace) -> tuple[str, int]:
    """Base and code cap for the loop's candidates: as given, else those of the student it starts from
    (so a Gemma review-only default is followed by Gemma review-only candidates)."""
    from training.loop import _start_model
    from training.registry import models_root

    if args.base is not None and args.code_chars is not None:
        return args.base, args.code_chars
    root = models_root(args.models_dir)
    try:
        current = _start_model(args.start_from, root, args.base or "smollm2")
    except SieveError:  # no such student yet: the loop itself reports that clearly
        current = None
    recorded = (current.manifest.get("base") or {}) if current is not None else {}
    known = recorded.get("name") or recorded.get("file")
    code_chars = current.code_chars if current is not None else MAX_CODE_CHARS
    return args.base or known or "smollm2", code_chars if args.code_chars is None else args.code_chars


def _finetune_args(p: argparse.ArgumentParser, inherit: bool = False) -> None:
    p.add_argument("--base", default=None if inherit else "smollm2",
                   help="smollm2, gemma3-270m or a .gguf path" + (" (default: the --start-from student's)" if inherit
                                                                 else ""))
    p.add_argument("--max-steps", type=int, help="optimizer steps (overrides --epochs)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--code-chars", type=int, default=None if inherit else MAX_CODE_CHARS,
                   help="code characters in the prompt (0: review text alone); recorded in the manifest"
                        + (" (default: the --start-from student's)" if inherit else ""))
    p.add_argument("--preference", choices=("unlikelihood", "kto", "dpo"), default="unlikelihood",
                   help="how feedback rows train: unlikelihood (👍/corrections as labels, bare 👎 -log(1-P)), kto, or "
                        "dpo (pairs from corrections, KTO for the rest); docs/training.md")
    p.add_argument("--preference-beta", type=float, default=1.0, help="beta of the KTO / DPO terms")


def cmd_propose(args: argparse.Namespace) -> int:
    from training.propose import cmd_propose as run

    return run(args)


def cmd_corpus(args: argparse.Namespace) -> int:
    from collections import Counter

    from bot.reviewers.ruff import find_ruff
    from training.corpus import build
    from training.examples import dump_jsonl

    if not (args.ruff or args.sarif or args.analysers):
        raise TrainingError("nothing to build a corpus from", hint="give --ruff, --sarif FILE… or --analysers FILE")
    items = build(ruff=args.ruff, ruff_executable=find_ruff(args.ruff_executable) if args.ruff else "ruff",
                  sarif=args.sarif, analysers=args.analysers)
    dump_jsonl(items, args.out)
    tools = Counter(str(e.meta.get("tool")) for e in items)
    print(f"wrote {len(items)} item(s) to {args.out}: " + ", ".join(f"{t} {n}" for t, n in sorted(tools.items())),
          file=sys.stderr)
    return 0


def _threshold_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threshold", choices=LABELS, default="minor",
                   help="the team's posting threshold: a bare 👎 trains as 'below it' (default: minor, as Sieve posts)")


COMMANDS = {"corpus": cmd_corpus, "exam": cmd_exam, "evaluate": cmd_evaluate, "curriculum": cmd_curriculum, "finetune": cmd_finetune,
            "export": cmd_export, "loop": cmd_loop, "propose": cmd_propose}


def main(argv: list[str]) -> int:
    """Entry point for ``sieve train …`` (``argv`` without the leading ``train``)."""
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":  # python -m training.cli …
    try:
        sys.exit(main(sys.argv[1:]))
    except SieveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
