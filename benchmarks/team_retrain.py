"""The team benchmark's retrain arm (``python -m benchmarks.team --retrain``): one training round per team.

For each team: its reaction-half feedback goes through the real path — ``sieve feedback import`` rows into a
SQLite store, ``sieve feedback export`` out of it, :func:`training.curriculum.load_feedback` into examples — and
ONE short LoRA round trains on it from the default student, as ``sieve train loop`` warm-starts a round (the
default's adapter and LoRA shape, :class:`training.finetune.FinetuneConfig`'s defaults otherwise: lr 2e-4, 8 items
per step), for ``--steps`` optimizer steps, and, as the loop does, the default's lexical prior is updated on the
round's items (``--prior-l2`` toward its weights; training.lexical.update_prior) at its weight and scope. Replay: ``--replay`` items drawn from the
default's own training plan (:func:`training.mixed.plan`; review data and vendor-labelled rules, never the exam,
the held-out rules or dev) train beside the feedback, so a round about a few dozen ruff rules does not make the
student forget the rest. The adapter is exported to GGUF next to the default's manifest and the new prior, and the
held-out half is rated again by the serving rater, memory off ("after retrain") and on ("after both").

The export carries each finding's origin (tool, rule and the tool's level, as the student read it since prompt
v4): the import rows name the level, the store keeps it, and the arm checks every exported row has it.

Generalisation: held-out findings of rules nobody reacted to, that the team turns off by the same name pattern
(the rule's letters: ``D``, ``PLR``, ``S``) and the same kind of entry (``ignore``, or the same ``per-file-ignores``
pattern) as an unwanted rule that got a 👎 — the other ``D`` rules, the other ``S`` rules in ``tests/`` — "move
toward the team" when the retrained student gives them a P(≥ minor) at least 10% lower than the default did (and
"away" when 10% higher). Also the held-out exam and dev sets (review data; rated as served, with
the default's lexical prior at its weight), so a round that wins on the team by forgetting the task shows it.

Which half moved it (``--decompose``): the served rating is a product of the student and the lexical prior, and a
round changes both. The held-out half is rated twice more — the round's adapter with the default's prior
("adapter alone") and the default's adapter with the round's prior ("prior alone") — with the same groups and
generalisation figures as the round itself.

Everything is cached under ``--runs`` (training data, adapter, ratings), so a rerun only re-reads.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import sys
import time
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

from benchmarks import team_data
from benchmarks.team import CONFIG, Item, RatingCache, _share, reactions, remember
from bot import memory
from bot.plan import passes

ARMS = ("before", "memory", "retrain", "both")
#: a relative change of P(≥ minor) that counts as moving (the default gives many unwanted findings P < 0.01, so an
#: absolute step would never count; a relative one smaller than this is within rounding of a re-rating)
MOVE = 0.10
#: the learning rate of a warm-started round (FinetuneConfig's default, what `sieve train loop` uses)
DEFAULT_LR = 2e-4
GROUPS = ("unwanted", "unwanted:reacted", "unwanted:unreacted", "wanted", "wanted:reacted", "wanted:unreacted",
          "security")


def default_folder() -> Path:
    return Path(__file__).resolve().parents[1] / "models" / "default"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- data


def feedback_examples(team: team_data.Team, items: list[Item], rows: list[dict], folder: Path,
                      balance: bool = False) -> list:
    """The team's reactions → store → ``sieve feedback export`` → training examples, origin put back."""
    from bot.feedback_app import export
    from bot.memory_app import import_file
    from bot.store import open_store
    from training.curriculum import balance_feedback, load_feedback

    path = folder / "reactions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = open_store(folder / "feedback.db")
    try:
        written, bad = import_file(store, str(path))
        if bad or written != len(rows):
            raise RuntimeError(f"import kept {written} of {len(rows)} rows: {bad[:3]}")
        export(store, folder / "feedback.jsonl")
    finally:
        store.close()
    out = load_feedback(folder / "feedback.jsonl")
    if balance:
        log(f"{team.name}: feedback balanced {balance_feedback(out)}")
    origin = {it.finding.review: it.finding.origin() for it in items}
    wrong = [e.review for e in out if e.meta.get("origin") != origin.get(e.review)]
    if wrong:  # the export must carry the origin the student read when it rated the finding
        raise RuntimeError(f"{len(wrong)} exported rows lack their finding's origin, e.g. {wrong[0][:60]!r}")
    return out


