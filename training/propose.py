"""``sieve train propose``: retrain the team's student on its harvested feedback and say whether the candidate
should replace the student in service, with the evaluation table a pull request shows.

Top to bottom:

1. the trusted feedback export is split by a hash of each finding (its code and review, :func:`item_key`): the
   same findings are held out on every run, so the candidate is never examined on what an earlier one trained on;
2. a candidate is trained from the student in service (``<models folder>/<name>`` when the team has one, else the
   shipped default) by the teacher–student loop (:func:`training.loop.run_loop`, what ``sieve train loop
   --feedback`` runs), the training part of the feedback folded in and drawn from;
3. candidate and student in service are examined through the serving rater on the held-out team feedback *and*
   on the shipped held-out sets (ruff's held-out rules on any runner; the review-data exam and the other
   analysers' held-out rules where Sieve's shared data folder is present);
4. the gate (:func:`gate`): on the team's held-out feedback the candidate must beat the student in service as
   the loop's promotion rule says (``--min-gain``), and on no shipped set may it fall more than ``--tolerance``
   below it (a team's feedback must not teach it to forget severity in general);
5. ``OUT/table.md`` (the evaluation table), ``OUT/evaluation.json`` and ``OUT/decision`` (``promote`` or
   ``keep``) are written; on ``promote`` the candidate is installed as ``<models folder>/<name>``, ready to commit.

Nothing here talks to a host: opening the pull request (or merge request) is the workflow's part.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.errors import TrainingError
from bot.severity import LABELS
from training.curriculum import CurriculumConfig
from training.exam import item_key
from training.examples import Example, from_record
from training.registry import PromotionRule, beats

TEAM = "team feedback (held out)"
METRICS = ("accuracy", "band_accuracy", "macro_f1")
OUTPUTS = ("decision", "table.md", "evaluation.json")
FOOTER = ("Figures: accuracy, band accuracy (the lenient band of acceptable levels) and macro-F1 over the levels "
          "present, each model rated through the serving rater. Merge to put the candidate in service; close to keep "
          "the student in service (Sieve's docs/retraining.md).")


@dataclass(frozen=True)
class Check:
    """One row of the gate: a held-out set, its figures for both models, and whether the candidate passed."""

    name: str
    n: int
    current: dict[str, float]
    candidate: dict[str, float]
    passed: bool
    rule: str


# ----------------------------------------------------------------------------------- the feedback, split
def is_held_out(example: Example, share: float) -> bool:
    """The same finding lands on the same side on every run: a hash of its content, not a random draw."""
    return int(item_key(example)[:8], 16) % 10_000 < round(share * 10_000)


def split_feedback(path: Path, share: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(held-out records, training records)`` of a ``sieve feedback export`` file, unchanged."""
    if not path.is_file():
        raise TrainingError(f"no feedback export at {path}", hint="run `sieve feedback export --db STORE --out FILE`")
    held, train = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            example = from_record(record, f"{path}:{number}")
        except json.JSONDecodeError as exc:
            raise TrainingError(f"{path}:{number}: not JSON ({exc.msg})", hint="one JSON object per line") from None
        (held if is_held_out(example, share) else train).append(record)
    return held, train


