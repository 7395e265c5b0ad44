"""Explanations measured: overlap with the vendor's rationale, checks, consistency, a pairwise judge, cost.

    .venv/bin/python -m benchmarks.explanations [--model default] [--n 150] [--samples 20] [--seed 0]
        [--judge-base-url URL --judge-model NAME --judge-api-key-env VAR --judge-n 40]
        [--cost --demo-runs 3 | --cost-only] [--no-repeat-ablation] [--out result.json] [--manifest DIR]

Systems, all on the findings of rules held out of the explainer's training (``training.explain_data.split``;
one finding per rule, ``--n`` rules drawn with ``--seed``), each told the vendor's rating — or, with ``--rating
student``, the rating the severity student itself gives the finding (as serving does: the explainer is told the
severity the review posts, and consistency is then measured against that rating):

* ``student`` — the model's explainer adapter (``models/<model>/explain/``), batched as served;
* ``base`` — the same base weights without the adapter, same prompt (what training adds);
* ``template`` — the rule-template baseline ("ruff rates S608 as a security rule");
* ``student_repeats`` (with ``--no-repeat-ablation``) — the student decoded without the no-repeat-trigram rule
  (:data:`bot.explainer.NO_REPEAT_NGRAM`): its checks and repetition only, to show what the rule changes;
* ``vendor`` — the vendor's own first sentence on why the rule matters (for the judge; it is the reference of
  the overlap scores, so it has none).

Offline (``training.explain_eval``): ROUGE-1 F and ROUGE-L F against the vendor's rationale, on the raw first
sentence (``raw``) and on what serving shows after the checks and the student's re-reading of the sentence
(``shown``: a dropped sentence scores 0, :func:`training.explain_eval.served`); check
failure rates; grounding and repetition over non-empty sentences; consistency (no contradicting words, and the
severity student re-rating the sentence alone at most one level away). ``--samples`` findings, drawn with the
seed, are printed verbatim with the student's sentence. With ``--judge-base-url``: the preference differential
of the student over each other system (``training.explain_judge``). With ``--cost``: explanation seconds per
posted finding on the demo's findings (batched and one at a time, p50/p95 over repeats) and the demo review's
wall time with ``--explain`` against without, alternated in one run. ``--manifest DIR`` writes the figures into
``DIR/manifest.json`` (the explainer's).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bot import explain
from bot.errors import SieveError

ROOT = Path(__file__).resolve().parents[1]


def held_out_items(n: int, seed: int) -> list:
    from bot.reviewers.origin import ruff_catalogue
    from training import explain_data
    from training.explain_eval import pick

    rules = ruff_catalogue(str(Path(sys.executable).with_name("ruff"))) or ruff_catalogue()
    _, test = explain_data.split(explain_data.build(rules.values()))
    return pick(test, n, seed)


def student_rated(items, rater) -> list:
    """The items re-labelled with the severity the student gives each finding as served (its code, text and
    origin): what the explainer is told at serving, and what its sentence must then be consistent with."""
    from dataclasses import replace

    ratings = rater.rate_texts([(item.code, item.review, item.origin) for item in items])
    return [replace(item, severity=rating.severity) for item, rating in zip(items, ratings)]


def load(model: str):
    """(rater, student explainer, base explainer) on one loaded model."""
    from bot.explainer import Explainer, explainer_adapter, explainer_folder
    from bot.models import resolve_model
    from bot.rater.llamacpp import LlamaCppRater

    info = resolve_model(model)
    rater = LlamaCppRater(**info.rater_options())
    folder = explainer_folder(info.adapter_path)
    if folder is None:
        raise SieveError(f"model {model!r} has no explainer folder (explain/ beside its adapter)",
                         hint="train one with python -m training.explain_train and copy its explain/ there")
    student = Explainer(rater.llama, explainer_adapter(folder), n_threads=rater.n_threads)
    base = Explainer(rater.llama, None, n_threads=rater.n_threads)
    return rater, student, base, folder


def offline(items, rater, student, base, ablation: bool = False) -> tuple[dict, dict]:
    """Figures per system, and the texts (raw student/base, template, vendor) by system. With ``ablation``, also
    the checks and repetition of the student decoding without the no-repeat rule (``student_repeats``)."""
    from training import explain_eval as ev

    requests = [item.request() for item in items]
    extra = {}
    if ablation:
        rule, student.no_repeat = student.no_repeat, 0
        try:
            plain = student.generate(requests)
        finally:
            student.no_repeat = rule
        extra["student_repeats"] = {"no_repeat_ngram": 0, "checks": ev.check_rates(plain, requests),
                                    "grounding": ev.grounding(plain, requests)}
    references = [item.rationale for item in items]
    texts = {"student": student.generate(requests), "base": base.generate(requests),
             "template": [ev.template(i) for i in items], "vendor": [ev.vendor(i) for i in items]}
    rerate = ev.rerater(rater)

    figures = {}
    for name in ("student", "base", "template"):
        raw = [explain.complete(t) for t in texts[name]]
        shown = ev.served(texts[name], requests, rerate if name != "template" else None)
        texts[f"{name}_shown"] = shown
        figures[name] = {"overlap_raw": ev.overlap(raw, references), "overlap_shown": ev.overlap(shown, references),
                         "checks": ev.check_rates(texts[name], requests),
                         "grounding": ev.grounding(texts[name], requests),
                         "consistency": ev.consistency(texts[name], requests, rerate if name != "template" else None),
                         "consistency_shown": ev.consistency(shown, requests, rerate if name != "template" else None),
                         "copying": ev.copying(texts[name], requests)}
        # the findings shown no rule (LLM-like): there overlap with the vendor's prose is still recall, not copy
        bare = [i for i, r in enumerate(requests) if not r.rationale]
        figures[name]["overlap_raw_no_rule"] = {"n": len(bare), **ev.overlap([raw[i] for i in bare],
                                                                             [references[i] for i in bare])}
        if name != "template":
            figures[name]["no_repeat_ngram"] = (student if name == "student" else base).no_repeat
    figures.update(extra)
    return figures, texts


def samples(items, texts, k: int, seed: int) -> list[dict]:
    """``k`` findings drawn with ``seed``, with the student's raw sentence and what serving shows."""
    import random

    chosen = sorted(random.Random(seed + 1).sample(range(len(items)), min(k, len(items))))
    rows = []
    for i in chosen:
        item, raw = items[i], explain.complete(texts["student"][i])
        reason = explain.problem(raw, item.request()) if raw else "empty"
        if not reason and not texts.get("student_shown", [raw] * len(items))[i]:
            reason = "the student reads it as another severity"
        rows.append({"rule": item.group, "severity": item.severity, "finding": item.review,
                     "student": raw, "shown": not reason, "dropped_because": reason, "vendor": texts["vendor"][i]})
    return rows


