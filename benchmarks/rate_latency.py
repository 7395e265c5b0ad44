"""Latency and throughput of the student rater vs the naive generate-and-parse path, same process.

    .venv/bin/python -m benchmarks.rate_latency [--n 200] [--naive-n 60] [--weight-format auto|as-is|f16|both]
                                                [--models smollm2,default,base]
    .venv/bin/python -m benchmarks.rate_latency --models default --variants auto:1,auto:8,merged-q8:8 [--rounds 3]

With ``--variants`` (weight format : findings per decode call), every variant of each model rates the same
findings in interleaved rounds (so a loaded machine slows them alike) and is compared with the first: p50 cost
per finding (a batch's time divided by its findings), findings/s, evaluated tokens/s as a share of that
variant's raw prefill and of the f16 base's, and the largest probability difference from the first variant.

Findings are (code, review) pairs from ``../shared/data/severity/dev.jsonl`` (cycled to reach ``--n``).
For the rater: ms per finding (p50/p95), findings/s, evaluated tokens/s, peak RSS. Baselines, measured
on the same loaded model: (1) NAIVE — ``create_completion`` on the full prompt, cache reset before each
finding (no prefix reuse), the model writing the JSON answer itself, which is then parsed (failures
counted); (2) raw llama.cpp prefill tokens/s on a 512-token sequence. Goals: rater ≥ 3× naive
findings/s, p50 ≤ 700 ms, rater tokens/s ≥ 80% of raw prefill. With several ``--models`` (names from
``models/``, e.g. the SmolLM2 and the Gemma student), each is measured in turn and the last lines give every
model's findings/s as a ratio of the first's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import time
from pathlib import Path

from bot.prompt import TEMPLATES, render
from bot.rater.llamacpp import LlamaCppRater
from bot.severity import LABELS

SHARED = Path(os.environ.get("SIEVE_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared"))
ANSWER = re.compile(r'\{\s*"issue_type"\s*:\s*"([a-z]+)"')


def load_pairs(n: int) -> list[tuple[str, str]]:
    path = SHARED / "data" / "severity" / "dev.jsonl"
    if not path.is_file():
        raise SystemExit(f"shared data not found at {path}; set SIEVE_SHARED")
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [(rows[i % len(rows)]["code"], rows[i % len(rows)]["review"]) for i in range(n)]


def raw_prefill(rater: LlamaCppRater, pairs: list[tuple[str, str]], length: int = 512, repeats: int = 3) -> float:
    """Tokens/s of one plain llama.cpp eval of a long real token sequence (best of ``repeats``)."""
    tokens: list[int] = []
    for code, review in pairs:
        tokens += rater.prompt_tokens(code, review)[0]
        if len(tokens) >= length:
            break
    tokens = tokens[:length]
    llm, best = rater.llama, 0.0
    for _ in range(repeats):
        llm.reset()
        started = time.perf_counter()
        llm.eval(tokens)
        best = max(best, len(tokens) / (time.perf_counter() - started))
    rater.reset_cache()
    return best


def bench_rater(rater: LlamaCppRater, pairs: list[tuple[str, str]]) -> dict[str, float]:
    rater.reset_cache()
    times, tokens, labels = [], 0, []
    for pair in pairs:
        started = time.perf_counter()
        rating = rater.rate_texts([pair])[0]
        times.append(time.perf_counter() - started)
        tokens += rating.tokens
        labels.append(rating.severity)
    total = sum(times)
    return {"p50_ms": 1000 * statistics.median(times), "p95_ms": 1000 * statistics.quantiles(times, n=20)[18],
            "findings_per_s": len(pairs) / total, "tokens_per_s": tokens / total, "labels": labels}


def bench_naive(rater: LlamaCppRater, pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Free generation of the JSON answer on the full prompt, no prefix reuse, then parsing."""
    llm = rater.llama
    opener = TEMPLATES[rater.template]["assistant_open"]
    times, failures, labels = [], 0, []
    for code, review in pairs:
        parts = render(code, review, rater.template, version=rater.prompt_version)
        prompt = parts.prefix + parts.body + opener
        llm.reset()
        started = time.perf_counter()
        out = llm.create_completion(prompt, max_tokens=16, temperature=0.0, stop=["}", "\n"])
        times.append(time.perf_counter() - started)
        match = ANSWER.search(out["choices"][0]["text"] + "}")
        label = match.group(1) if match else None
        failures += label not in LABELS
        labels.append(label)
    rater.reset_cache()
    total = sum(times)
    return {"p50_ms": 1000 * statistics.median(times), "findings_per_s": len(pairs) / total,
            "parse_failures": failures, "labels": labels}


