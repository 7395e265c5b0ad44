"""What gradient checkpointing saves and costs on the default recipe, each run in its own process.

The default student's recipe (``training.recipe.RECIPES["default"]``: Gemma 3 270M, LoRA r=16 on the top 14 of 18
layers, review text alone) trains for a few optimizer steps on real rows of the shared severity train split,
with and without ``gradient_checkpointing``. Every run is a fresh child process, so its peak resident set (the
kernel's high-water mark, ``ru_maxrss``) is its own. A child that only loads the base and adds the LoRA gives
the floor that training adds to. Seconds per step are the training loop's (``FinetuneResult.seconds_per_step``:
after loading, including the frozen bottom layers' one-off pass over the run's examples, the same in both modes,
so the ratio is a slight underestimate of the per-step cost), and, less sensitive to other jobs on the machine,
CPU seconds per step: the run's CPU time less the load-only child's, over the steps. ``--code-chars`` puts code back into the prompt
(longer sequences: more activations to save).

    python benchmarks/train_memory.py [--steps 3] [--code-chars 0]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(mode: str, steps: int, code_chars: int) -> dict:
    """One measurement in this process: ``load`` (base + LoRA only) or a training run of ``steps`` steps."""
    from training.base import load_base
    from training.examples import load_jsonl, severity_split
    from training.finetune import FinetuneConfig, add_lora, finetune
    from training.recipe import RECIPES

    config = FinetuneConfig(**{**RECIPES["default"], "max_steps": steps, "checkpoint_every": 0,
                               "code_chars": code_chars, "gradient_checkpointing": mode == "checkpointed"})
    if mode == "load":
        cpu = time.process_time()
        add_lora(load_base(config.base)[0], config)
        return {"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_s": time.process_time() - cpu}
    items = load_jsonl(severity_split("train"))[: steps * config.grad_accum]
    with tempfile.TemporaryDirectory() as tmp:
        began, cpu = time.perf_counter(), time.process_time()
        result = finetune(items, config, Path(tmp), progress=False)
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": seconds,
            "s_per_step": result.seconds_per_step, "cpu_s": cpu, "losses": result.losses}


def measure(mode: str, steps: int, code_chars: int) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}  # no busy-waiting threads inflating the CPU seconds
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--steps", str(steps),
                          "--code-chars", str(code_chars)], capture_output=True, text=True, cwd=ROOT, check=False, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{mode} run failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else '?'}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per run")
    parser.add_argument("--code-chars", type=int, default=0, help="code characters in the prompt (recipe: 0)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.code_chars)))
        return 0
    from training.examples import severity_split

    if not severity_split("train").is_file():
        print(f"shared data not found at {severity_split('train')}; set SIEVE_SHARED", file=sys.stderr)
        return 2
    load = measure("load", 0, args.code_chars)
    floor = load["peak_mb"]
    rows = {}
    for mode in ("plain", "checkpointed"):
        run = measure(mode, args.steps, args.code_chars)
        rows[mode] = {**run, "above_floor_mb": run["peak_mb"] - floor,
                      "cpu_per_step": (run["cpu_s"] - load["cpu_s"]) / args.steps}
    print(f"default recipe, code_chars={args.code_chars}, {args.steps} steps; "
          f"base + LoRA loaded: {floor:.0f} MB peak RSS")
    print(f"{'mode':<13} {'peak RSS MB':>11} {'above load MB':>13} {'s/step':>7} {'CPU s/step':>10}")
    for mode, r in rows.items():
        print(f"{mode:<13} {r['peak_mb']:>11.0f} {r['above_floor_mb']:>13.0f} {r['s_per_step']:>7.2f} "
              f"{r['cpu_per_step']:>10.2f}")
    plain, ckpt = rows["plain"], rows["checkpointed"]
    same = max(abs(a - b) / abs(a) for a, b in zip(plain["losses"], ckpt["losses"]))
    print(f"checkpointed / plain: peak RSS {ckpt['peak_mb'] / plain['peak_mb']:.3f}, above load "
          f"{ckpt['above_floor_mb'] / max(1.0, plain['above_floor_mb']):.3f}, "
          f"s/step {ckpt['s_per_step'] / plain['s_per_step']:.2f}, CPU s/step "
          f"{ckpt['cpu_per_step'] / plain['cpu_per_step']:.2f}; largest relative loss difference {same:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