def judged(items, texts, args) -> dict:
    """Preference differential of the student (as shown) over base (as shown), template and vendor."""
    from training.explain_judge import Judge, differential

    judge = Judge(args.judge_base_url, args.judge_model, api_key_env=args.judge_api_key_env, seed=args.seed)
    shown = {name: texts[f"{name}_shown"] for name in ("student", "base")}
    shown.update(template=texts["template"], vendor=texts["vendor"])
    out = {}
    for other in ("base", "template", "vendor"):
        verdicts = [judge.compare(review=item.review, code=explain.code_tail(item.code), severity=item.severity,
                                  x=shown["student"][i], y=shown[other][i])
                    for i, item in enumerate(items[: args.judge_n])]
        out[f"student_vs_{other}"] = differential(verdicts)
    return {"endpoint_model": args.judge_model, **out}


def cost(rater, student, runs: int, model: str) -> dict:
    """Seconds per posted finding on the demo (batched, and one at a time), and the demo's wall time on/off."""
    from training.explain_eval import percentile

    findings, ratings = demo_findings(rater)
    requests = explain.requests_for(findings, ratings)
    batched, single, undrafted, reread = [], [], [], []
    drafted, accepted = student.drafted, student.accepted
    split = dict.fromkeys(student.spent, 0)
    for _ in range(runs):
        spent = dict(student.spent)
        started = time.perf_counter()
        sentences = student.explain(requests)
        batched.append((time.perf_counter() - started) / len(requests))
        split = {k: split[k] + student.spent[k] - spent[k] for k in split}
        started = time.perf_counter()
        rater._reread(sentences, requests)  # the student's re-reading of each sentence, as served
        reread.append((time.perf_counter() - started) / len(requests))
        lookahead, student.lookahead = student.lookahead, 0  # the same batch without prompt-lookup drafting
        try:
            started = time.perf_counter()
            student.explain(requests)
            undrafted.append((time.perf_counter() - started) / len(requests))
        finally:
            student.lookahead = lookahead
        for request in requests:
            started = time.perf_counter()
            student.explain([request])
            single.append(time.perf_counter() - started)
    walls = {"off": [], "on": []}
    for _ in range(runs):
        for mode in ("off", "on"):
            walls[mode].append(demo_wall(mode == "on", model))
    p50 = {mode: percentile(v, 0.5) for mode, v in walls.items()}
    return {"posted_findings": len(requests), "runs": runs,
            "batched_s_per_finding": {"p50": round(percentile(batched, 0.5), 3),
                                      "p95": round(percentile(batched, 0.95), 3)},
            "batched_without_drafting_s_per_finding": {"p50": round(percentile(undrafted, 0.5), 3),
                                                       "p95": round(percentile(undrafted, 0.95), 3)},
            "reread_s_per_finding": {"p50": round(percentile(reread, 0.5), 3),
                                     "p95": round(percentile(reread, 0.95), 3)},
            "drafted_tokens_kept": round((student.accepted - accepted) / max(1, student.drafted - drafted), 3),
            # the batched runs' seconds, split: evaluating the prompts, then the decoding steps (mean per batch)
            "batched_split": {"prompt_tokens": split["prompt_tokens"] // runs,
                              "prompt_s": round(split["prompt_s"] / runs, 3), "steps": split["steps"] // runs,
                              "logit_rows": split["rows"] // runs, "decode_s": round(split["decode_s"] / runs, 3)},
            "single_s_per_finding": {"p50": round(percentile(single, 0.5), 3),
                                     "p95": round(percentile(single, 0.95), 3)},
            "demo_wall_s": {mode: [round(x, 2) for x in v] for mode, v in walls.items()},
            "demo_ratio_p50": round(p50["on"] / p50["off"], 3)}


def demo_findings(rater):
    """The demo's findings that the default configuration posts, with their ratings."""
    from bot import app
    from bot import plan as planning
    from bot.config import Config

    config = Config()
    source = app.Source(diff=(ROOT / "examples/change.patch").read_bytes(), name="demo",
                        read_file=app.worktree_reader(ROOT / "examples/demo"), repo_root=ROOT / "examples/demo")
    parsed, _ = app.parse_diff(source.diff, config)
    findings, _, _ = app.run_reviewers(parsed, source, config)
    ratings = rater.rate(findings)
    decisions = planning.select(findings, ratings, app.plan_config(config, "", "local"), ())
    posted = [i for i, d in enumerate(decisions) if d.posted]
    return [findings[i] for i in posted], [ratings[i] for i in posted]


def demo_command(explain_on: bool, model: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())", "review", "--diff",
            str(ROOT / "examples/change.patch"), "--repo", str(ROOT / "examples/demo"), "--format", "json",
            "--model", model, "--explain" if explain_on else "--no-explain", *extra]