def run(weight_format: str, n: int, naive_n: int, model: str = "smollm2") -> dict[str, float]:
    from bot.models import resolve_model

    pairs = load_pairs(n)
    info = resolve_model(model)
    started = time.perf_counter()
    rater = LlamaCppRater(weight_format=weight_format, **info.rater_options())  # type: ignore[arg-type]
    load_s = time.perf_counter() - started
    print(f"\n== {model}, weight format {weight_format}: {rater.weights_path.name}"
          f"{' + ' + info.adapter_path.name if info.adapter_path else ''} ({rater.n_threads} threads, "
          f"load {load_s:.1f}s)")
    prefill = raw_prefill(rater, pairs)
    scored = bench_rater(rater, pairs)
    naive = bench_naive(rater, pairs[:naive_n])
    agree = sum(a == b for a, b in zip(scored["labels"], naive["labels"])) / max(1, naive_n)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    speedup = scored["findings_per_s"] / naive["findings_per_s"]
    share = scored["tokens_per_s"] / prefill
    print(f"rater  ({n} findings): p50 {scored['p50_ms']:.0f} ms  p95 {scored['p95_ms']:.0f} ms  "
          f"{scored['findings_per_s']:.2f} findings/s  {scored['tokens_per_s']:.0f} evaluated tok/s")
    print(f"naive  (first {naive_n} findings only, to save time): p50 {naive['p50_ms']:.0f} ms  "
          f"{naive['findings_per_s']:.2f} findings/s  parse failures {naive['parse_failures']}/{naive_n}  "
          f"argmax agreement with rater {agree:.0%}")
    print(f"raw llama.cpp prefill (512 tokens, best of 3): {prefill:.0f} tok/s")
    print(f"ratio rater/naive findings/s: {speedup:.2f}x (goal >= 3x)  "
          f"rater tok/s as % of raw prefill: {share:.0%} (goal >= 80%)  "
          f"p50 goal <= 700 ms: {'met' if scored['p50_ms'] <= 700 else 'missed'}")
    print(f"peak RSS so far: {rss_mb:.0f} MB")
    rater.close()
    return scored


def _timed_chunks(rater: LlamaCppRater, pairs: list[tuple[str, str]], size: int) -> tuple[list[float], list, int]:
    """Rate ``pairs`` in chunks of ``size`` (one rate_texts call each); per-finding costs, ratings, tokens."""
    costs, ratings, tokens = [], [], 0
    for start in range(0, len(pairs), size):
        chunk = pairs[start: start + size]
        began = time.perf_counter()
        got = rater.rate_texts(chunk)
        costs += [(time.perf_counter() - began) / len(chunk)] * len(chunk)
        ratings += got
        tokens += sum(r.tokens for r in got)
    return costs, ratings, tokens


def compare(model: str, variants: list[tuple[str, int]], n: int, rounds: int) -> None:
    """Every variant on the same findings, interleaved ``rounds`` times; the first variant is the reference.

    Each round measures each variant's raw prefill right before its rating, so a share of raw prefill compares
    two numbers taken under the same load; medians over rounds are reported."""
    from bot.models import resolve_model

    pairs, info = load_pairs(n), resolve_model(model)
    base = LlamaCppRater(**{**info.rater_options(), "adapter_path": None}, weight_format="f16")  # type: ignore[arg-type]
    raters = {f"{fmt}:{size}": LlamaCppRater(**info.rater_options(), weight_format=fmt, batch=size)  # type: ignore
              for fmt, size in variants}
    seen: dict[str, dict[str, list[float]]] = {name: {"cost": [], "speed": [], "share": [], "base": []} for name in raters}
    ratings: dict[str, list] = {}
    for _ in range(rounds):
        for (name, rater), (_, size) in zip(raters.items(), variants):
            ceiling = raw_prefill(base, pairs, repeats=1)
            own = raw_prefill(rater, pairs, repeats=1)
            rater.reset_cache()
            spent, ratings[name], tokens = _timed_chunks(rater, pairs, size)
            rate = tokens / sum(spent)
            seen[name]["cost"] += spent
            seen[name]["speed"].append(n / sum(spent))
            seen[name]["share"].append(rate / own)
            seen[name]["base"].append(rate / ceiling)
    reference = next(iter(raters))
    med = statistics.median
    print(f"\n== {model}: {n} findings x {rounds} interleaved rounds (medians over rounds)")
    for name, rater in raters.items():
        gap = max(abs(a.probabilities[k] - b.probabilities[k])
                  for a, b in zip(ratings[name], ratings[reference]) for k in LABELS)
        got = seen[name]
        print(f"{name:13s} {rater.weights_path.name[-28:]:28s} p50 {1000 * med(got['cost']):4.0f} ms/finding  "
              f"{med(got['speed']):5.2f} findings/s ({med(got['speed']) / med(seen[reference]['speed']):4.2f}x)  "
              f"tok/s = {med(got['share']):4.0%} of its own raw prefill, {med(got['base']):4.0%} of the f16 base's  "
              f"max|dp| vs {reference}: {gap:.1e}")
    for rater in [*raters.values(), base]:
        rater.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="findings for the rater (>= 200 for the report)")
    parser.add_argument("--naive-n", type=int, default=60, help="findings for the naive baseline")
    parser.add_argument("--weight-format", default="auto", choices=["auto", "as-is", "f16", "both"])
    parser.add_argument("--models", default="smollm2",
                        help="comma-separated models (names from models/, a packaged base, or 'base': the default's)")
    parser.add_argument("--variants", default="",
                        help="weight format:batch pairs to compare, the first the reference (auto:1,merged-q8:8)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds for --variants")
    args = parser.parse_args()
    if args.variants:
        variants = [(v.split(":")[0], int(v.split(":")[1]) if ":" in v else 1) for v in args.variants.split(",")]
        for model in [m for m in args.models.split(",") if m]:
            compare(model, variants, args.n, args.rounds)
        return
    results = {}
    for model in [m for m in args.models.split(",") if m]:
        for fmt in (["f16", "as-is"] if args.weight_format == "both" else [args.weight_format]):
            results[f"{model} ({fmt})"] = run(fmt, args.n, min(args.naive_n, args.n), model)
    if len(results) > 1:
        first, reference = next(iter(results.items()))
        for name, scored in results.items():
            print(f"{name}: p50 {scored['p50_ms']:.0f} ms, {scored['findings_per_s']:.2f} findings/s = "
                  f"{scored['findings_per_s'] / reference['findings_per_s']:.2f}x {first}")


if __name__ == "__main__":
    main()
