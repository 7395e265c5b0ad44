"""The numbers behind the QLoRA decision (docs/training.md): what a 4-bit base would save, and what it would change.

QLoRA trains the LoRA against a base whose linear weights are stored in 4-bit NF4 (bitsandbytes) and
dequantised in every matmul. This measures, on the default student's base (Gemma 3 270M, as training loads it:
fp32 dequantised from the packaged Q4_K_M GGUF, which is also what llama.cpp serves):

1. the base's parameters by kind and their bytes in fp32 against NF4 (bitsandbytes' own quantiser, blocks of 64,
   double-quantised statistics; embeddings stay unquantised, as bitsandbytes leaves them);
2. the NF4 round trip's relative error on the linear weights;
3. what serving would see: the shipped adapter (``models/default``) rated on the base it was trained on and on the
   NF4 round-tripped base (the base a QLoRA-trained adapter learns against), over ``--rows`` rows of the shared
   severity train split: mean total-variation distance between the two label distributions and argmax
   agreement, next to the same figures for the adapter against no adapter (how far the whole fine-tune moved).

    python benchmarks/qlora.py [--rows 100]      # needs bitsandbytes (not a dependency of Sieve)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def nf4_round_trip(model) -> dict:
    """Replace every decoder linear weight by its NF4 round trip; return bytes and the relative error."""
    import torch
    from bitsandbytes.functional import dequantize_4bit, quantize_4bit

    nf4_bytes, err2, norm2 = 0, 0.0, 0.0
    with torch.no_grad():
        for name, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear) or "layers." not in name or "lora" in name:
                continue
            weight = module.weight.data
            packed, state = quantize_4bit(weight, blocksize=64, quant_type="nf4", compress_statistics=True)
            back = dequantize_4bit(packed, state).to(weight.dtype)
            stats = state.absmax.numel() * state.absmax.element_size()
            if state.state2 is not None:
                stats += state.state2.absmax.numel() * state.state2.absmax.element_size()
            nf4_bytes += packed.numel() * packed.element_size() + stats
            err2 += float((back - weight).pow(2).sum())
            norm2 += float(weight.pow(2).sum())
            weight.copy_(back)
    return {"nf4_bytes": nf4_bytes, "relative_error": (err2 / norm2) ** 0.5}


def census(model) -> dict:
    """Parameters of the base by kind (tied weights counted once)."""
    import torch

    seen, out = set(), {"embedding": 0, "decoder_linear": 0, "other": 0}
    for name, module in model.named_modules():
        for p in module.parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            kind = ("embedding" if isinstance(module, torch.nn.Embedding) else
                    "decoder_linear" if isinstance(module, torch.nn.Linear) and "layers." in name else "other")
            out[kind] += p.numel()
    return out


def compare(a: list[dict], b: list[dict]) -> tuple[float, float]:
    """Mean total-variation distance and argmax agreement between two lists of label distributions."""
    tv = sum(0.5 * sum(abs(x[k] - y[k]) for k in x) for x, y in zip(a, b)) / len(a)
    agree = sum(max(x, key=x.get) == max(y, key=y.get) for x, y in zip(a, b)) / len(a)
    return tv, agree


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100, help="severity train rows to rate (0: sizes and weight error only)")
    parser.add_argument("--model", default=str(ROOT / "models" / "default"), help="student folder")
    args = parser.parse_args()
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        print("bitsandbytes is not installed: pip install bitsandbytes (only this measurement needs it)",
              file=sys.stderr)
        return 2
    from training.base import load_base
    from training.examples import load_jsonl, severity_split
    from training.export import import_adapter
    from training.finetune import FinetuneConfig, add_lora, label_probabilities

    manifest = json.loads((Path(args.model) / "manifest.json").read_text())
    config = FinetuneConfig(**{k: v for k, v in manifest["hyperparameters"].items() if k != "targets"},
                            targets=tuple(manifest["hyperparameters"]["targets"]))
    rows = load_jsonl(severity_split("train"))[: args.rows]
    template = manifest.get("template") or config.prompt_template()

    def rate(model, tokenizer):
        return label_probabilities(model, tokenizer, rows, config.max_prompt_tokens, template, config.code_chars)

    model, tokenizer = load_base(config.base)
    counts = census(model)
    fp32_mb = {k: 4 * v / 2**20 for k, v in counts.items()}
    print(f"base {config.base}: parameters {json.dumps(counts)}", flush=True)
    print(f"fp32 MB: embedding {fp32_mb['embedding']:.0f}, decoder linear {fp32_mb['decoder_linear']:.0f}, "
          f"other {fp32_mb['other']:.1f}; total {sum(fp32_mb.values()):.0f}", flush=True)
    if rows:
        no_adapter = rate(model, tokenizer)
    model = add_lora(model, config)
    import_adapter(model, Path(args.model) / "adapter.gguf", base=config.base)
    if rows:
        served = rate(model, tokenizer)
        tv0, agree0 = compare(served, no_adapter)
        print(f"shipped adapter vs no adapter, same base ({len(rows)} rows): mean TV {tv0:.3f}, "
              f"argmax agreement {agree0:.3f}", flush=True)
    nf4 = nf4_round_trip(model)
    qlora_mb = fp32_mb["embedding"] + fp32_mb["other"] + nf4["nf4_bytes"] / 2**20
    print(f"NF4 decoder linear MB {nf4['nf4_bytes'] / 2**20:.0f}; base with NF4 linears {qlora_mb:.0f} MB "
          f"({qlora_mb / sum(fp32_mb.values()):.2f} of fp32)", flush=True)
    print(f"NF4 round trip, relative error of the linear weights: {nf4['relative_error']:.4f}", flush=True)
    if not rows:
        return 0
    on_nf4 = rate(model, tokenizer)
    tv, agree = compare(served, on_nf4)
    print(f"shipped adapter on the trained base vs on the NF4 base ({len(rows)} rows): mean TV {tv:.3f}, "
          f"argmax agreement {agree:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
