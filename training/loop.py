"""The teacher–student loop, K rounds under a budget (rounds, teacher tokens, wall time).

Each round, top to bottom:

1. the teacher writes an exam;
2. the student takes it — through the serving rater on the current GGUF (base + adapter), the same code
   and prompt the bot reviews with;
3. the teacher grades it: proficiency per level/area, feedback, weak areas;
4. a curriculum is built: teacher-written items aimed at the weak areas (+ the teacher's own proposals),
   maintainers' feedback, the previous curriculum; weak areas weighted up; held-out items never included;
5. LoRA fine-tune on it, export the adapter to GGUF;
6. the candidate takes the held-out exam through the same rater;
7. it replaces ``<models folder>/<name>`` only if it beats the current model there (the folder the user names,
   or a source checkout's ``models/``; never an installed Sieve's).

Every round appends one JSON line to ``<run_dir>/log.jsonl``. A spent teacher budget ends the run
cleanly after keeping what the teacher produced.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bot.models import ModelInfo, model_roots, resolve_model
from training.curriculum import CurriculumConfig, build_curriculum
from training.evaluate import Report, evaluate
from training.exam import Exam, assert_no_leak
from training.examples import Example, data_hash, load_jsonl
from training.lexical import UPDATE_L2
from training.registry import PromotionRule, models_root, promote, write_manifest
from training.teacher import Evaluation, Teacher, TeacherBudgetSpent

RaterFactory = Callable[[ModelInfo], Any]
#: what a warm-started candidate takes from its parent's manifest: the LoRA's shape must match the adapter it loads
LORA_SHAPE = ("rank", "alpha", "targets", "freeze_layers")


@dataclass
class LoopConfig:
    """Budget and sizes of a teacher–student run."""

    run_dir: str = "runs/loop"  # where exams, curricula, adapters and log.jsonl go
    rounds: int = 3  # at most this many rounds
    max_seconds: float | None = None  # wall-time budget; no new round starts after it
    exam_size: int = 40  # items per practice exam
    examples_per_round: int = 200  # teacher-written training items per round
    start_from: str = "default"  # the current student: a name, a folder, or "base" (the default's base)
    model_name: str = "default"  # the registry name a better candidate is promoted to
    models_root: str = ""  # models folder promoted into (default: $SIEVE_MODELS_DIR, else a checkout's models/)
    base: str = "smollm2"  # base GGUF the adapter is trained for
    feedback: tuple[str, ...] = ()  # `sieve feedback export` files folded into the first curriculum
    #: earlier runs' ``curriculum.jsonl`` files, carried into the first round as "previous" items (decayed by
    #: ``curriculum.previous_weight``), so a loop run on new feedback keeps what earlier runs taught
    previous: tuple[str, ...] = ()
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    promotion: PromotionRule = field(default_factory=PromotionRule)
    finetune: Any = None  # training.finetune.FinetuneConfig (built with defaults when None)
    #: weight of a lexical prior fitted on each candidate's curriculum (bot.rater.lexical); None: the current
    #: model's own weight (0 when it has no prior), so a candidate is served the way its parent is
    lexical_weight: float | None = None
    #: train each candidate on from its parent's adapter (its LoRA shape taken from the parent's manifest)
    #: instead of a fresh LoRA, so a round adds to what the model in service knows rather than relearning it
    #: from the base; a parent without an adapter (a bare base) starts fresh either way
    warm_start: bool = True
    #: a warm-started candidate's prior is its parent's, updated on the curriculum with this L2 pull toward the
    #: parent's weights (training.lexical.update_prior); a fresh one is fitted on the curriculum alone
    prior_l2: float = UPDATE_L2
    #: a warm-started prior also learns the feedback's folders (training.lexical.update_prior ``paths``)
    prior_paths: bool = False


@dataclass
class LoopResult:
    rounds: list[dict[str, Any]]
    promoted: list[int]  # rounds whose candidate was promoted
    stop_reason: str
    current: dict[str, Any]  # held-out figures of the model in the registry at the end


def llamacpp_rater(model: ModelInfo) -> Any:
    """The serving rater on a model's base + adapter GGUF (what the bot itself uses)."""
    from bot.rater.llamacpp import LlamaCppRater

    return LlamaCppRater(**model.rater_options())