def write_records(records: Sequence[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------- the shipped held-out sets
def spread(items: list[Example], limit: int) -> list[Example]:
    """Every item, or ``limit`` of them spread over the whole set (sets are ordered by source)."""
    return items if not limit or limit >= len(items) else items[:: len(items) // limit][:limit]


def shipped_sets(limit: int, ruff_executable: str | None = None) -> tuple[dict[str, list[Example]], list[str]]:
    """The held-out sets Sieve's own students are examined on, as far as this runner has them, and a note per set
    that is absent. Splits are the recipe's (seed 0), so these items never trained a shipped student."""
    from bot.reviewers.ruff import find_ruff
    from training.corpus import build
    from training.examples import load_jsonl, severity_split, shared_dir, split_exam
    from training.heldout import with_full_origin
    from training.mixed import split_rules

    sets: dict[str, list[Example]] = {}
    notes: list[str] = []
    _, ruff_rules = split_rules(build(ruff=True, ruff_executable=find_ruff(ruff_executable)), seed=0)
    sets["ruff rules (shipped, held out)"] = spread(with_full_origin(ruff_rules), limit)
    train, analysers = severity_split("train"), shared_dir() / "data" / "analysers" / "analysers.jsonl"
    if train.is_file():
        _, exam = split_exam(load_jsonl(train), fraction=0.15, seed=0)
        sets["review-data exam (shipped, held out)"] = spread(with_full_origin(exam), limit)
    else:
        notes.append(f"review-data exam: not examined ({train} is absent; set SIEVE_SHARED to Sieve's shared data)")
    if analysers.is_file():
        _, rules = split_rules(build(analysers=analysers), seed=0)
        sets["analyser rules (shipped, held out)"] = spread(with_full_origin(rules), limit)
    else:
        notes.append(f"analyser rules: not examined ({analysers} is absent)")
    return sets, notes


# ----------------------------------------------------------------------------------- the gate (pure)
def gate(figures: dict[str, tuple[dict[str, float], dict[str, float]]], rule: PromotionRule,
         tolerance: float) -> list[Check]:
    """One :class:`Check` per set of ``figures`` (name → (student in service, candidate) summaries): the team's
    held-out feedback under ``rule``; every other set: the candidate's ``rule.metric`` at most ``tolerance``
    below the student in service's."""
    checks = []
    for name, (current, candidate) in figures.items():
        if name == TEAM:
            passed = beats(candidate, current, rule)
            text = f"{rule.metric} must gain more than {rule.min_gain:+.3f}"
        else:
            passed = float(candidate[rule.metric]) >= float(current[rule.metric]) - tolerance - 1e-12
            text = f"{rule.metric} may drop at most {tolerance:.3f}"
        checks.append(Check(name, int(candidate.get("n", 0)), current, candidate, passed, text))
    return checks


def _cell(text: Any) -> str:
    """Table-cell text: pipes, backticks and line breaks cannot break the table or open code spans."""
    return " ".join(str(text).split()).replace("\\", "\\\\").replace("|", "\\|").replace("`", "'")


def table(checks: Sequence[Check], *, name: str, current_id: str, candidate_id: str, notes: Sequence[str],
          training: dict[str, Any]) -> str:
    """The evaluation table as markdown: what a reviewer reads before merging the candidate."""
    promoted = all(c.passed for c in checks)
    head = ("| held-out set | n | in service acc | band | macro-F1 | candidate acc | band | macro-F1 | "
            "Δ macro-F1 | gate |")
    trained = (f"- trained on {training.get('feedback_train', 0)} team feedback item(s) "
               f"({training.get('heldout', 0)} held out by a hash of the finding); "
               f"{training.get('steps', 0)} step(s) in {training.get('seconds', 0)} s")
    lines = [f"## Sieve student `{_cell(name)}`: candidate {'passes' if promoted else 'fails'} the promotion gate",
             "", f"- in service: `{_cell(current_id)}`", f"- candidate: `{_cell(candidate_id)}`", trained, "",
             head, "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for c in checks:
        a, b = c.current, c.candidate
        delta = float(b.get("macro_f1", 0.0)) - float(a.get("macro_f1", 0.0))
        lines.append(f"| {_cell(c.name)} | {c.n} | " + " | ".join(f"{float(a.get(m, 0.0)):.3f}" for m in METRICS)
                     + " | " + " | ".join(f"{float(b.get(m, 0.0)):.3f}" for m in METRICS)
                     + f" | {delta:+.3f} | {'passed' if c.passed else 'FAILED'}: {_cell(c.rule)} |")
    lines += [""] + [f"- {_cell(note)}" for note in notes]
    lines += ["", FOOTER]
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------------- the run
@dataclass
class ProposeConfig:
    """What ``sieve train propose`` takes (see its --help)."""

    feedback: str
    models_dir: str
    model_name: str = "team"
    start_from: str = ""  # empty: MODELS_DIR/NAME when it holds a student, else the shipped default
    out: str = "sieve-retrain"
    run_dir: str = ""  # empty: OUT/run
    heldout_share: float = 0.2
    min_heldout: int = 20
    min_gain: float = 0.0
    tolerance: float = 0.02
    shipped_limit: int = 100
    rounds: int = 1
    exam_size: int = 40
    examples: int = 200
    max_steps: int | None = None
    epochs: float = 1.0
    threshold: str = "minor"  # the team's posting threshold (how a bare 👎 trains)
    grad_accum: int = 8
    seed: int = 0
    max_seconds: float | None = None


def start_model(config: ProposeConfig) -> str:
    """The student in service: as given, else the team's own folder when it holds one, else the shipped default."""
    if config.start_from:
        return config.start_from
    own = Path(config.models_dir) / config.model_name
    return str(own) if (own / "manifest.json").is_file() else "default"


def prepare(config: ProposeConfig) -> tuple[Path, Any, list[Example], int]:
    """Split the feedback; returns (training records file, held-out exam, labelled training items, n held out).
    Every refusal happens here, before anything heavy is loaded."""
    from training.curriculum import load_labeled
    from training.exam import Exam

    for name in OUTPUTS:  # a refused or failed run must not leave an earlier run's decision behind
        (Path(config.out) / name).unlink(missing_ok=True)
    if not 0.0 < config.heldout_share < 1.0:
        raise TrainingError(f"--heldout-share {config.heldout_share} is outside (0, 1)", hint="e.g. 0.2")
    held, train = split_feedback(Path(config.feedback), config.heldout_share)
    if not held and not train:
        raise TrainingError(f"{config.feedback} holds no feedback to train on",
                            hint="harvest 👍/👎 and `/sieve severity` replies first (`sieve feedback collect`)")
    run_dir = Path(config.run_dir or Path(config.out) / "run")
    held_file = write_records(held, run_dir / "team-heldout.jsonl")
    train_file = write_records(train, run_dir / "team-train.jsonl")
    exam_items = load_labeled(held_file)
    if len(exam_items) < config.min_heldout:
        raise TrainingError(f"only {len(exam_items)} held-out team feedback item(s) with a label, fewer than "
                            f"--min-heldout {config.min_heldout}",
                            hint="wait for more feedback, or lower --min-heldout / raise --heldout-share")
    labelled = load_labeled(train_file)
    if not labelled:
        raise TrainingError("no labelled team feedback is left to train on after the held-out split",
                            hint="wait for more feedback, or lower --heldout-share")
    exam = Exam(items=exam_items, name="team-heldout", kind="heldout", origin=str(config.feedback))
    return train_file, exam, labelled, len(held)


def propose(config: ProposeConfig, log=print) -> tuple[bool, list[Check]]:
    """Steps 1–5 of the module docstring. Returns (promoted, checks)."""
    from bot.models import resolve_model
    from training.finetune import FinetuneConfig
    from training.loop import LoopConfig, run_loop
    from training.registry import promote
    from training.teacher import DatasetTeacher, DatasetTeacherConfig

    train_file, exam, labelled, n_held = prepare(config)
    sets, notes = shipped_sets(config.shipped_limit)
    run_dir = Path(config.run_dir or Path(config.out) / "run")
    current = resolve_model(start_model(config))
    base = str((current.manifest.get("base") or {}).get("name") or "smollm2")
    rule = PromotionRule(min_gain=config.min_gain)
    staging = run_dir / "staging"
    loop = LoopConfig(run_dir=str(run_dir / "loop"), rounds=config.rounds, max_seconds=config.max_seconds,
                      exam_size=config.exam_size, examples_per_round=config.examples,
                      start_from=str(current.folder or start_model(config)), model_name=config.model_name,
                      models_root=str(staging), base=base, feedback=(str(train_file),), promotion=rule,
                      curriculum=CurriculumConfig(threshold=config.threshold),
                      finetune=FinetuneConfig(base=base, max_steps=config.max_steps, epochs=config.epochs,
                                              grad_accum=config.grad_accum, seed=config.seed,
                                              code_chars=current.code_chars))
    teacher = DatasetTeacher(labelled, DatasetTeacherConfig(seed=config.seed), exclude=exam.item_keys())
    result = run_loop(loop, teacher, exam, log=log)
    if not result.rounds:
        raise TrainingError(f"no candidate was trained ({result.stop_reason})", hint="see " + str(run_dir / "loop"))
    won = staging / config.model_name
    last_round = run_dir / "loop" / f"round-{len(result.rounds):02d}" / "candidate"
    folder = won if (won / "manifest.json").is_file() else last_round
    candidate = resolve_model(folder)
    all_sets = {TEAM: exam.items, **sets}
    figures = {name: (a, b) for (name, a), b in zip(examine(current, all_sets).items(),
                                                    examine(candidate, all_sets).values())}
    checks = gate(figures, rule, config.tolerance)
    promoted = all(c.passed for c in checks)
    last = result.rounds[-1]["finetune"]
    text = table(checks, name=config.model_name, current_id=current.model_id, candidate_id=candidate.model_id,
                 notes=notes, training={"feedback_train": len(labelled), "heldout": n_held,
                                        "steps": last["steps"], "seconds": last["seconds"]})
    if promoted:
        promote(folder, config.model_name, figures[TEAM][1], None, root=Path(config.models_dir))
    _write_outputs(Path(config.out), text, promoted, checks, current.model_id, candidate.model_id)
    return promoted, checks


def examine(model, sets: dict[str, list[Example]]) -> dict[str, dict[str, float]]:
    """Summary figures of one model on every set, through the serving rater (one load for all sets)."""
    from training.evaluate import evaluate
    from training.loop import llamacpp_rater

    rater = llamacpp_rater(model)
    try:
        return {name: evaluate(rater, items).summary() for name, items in sets.items()}
    finally:
        rater.close()


def _write_outputs(out: Path, text: str, promoted: bool, checks: Sequence[Check], current: str,
                   candidate: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text, encoding="utf-8")
    (out / "decision").write_text(("promote" if promoted else "keep") + "\n", encoding="utf-8")
    data = {"decision": "promote" if promoted else "keep", "current": current, "candidate": candidate,
            "checks": [{"set": c.name, "n": c.n, "current": c.current, "candidate": c.candidate,
                        "passed": c.passed, "rule": c.rule} for c in checks]}
    (out / "evaluation.json").write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------- command line
def add_parser(sub) -> None:
    p = sub.add_parser("propose", help="retrain on team feedback; examine candidate vs. in service; gate; table")
    p.add_argument("--feedback", required=True, help="`sieve feedback export` file (trusted feedback)")
    p.add_argument("--models-dir", required=True, help="the team's models folder (e.g. sieve-models); the "
                                                       "candidate is installed there as NAME when it passes")
    p.add_argument("--model-name", default="team", help="the team's student in that folder (default: team)")
    p.add_argument("--start-from", default="", help="student in service (default: MODELS_DIR/NAME when it holds "
                                                    "one, else the shipped default)")
    p.add_argument("--out", default="sieve-retrain", help="folder for table.md, evaluation.json and decision")
    p.add_argument("--run-dir", default="", help="training run folder (default: OUT/run)")
    p.add_argument("--heldout-share", type=float, default=0.2, help="share of findings held out (by hash)")
    p.add_argument("--min-heldout", type=int, default=20, help="refuse with fewer held-out labelled items")
    p.add_argument("--min-gain", type=float, default=0.0,
                   help="macro-F1 the candidate must gain on held-out team feedback (more than this)")
    p.add_argument("--tolerance", type=float, default=0.02,
                   help="macro-F1 the candidate may lose on each shipped held-out set")
    p.add_argument("--shipped-limit", type=int, default=100, help="items per shipped held-out set (0: all)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--exam-size", type=int, default=40)
    p.add_argument("--examples", type=int, default=200, help="items the teacher draws per round")
    p.add_argument("--max-steps", type=int, help="optimizer steps (overrides --epochs)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--threshold", choices=LABELS, default="minor",
                   help="the team's posting threshold: a bare 👎 trains as 'below it' (default: minor)")
    p.add_argument("--grad-accum", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seconds", type=float, help="wall-time budget: no new round starts after it")


def cmd_propose(args: argparse.Namespace) -> int:
    fields = ProposeConfig.__dataclass_fields__
    config = ProposeConfig(**{k: v for k, v in vars(args).items() if k in fields})
    promoted, checks = propose(config)
    failed = [c.name for c in checks if not c.passed]
    print(f"decision: {'promote' if promoted else 'keep'} "
          + (f"(candidate installed as {Path(config.models_dir) / config.model_name})" if promoted
             else f"(gate failed on: {', '.join(failed)})") + f"; table at {Path(config.out) / 'table.md'}")
    return 0