def demo_wall(explain_on: bool, model: str) -> float:
    """Wall seconds of one ``sieve review`` of the demo (this checkout's code)."""
    started = time.perf_counter()
    done = subprocess.run(demo_command(explain_on, model), cwd=ROOT, capture_output=True, timeout=600, check=False,
                          env=_env())
    if done.returncode not in (0, 1):
        raise SieveError(f"the demo review failed: {done.stderr.decode('utf-8', 'replace').strip()[-300:]}",
                         hint="run it by hand to see why")
    return time.perf_counter() - started


def demo_explanations(model: str) -> list[dict]:
    """The demo's seven findings with ``--explain --threshold trivial`` (every finding posted), as served."""
    done = subprocess.run(demo_command(True, model, ("--threshold", "trivial")), cwd=ROOT, capture_output=True,
                          timeout=600, check=False, env=_env())
    doc = json.loads(done.stdout or b"{}")
    return [{"rule": f["rule_id"], "severity": f["severity"], "explanation": f["explanation"]}
            for f in doc.get("findings", [])]


def _env() -> dict:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.explanations", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--n", type=int, default=150, help="held-out rules scored (one finding each)")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rating", choices=("vendor", "student"), default="vendor",
                        help="the rating each held-out finding is explained at and checked against: the vendor's "
                        "mapped level, or the student's own rating of the finding (what serving does)")
    parser.add_argument("--judge-base-url", default="")
    parser.add_argument("--judge-model", default="judge")
    parser.add_argument("--judge-api-key-env", default="OPENAI_API_KEY")
    parser.add_argument("--judge-n", type=int, default=40)
    parser.add_argument("--cost", action="store_true", help="also measure latency and the demo's wall time")
    parser.add_argument("--demo-runs", type=int, default=3)
    parser.add_argument("--cost-only", action="store_true", help="measure the cost and the demo's sentences alone "
                        "(no held-out figures): for timing on an otherwise quiet machine")
    parser.add_argument("--no-repeat-ablation", action="store_true",
                        help="also decode the student without the no-repeat rule and report its checks")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--manifest", type=Path, help="explainer folder whose manifest gets the figures")
    args = parser.parse_args(argv)
    try:
        result = run(args)
    except SieveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    text = json.dumps(result, indent=1, ensure_ascii=False)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