def replay_examples(n: int, seed: int, cache: Path) -> list:
    """``n`` items of the default student's own training plan (cached as JSONL)."""
    from training.examples import dump_jsonl, load_jsonl

    path = cache / f"replay-{n}-{seed}.jsonl"
    if not path.is_file():
        sources = _sources(seed)
        from training.mixed import plan

        items = plan(sources["train_reviews"], sources["train_rules"], seed=seed)
        dump_jsonl(random.Random(seed).sample(items, min(n, len(items))), path)
    return load_jsonl(path)


def _sources(seed: int) -> dict:
    from bot.reviewers.ruff import find_ruff
    from training.mixed import load_sources

    return load_sources(seed=0, ruff_executable=find_ruff())  # seed 0: the default's exam, never trained on


# ----------------------------------------------------------------------------- one round


def train_round(examples: list, args, folder: Path) -> Path:
    """One LoRA round from the default student; returns the model folder (adapter GGUF + the default's manifest
    and lexical prior). Skipped when the folder already holds it."""
    from training.export import export_adapter, sha256_file
    from training.finetune import FinetuneConfig, finetune

    model_dir = folder / "model"
    if (model_dir / "manifest.json").is_file():
        return model_dir
    default = default_folder()
    manifest = json.loads((default / "manifest.json").read_text())
    from training.loop import LORA_SHAPE

    recorded = manifest["hyperparameters"]  # as `sieve train loop` warm-starts: the parent's shape, the defaults
    shape = {k: tuple(v) if k == "targets" else v for k, v in recorded.items() if k in LORA_SHAPE}
    config = FinetuneConfig(base=recorded["base"], code_chars=recorded["code_chars"], **shape,
                            init_adapter=str(default / manifest["adapter"]["file"]), max_steps=args.steps, lr=args.lr,
                            checkpoint_every=4, seed=args.seed, preference=args.preference, preference_beta=args.beta)
    resume = (folder / "run" / "checkpoint" / "state.json").is_file()
    result = finetune(examples, config, folder / "run", resume=resume)
    tmp = folder / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    export_adapter(result.peft_dir, tmp / "adapter.gguf", base=config.base)
    from bot.models import resolve_model
    from training.loop import LoopConfig, candidate_prior

    # as `sieve train loop` does: a lexical prior fitted on the round's items, at the parent's weight and scope
    # (the default's own prior, kept, would hold every tool finding where the default rated it)
    manifest.pop("lexical", None)
    manifest.update(candidate_prior(examples, tmp, LoopConfig(prior_l2=args.prior_l2,
                                                              prior_paths=getattr(args, "path_prior", False)),
                                    resolve_model(str(default))))
    adapter = tmp / "adapter.gguf"
    manifest.update(name=f"retrain-{folder.name}", parent=f"default@{manifest['adapter']['sha256'][:12]}",
                    adapter={"file": "adapter.gguf", "sha256": sha256_file(adapter), "bytes": adapter.stat().st_size},
                    hyperparameters=config.to_json(), command="python -m benchmarks.team " + " ".join(sys.argv[1:]),
                    training={"steps": result.steps, "seconds": round(result.seconds, 1),
                              "seconds_per_step": round(result.seconds_per_step, 2), "items": len(examples),
                              "final_loss": result.final_loss})
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    tmp.replace(model_dir)
    return model_dir