def run_loop(config: LoopConfig, teacher: Teacher, heldout: Exam, *, rater_factory: RaterFactory = llamacpp_rater,
             log: Callable[[str], None] = print) -> LoopResult:
    """Run up to ``config.rounds`` rounds; see the module docstring for the steps."""
    began = time.monotonic()
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    heldout.save(run_dir / "heldout.json")
    (run_dir / "config.json").write_text(json.dumps(config_dict(config), indent=1, default=str), encoding="utf-8")
    root = models_root(config.models_root or None)
    current = _start_model(config.start_from, root, config.base)
    rater = rater_factory(current)
    current_score = evaluate(rater, heldout.items).summary()
    log(f"round 0: {current.model_id} held-out {_fmt(current_score)}")
    _append(run_dir, {"round": 0, "model": current.model_id, "heldout": current_score})
    feedback = _load_feedback(config)
    previous = _load_previous(config)
    rounds: list[dict[str, Any]] = []
    promoted: list[int] = []
    stop = f"{config.rounds} rounds done"
    for k in range(1, config.rounds + 1):
        if config.max_seconds is not None and time.monotonic() - began > config.max_seconds:
            stop = f"wall-time budget of {config.max_seconds:.0f} s spent"
            break
        round_dir = run_dir / f"round-{k:02d}"
        teaching, stop_now = _teach(teacher, rater, config, round_dir)
        if teaching is None:
            stop = stop_now or "teacher produced nothing"
            break
        evaluation, written = teaching
        curriculum = build_curriculum(teacher=written + evaluation.examples, feedback=feedback if k == 1 else (),
                                      previous=previous, weak_areas=evaluation.weak_areas, heldout=heldout,
                                      config=config.curriculum)
        curriculum.save(round_dir)
        candidate, trained = _train_candidate(curriculum.examples, config, round_dir, heldout, current)
        candidate_rater = rater_factory(candidate)
        report = evaluate(candidate_rater, heldout.items)
        won = promote(round_dir / "candidate", config.model_name, report.summary(), current_score,
                      root=root, rule=config.promotion)
        entry = _entry(k, evaluation, curriculum.stats, trained, report, current_score, won, teacher, began)
        rounds.append(entry)
        _append(run_dir, entry)
        log(f"round {k}: exam {_fmt(entry['exam'])} | held-out {_fmt(entry['heldout'])} vs current "
            f"{_fmt(current_score)} → {'promoted' if won else 'kept current'}")
        if won:
            promoted.append(k)
            _close(rater)
            rater, current, current_score = candidate_rater, resolve_model(root / config.model_name), report.summary()
        else:
            _close(candidate_rater)
        previous = curriculum.examples
        if stop_now:
            stop = stop_now
            break
    _close(rater)
    return LoopResult(rounds=rounds, promoted=promoted, stop_reason=stop, current=current_score)


def _teach(teacher: Teacher, rater: Any, config: LoopConfig,
           round_dir: Path) -> tuple[tuple[Evaluation, list[Example]] | None, str]:
    """Steps 1–3 and the teacher's part of 4. Returns ((evaluation, written), stop reason or "")."""
    try:
        exam = Exam(items=teacher.write_exam(config.exam_size), name=round_dir.name, origin=teacher.name)
    except TeacherBudgetSpent as exc:
        if not exc.partial:
            return None, str(exc)
        exam = Exam(items=list(exc.partial), name=round_dir.name, origin=teacher.name)
    exam.save(round_dir / "exam.json")
    answers = rater.rate_texts([(e.code, e.review) for e in exam.items])
    try:
        evaluation = teacher.grade(exam.items, answers)
    except TeacherBudgetSpent as exc:
        return ((exc.partial, []), str(exc)) if isinstance(exc.partial, Evaluation) else (None, str(exc))
    try:
        written = teacher.write_examples(evaluation.weak_areas, config.examples_per_round)
    except TeacherBudgetSpent as exc:
        return (evaluation, list(exc.partial or [])), str(exc)
    return (evaluation, written), ""


def _train_candidate(examples: list[Example], config: LoopConfig, round_dir: Path, heldout: Exam,
                     parent: ModelInfo) -> tuple[ModelInfo, Any]:
    """Step 5: fine-tune, export, write the candidate's manifest."""
    from training.export import base_gguf_path, export_adapter
    from training.finetune import FinetuneConfig, finetune

    assert_no_leak(examples, heldout)
    ft_config = config.finetune or FinetuneConfig(base=config.base)
    if config.warm_start and parent.adapter_path is not None:  # the adapter's shape is the parent's
        recorded = parent.manifest.get("hyperparameters") or {}
        shape = {k: tuple(v) if k == "targets" else v for k, v in recorded.items() if k in LORA_SHAPE}
        ft_config = replace(ft_config, **shape, init_adapter=str(parent.adapter_path))
    result = finetune(examples, ft_config, round_dir / "finetune", progress=False)
    folder = round_dir / "candidate"
    folder.mkdir(parents=True, exist_ok=True)
    export_adapter(result.peft_dir, folder / "adapter.gguf", base=ft_config.base)
    write_manifest(folder, name=f"{config.model_name}-{round_dir.name}", base=ft_config.base,
                   base_path=base_gguf_path(ft_config.base), adapter_file="adapter.gguf",
                   data_hash=data_hash(examples), hyperparameters=ft_config.to_json(),
                   parent=parent.model_id, command=shlex.join(sys.argv),
                   template=ft_config.prompt_template(), code_chars=ft_config.code_chars)
    prior = candidate_prior(examples, folder, config, parent)
    if prior:
        path = folder / "manifest.json"
        path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), **prior}, indent=2,
                                   ensure_ascii=False) + "\n", encoding="utf-8")
    return resolve_model(folder), result