def run(args) -> dict:
    items = [] if args.cost_only else held_out_items(args.n, args.seed)
    rater, student, base, folder = load(args.model)
    try:
        result = {"explainer": str(folder), "no_repeat_ngram": student.no_repeat}
        if not args.cost_only:
            started = time.perf_counter()
            vendor_levels = [item.severity for item in items]
            if args.rating == "student":
                items = student_rated(items, rater)
            result["rating"] = args.rating
            result["rated_as_vendor"] = round(sum(item.severity == level for item, level in
                                                  zip(items, vendor_levels)) / max(1, len(items)), 4)
            figures, texts = offline(items, rater, student, base, args.no_repeat_ablation)
            from training.explain_eval import ceiling, rerater

            figures["vendor_prose_ceiling"] = ceiling(items, rerater(rater))
            result.update({"held_out_findings": len(items), "seed": args.seed,
                           "offline_seconds": round(time.perf_counter() - started, 1), "systems": figures,
                           "samples": samples(items, texts, args.samples, args.seed)})
        if args.judge_base_url and not args.cost_only:
            result["judge"] = judged(items, texts, args)
        if args.cost or args.cost_only:
            result["cost"] = cost(rater, student, args.demo_runs, args.model)
            result["demo"] = demo_explanations(args.model)
    finally:
        student.close()
        base.close()
        rater.close()
    if args.manifest:
        write_metrics(args.manifest, result)
    return result


def write_metrics(folder: Path, result: dict) -> None:
    """Put the figures (not the samples) into the explainer's manifest."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    metrics = manifest.get("metrics") or {}
    metrics.update({k: v for k, v in result.items() if k not in ("samples", "explainer")})
    manifest["metrics"] = metrics
    path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