def halves(model_dir: Path, default: Path) -> dict[str, Path]:
    """Model folders beside ``model_dir``: its adapter with ``default``'s prior, and ``default``'s adapter with its
    prior (made once; the manifest of the folder the adapter comes from, the prior's entry of the other)."""
    out = {}
    for arm, adapter_from, prior_from in (("adapter alone", model_dir, default), ("prior alone", default, model_dir)):
        folder = model_dir.parent / ("model-" + arm.replace(" ", "-"))
        if not (folder / "manifest.json").is_file():
            tmp = folder.with_name(folder.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            manifest = json.loads((adapter_from / "manifest.json").read_text())
            prior = json.loads((prior_from / "manifest.json").read_text())["lexical"]
            shutil.copy(adapter_from / manifest["adapter"]["file"], tmp / manifest["adapter"]["file"])
            shutil.copy(prior_from / prior["file"], tmp / prior["file"])
            manifest.update(lexical=prior, name=f"{manifest['name']}-{folder.name}")
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
            tmp.replace(folder)
        out[arm] = folder
    return out


def rate_folder(model_dir: Path, findings: list, cache_path: Path) -> list:
    from bot.app import make_rater
    from bot.config import Config
    rater = make_rater(replace(Config(), model=str(model_dir)))
    prior = getattr(rater, "lexical", None)
    by_path = bool(prior and prior.reads_paths)
    try:
        return RatingCache(cache_path, rater.model_id, by_path).rate(rater, findings, log=log)
    finally:
        getattr(rater, "close", lambda: None)()


def general_judgement(model_dir: Path, folder: Path, seed: int) -> dict:
    """Accuracy / macro-F1 / concordance on the held-out exam and dev, as served (student + lexical prior)."""
    from training.heldout import held_out_sets, model_rater, served
    from training.metrics import severity_metrics

    path = folder / "general-scoped.json"
    if path.is_file():
        return json.loads(path.read_text())
    sets = held_out_sets(_sources(seed))
    info, rater, rate, prior = model_rater(model_dir)
    out = {}
    try:
        for name in ("exam", "dev"):
            items = sets[name]
            probs = rate(items)
            if prior is not None:  # the prior reads what it reads when served: its manifest's scope
                probs = served(items, probs, prior[0], prior[1], info.prompt_version, info.lexical_scope)
            m = severity_metrics(items, probs)
            out[name] = {k: m[k] for k in ("n", "accuracy", "macro_f1", "concordance")}
    finally:
        rater.close()
    path.write_text(json.dumps(out))
    return out


# ----------------------------------------------------------------------------- measures


def drop_entries(team: team_data.Team, rule: str, path: str) -> set[tuple[str, str]]:
    """How the team's settings turn this finding off, by name pattern: ("*", letters) when an ``ignore`` entry
    names it and (pattern, letters) when a ``per-file-ignores`` entry for its path does, where ``letters`` is the
    rule's name prefix (``D`` for D401, ``PLR`` for PLR2004, ``S`` for S101)."""
    letters = re.match(r"[A-Z]*", rule).group()
    out = {("*", letters) for code in team.ignore if rule.startswith(code)}
    for pattern, name_only, codes in team.per_file:
        if team_data._path_matches(pattern, name_only, path) and any(rule.startswith(c) for c in codes):
            out.add((pattern.pattern, letters))
    return out


def generalisation(team: team_data.Team, held: list[Item], after: list, rows: list[dict]) -> dict:
    """Never-reacted held-out findings the team drops by the same name pattern and entry kind as a 👎-ed rule:
    how many moved down. The control: never-reacted findings the team *wants* whose rule has the same letters as
    a 👎-ed one (the other ``D`` rules it keeps) — a round that lowers everything moves these down too, one that
    learned the team's judgement moves the first group and not the second."""
    from bot.severity import Severity, mass_at_least

    reacted = {r["rule"] for r in rows}
    downed = set()
    for r in rows:
        if r["reaction"] == "-1" and team.label(r["rule"], r["path"]) == "unwanted":
            downed |= drop_entries(team, r["rule"], r["path"])
    n = moved = away = posted_before = posted_after = 0
    rules = set()
    letters = {x for _, x in downed}
    control = Counter()
    by_entry = {kind: Counter(findings=0, moved_toward_team=0) for kind in ("ignore", "per_file")}
    shifts: dict[str, list[float]] = {"dropped": [], "control": []}
    for it, new in zip(held, after):
        if (it.rule not in reacted and team.label(it.rule, it.finding.anchor.path) == "wanted"
                and re.match(r"[A-Z]*", it.rule).group() in letters):
            before_mass = mass_at_least(it.rating.probabilities, Severity.MINOR)
            after_mass = mass_at_least(new.probabilities, Severity.MINOR)
            control["findings"] += 1
            control["moved_down"] += after_mass < before_mass * (1 - MOVE)
            shifts["control"].append(_logit(after_mass) - _logit(before_mass))
            control["posted_before"] += it.posted
            control["posted_after"] += passes(new, CONFIG)[0]
        if it.rule in reacted or team.label(it.rule, it.finding.anchor.path) != "unwanted":
            continue
        matched = drop_entries(team, it.rule, it.finding.anchor.path) & downed
        if not matched:
            continue
        n += 1
        # "ignore": dropped by a rule-wide entry like a 👎-ed rule's, which only the rule's name tells apart from
        # the control; "per_file": by a folder entry, where the path could tell them apart
        entry = by_entry["per_file" if any(pattern != "*" for pattern, _ in matched) else "ignore"]
        entry["findings"] += 1
        rules.add(it.rule)
        before_mass = mass_at_least(it.rating.probabilities, Severity.MINOR)
        after_mass = mass_at_least(new.probabilities, Severity.MINOR)
        moved += after_mass < before_mass * (1 - MOVE)
        entry["moved_toward_team"] += after_mass < before_mass * (1 - MOVE)
        away += after_mass > before_mass * (1 + MOVE)
        shifts["dropped"].append(_logit(after_mass) - _logit(before_mass))
        posted_before += it.posted
        posted_after += passes(new, CONFIG)[0]
    return {"findings": n, "rules": len(rules), "moved_toward_team": moved, "share": _share(moved, n),
            "moved_away": away,
            "posted_before": posted_before, "posted_after": posted_after, "goal_ge_50pct": None if not n else
            moved / n >= 0.5,
            "control": {**control, "share": _share(control["moved_down"], control["findings"])},
            "by_entry": {kind: dict(c) for kind, c in by_entry.items()},
            # mean change of log-odds P(≥ minor): a round that learned the team's pattern lowers the first
            # group more than the second; one that lowered everything lowers both alike
            "mean_logodds_shift": {k: round(sum(v) / len(v), 3) if v else None for k, v in shifts.items()}}


def _logit(p: float) -> float:
    import math

    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def count(team: team_data.Team, held: list[Item], arms: dict[str, list], reacted: set[str]) -> dict:
    """Per group: findings, posted in each arm, and the mean P(≥ minor) in each arm (``mass_ARM``)."""
    from bot.severity import Severity, mass_at_least

    rows: dict[str, Counter] = defaultdict(Counter)
    for i, it in enumerate(held):
        label = team.label(it.rule, it.finding.anchor.path)
        groups = [label, f"{label}:{'reacted' if it.rule in reacted else 'unreacted'}"]
        groups += ["security"] if memory.is_security(it.finding) else []
        for g in groups:
            rows[g]["n"] += 1
            for arm, ratings in arms.items():
                rows[g][arm] += passes(ratings[i], CONFIG)[0]
                rows[g][f"mass_{arm}"] += mass_at_least(ratings[i].probabilities, Severity.MINOR)
    return {g: {k: round(v / c["n"], 4) if k.startswith("mass_") else v for k, v in c.items()}
            for g, c in sorted(rows.items()) if g in GROUPS}


def retrain_team(team: team_data.Team, items: list[Item], args, tmp: Path) -> dict:
    """Before / next review (memory) / after one retrain round / after both, on the team's held-out half."""
    started = time.perf_counter()
    lr = (("" if args.lr == DEFAULT_LR else f"-lr{args.lr:g}") + f"-l2{args.prior_l2:g}" + ("-bal" if args.balance else "")
          + ("-paths" if getattr(args, "path_prior", False) else ""))
    folder = Path(args.runs) / (f"{team.name}-{args.preference}-b{args.beta:g}-s{args.steps}-r{args.replay}{lr}"
                                f"-{args.seed}")
    folder.mkdir(parents=True, exist_ok=True)
    rows = reactions(team, items, args.seed, args.noise)
    examples = feedback_examples(team, items, rows, folder, args.balance)
    kinds = Counter("👎" if e.meta.get("vote", 0) < 0 and not e.meta.get("correction") else
                    "correction" if e.meta.get("correction") else "👍" for e in examples)
    train = examples + replay_examples(args.replay, args.seed, Path(args.runs))
    log(f"{team.name}: {len(examples)} feedback examples ({dict(kinds)}) + {args.replay} replay, "
        f"{args.steps} steps at lr {args.lr:g}, preference {args.preference}")
    model_dir = train_round(train, args, folder)
    held = [it for it in items if it.half == "heldout"  # what the measures count: no-opinion findings are not rated
            and (team.label(it.rule, it.finding.anchor.path) != "none" or memory.is_security(it.finding))]
    retrained = rate_folder(model_dir, [it.finding for it in held], Path(args.runs) / f"ratings-{team.name}.json")
    mem = remember(rows, f"teams/{team.name}", tmp, [it for it in items if it.half == "react" and it.posted])
    findings = [it.finding for it in held]
    arms = {"before": [it.rating for it in held], "memory": memory.adjust(findings, [it.rating for it in held], mem),
            "retrain": retrained, "both": memory.adjust(findings, retrained, mem)}
    manifest = json.loads((model_dir / "manifest.json").read_text())
    reacted = {r["rule"] for r in rows}
    decomposition = {}
    if args.decompose:
        for arm, half in halves(model_dir, default_folder()).items():
            ratings = rate_folder(half, findings, Path(args.runs) / f"ratings-{team.name}.json")
            decomposition[arm] = {"heldout": count(team, held, {"before": arms["before"], "after": ratings}, reacted),
                                  "generalisation": generalisation(team, held, ratings, rows)}
    return {"team": team.name, "preference": args.preference, "beta": args.beta, "steps": args.steps, "lr": args.lr, "prior_l2": args.prior_l2, "balance": args.balance,
            "replay": args.replay, "seed": args.seed, "feedback_examples": dict(kinds),
            "training": manifest.get("training"), "model": str(model_dir),
            "heldout": count(team, held, arms, reacted),
            "generalisation": generalisation(team, held, retrained, rows),
            "general": general_judgement(model_dir, folder, args.seed), "decomposition": decomposition,
            "seconds": round(time.perf_counter() - started, 1)}


def to_text(results: list[dict]) -> str:
    lines = [("retrain arm — held-out half, findings posted: before → next review (memory) → after one retrain "
              "round (memory off) → after both")]
    for r in results:
        t = r["training"] or {}
        lines.append(f"\n{r['team']} · {r['preference']} (β {r['beta']:g}), {r['steps']} steps, {r['replay']} replay, "
                     f"seed {r['seed']}: feedback {r['feedback_examples']}, trained in {t.get('seconds')} s")
        for g, c in r["heldout"].items():
            lines.append(f"  {g:<20} " + " → ".join(f"{c[a]:>4}" for a in ARMS) + f"  of {c['n']:<5} mean P(≥ minor) "
                         + " → ".join(f"{c['mass_' + a]:.3f}" for a in ARMS))
        g = r["generalisation"]
        share = "n/a" if g["share"] is None else f"{g['share']:.1%}"
        lines.append(f"  never-reacted rules the team drops like a 👎-ed one: {g['moved_toward_team']} of "
                     f"{g['findings']} findings ({g['rules']} rules) moved toward the team ({share}), "
                     f"{g['moved_away']} away; posted {g['posted_before']} → {g['posted_after']}")
        c = g.get("control") or {}
        if c.get("findings"):
            lines.append(f"  control — never-reacted wanted findings with a 👎-ed rule's letters: {c['moved_down']} of "
                         f"{c['findings']} moved down ({c['share']:.1%}); posted {c['posted_before']} → "
                         f"{c['posted_after']}; mean log-odds shift, dropped-alike vs control: "
                         f"{g['mean_logodds_shift']['dropped']} vs {g['mean_logodds_shift']['control']}")
        lines.append("  held-out exam / dev (accuracy, macro-F1): " + ", ".join(
            f"{k} {v['accuracy']:.3f} / {v['macro_f1']:.3f}" for k, v in r["general"].items()))
        for arm, d in (r.get("decomposition") or {}).items():
            posted = ", ".join(f"{g} {c['before']} → {c['after']}" for g, c in d["heldout"].items()
                               if g in ("unwanted:reacted", "unwanted:unreacted", "wanted", "security"))
            g, shift = d["generalisation"], d["generalisation"]["mean_logodds_shift"]
            lines.append(f"  {arm}: posted {posted}; dropped-alike moved {g['moved_toward_team']} of {g['findings']}, "
                         f"control {g['control'].get('moved_down', 0)} of {g['control'].get('findings', 0)}; "
                         f"log-odds shift {shift['dropped']} vs {shift['control']}")
    return "\n".join(lines)