def candidate_prior(examples: list[Example], folder: Path, config: LoopConfig, parent: ModelInfo) -> dict[str, Any]:
    """``{"lexical": ...}`` for the candidate's manifest, or ``{}``: warm-started, the parent's prior updated on the
    curriculum (as the adapter trains on from the parent's); fresh, a prior fitted on the curriculum alone."""
    from bot.prompt import V3
    from training.lexical import SCOPE, export_prior, fit_prior, in_scope, labelled, manifest_entry, update_prior

    weight, origin = config.lexical_weight, "set for the loop"
    if weight is None:
        weight, origin = (parent.lexical[1] if parent.lexical else 0.0), "kept from the model it would replace"
    if weight <= 0:
        return {}
    usable = {e.label for e in labelled(examples)}
    if len(usable) < 4:  # a prior that cannot name a level would veto it in the product
        print(f"    no lexical prior for this candidate: its curriculum has labels {sorted(usable)}, not all four")
        return {}
    # a team's choice of scope travels on; a student that reads no origin (prompt v3) gets a prior for every finding
    scope = parent.lexical_scope if parent.lexical else ("all" if parent.prompt_version == V3 else SCOPE)
    if config.warm_start and parent.lexical and any(in_scope(e, scope) for e in examples):
        path = update_prior(parent.lexical[0], examples, folder / "lexical.json", scope, config.prior_l2,
                            paths=config.prior_paths)
        fitted = (f"the parent's prior updated on this candidate's curriculum ({len(examples)} items, "
                  f"L2 {config.prior_l2:g} toward the parent)")
    else:
        path = export_prior(fit_prior(examples), folder / "lexical.json")
        fitted = f"this candidate's curriculum ({len(examples)} items)"
    return {"lexical": manifest_entry(path, weight, f"{fitted}; weight {origin}", scope=scope)}


def _start_model(name: str, root: Path, base: str) -> ModelInfo:
    """The current student (yours in ``root``, else the shipped one of that name); a name neither has yet
    starts from the bare base model."""
    known = any((folder / name / "manifest.json").is_file() for folder in model_roots(root))
    if name != "base" and not known and not Path(name).exists():
        return resolve_model(base, root)  # a packaged base by its key (smollm2, gemma3-270m)
    return resolve_model(name, root)


def _load_feedback(config: LoopConfig) -> list[Example]:
    from training.curriculum import balance_feedback, load_feedback

    examples = [e for path in config.feedback for e in load_feedback(path, config.curriculum)]
    if config.curriculum.balance:
        print(f"    feedback balanced: {balance_feedback(examples)}")
    return examples


def _load_previous(config: LoopConfig) -> list[Example]:
    return [e for path in config.previous for e in load_jsonl(path)]


def _entry(k: int, evaluation: Evaluation, stats: dict[str, Any], trained: Any, report: Report,
           current: dict[str, Any], won: bool, teacher: Teacher, began: float) -> dict[str, Any]:
    usage = teacher.round_usage() if hasattr(teacher, "round_usage") else {}
    return {"round": k, "exam": evaluation.report.summary() if evaluation.report else {},
            "proficiency": evaluation.proficiency, "weak_areas": evaluation.weak_areas,
            "feedback": evaluation.feedback, "curriculum": stats,
            "finetune": {"steps": trained.steps, "seconds": round(trained.seconds, 1),
                         "final_loss": round(trained.final_loss, 4)},
            "heldout": report.summary(), "current": current, "promoted": won, "teacher_usage": usage,
            "elapsed_s": round(time.monotonic() - began, 1)}


def _append(run_dir: Path, entry: dict[str, Any]) -> None:
    with (run_dir / "log.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")


def _fmt(summary: dict[str, Any]) -> str:
    if not summary:
        return "-"
    return f"acc {summary.get('accuracy', 0):.3f} macro-F1 {summary.get('macro_f1', 0):.3f}"


def _close(rater: Any) -> None:
    if hasattr(rater, "close"):
        rater.close()


def config_dict(config: LoopConfig) -> dict[str, Any]:
    """The loop configuration as JSON-ready data (for the run folder)."""
    data = asdict(config)
    if config.finetune is not None and hasattr(config.finetune, "to_json"):
        data["finetune"] = config.finetune.to_json()
    return data
