"""What LoRA saves over full fine-tuning of the student, measured on the same examples in one process.

For each mode a few optimizer steps run on real severity items with a real base (``--base``: SmolLM2, or
the default student's Gemma 3 270M with its recipe's prompt template and code cap); it prints
trainable parameters (and their share), seconds per step, peak resident memory growth, and the size of
what would be shipped (LoRA: the GGUF adapter; full: an f16 copy of every weight), then LoRA/full ratios.
The frozen-bottom variant (``freeze_layers``: the bottom 20 of SmolLM2's 30 layers, or the bottom 4 of Gemma's
18 as in the default recipe) is measured as a third mode.

    python benchmarks/train_cost.py [--steps 3] [--grad-accum 2] [--base smollm2|gemma3-270m]

Memory is the growth of this process's peak RSS during the mode (modes run in order, so later modes
only show memory beyond earlier peaks; full fine-tuning runs last for that reason).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.base import load_base
from training.examples import load_jsonl, severity_split
from training.finetune import (
    FinetuneConfig,
    LabelPlan,
    add_lora,
    encode,
    example_loss,
    forward_scores,
    prefix_cache,
    prefix_ids,
)
from training.frozen import precompute_hidden, top_layers


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_steps(model, params, encoded, plan, context, steps: int, grad_accum: int, freeze: int) -> float:
    """Seconds per optimizer step (AdamW, micro-batch 1, fp32), after one warm-up step."""
    import torch

    optimizer = torch.optim.AdamW(params, lr=1e-5)
    config = FinetuneConfig(distill_alpha=0.0)
    times = []
    for step in range(steps + 1):
        began = time.perf_counter()
        with top_layers(model, freeze):
            cache = prefix_cache(model, context, "cpu")
            for i in range(grad_accum):
                enc = encoded[(step * grad_accum + i) % len(encoded)]
                loss = example_loss(forward_scores(model, enc, cache, plan, "cpu"), enc, config)  # fp32
                loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - began)
    return sum(times[1:]) / steps


#: base -> (decoder layers, bottom layers the frozen-bottom mode freezes, recipe the prompt settings come from)
BASES = {"smollm2": (30, 20, "smollm2"), "gemma3-270m": (18, 4, "default")}


def measure(mode: str, items, steps: int, grad_accum: int, base: str = "smollm2") -> dict:
    import torch

    from training.recipe import RECIPES

    before = peak_mb()
    model, tokenizer = load_base(base)
    _, frozen, recipe = BASES[base]
    freeze = frozen if mode.startswith("lora-top") else 0
    settings = FinetuneConfig(**{**RECIPES[recipe], "dropout": 0.0, "freeze_layers": freeze})
    if mode.startswith("lora"):
        model = add_lora(model, settings)
    params = [p for p in model.parameters() if p.requires_grad]
    template = settings.prompt_template()
    plan, prefix = LabelPlan.build(tokenizer, template), prefix_ids(tokenizer, template)
    encoded = [encode(e, tokenizer, plan, prefix, 384, template, settings.code_chars) for e in items]
    model.train()
    context = precompute_hidden(model, encoded, prefix, freeze, "cpu") if freeze else prefix
    seconds = run_steps(model, params, encoded, plan, context, steps, grad_accum, freeze)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in params)
    with tempfile.TemporaryDirectory() as tmp:
        if mode.startswith("lora"):
            from training.export import export_adapter

            model.save_pretrained(Path(tmp) / "peft")
            shipped = export_adapter(Path(tmp) / "peft", Path(tmp) / "a.gguf", base=base).stat().st_size
        else:
            shipped = sum(p.numel() for p in model.parameters()) * 2  # f16 copy of every weight
    del model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return {"mode": mode, "trainable": trainable, "share": trainable / total, "s_per_step": seconds,
            "peak_growth_mb": peak_mb() - before, "shipped_mb": shipped / 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--grad-accum", type=int, default=2)
    parser.add_argument("--base", choices=sorted(BASES), default="smollm2")
    args = parser.parse_args()
    path = severity_split("train")
    if not path.is_file():
        print(f"shared data not found at {path}; set SIEVE_SHARED", file=sys.stderr)
        return 2
    items = load_jsonl(path)[: args.steps * args.grad_accum + args.grad_accum]
    layers, frozen, _ = BASES[args.base]
    top = f"lora-top{layers - frozen}"
    rows = [measure(mode, items, args.steps, args.grad_accum, args.base) for mode in (top, "lora-all", "full")]
    print(f"base: {args.base}")
    print(f"{'mode':<11} {'trainable':>12} {'share':>8} {'s/step':>8} {'peak+MB':>8} {'shipped MB':>10}")
    for r in rows:
        print(f"{r['mode']:<11} {r['trainable']:>12,} {r['share']:>8.2%} {r['s_per_step']:>8.2f} "
              f"{r['peak_growth_mb']:>8.0f} {r['shipped_mb']:>10.1f}")
    full = rows[-1]
    for r in rows[:-1]:
        print(f"{r['mode']} / full: params {r['trainable'] / full['trainable']:.4f}, "
              f"s/step {r['s_per_step'] / full['s_per_step']:.2f}, shipped {r['shipped_mb'] / full['shipped_mb']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
