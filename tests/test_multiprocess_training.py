"""Data-parallel training: two processes (``accelerate launch``, gloo on this CPU) against one, same global batch.

Both runs use the default recipe's settings (``training.recipe.RECIPES["default"]``: LoRA dropout 0.1, distillation,
label smoothing, frozen bottom layers) on the packaged SmolLM2 base, shortened: 3 optimizer steps of 4 examples,
the top 4 of 30 layers trained. Examples carry unequal weights and half of them teacher soft labels, so a
per-process weight normaliser or a lost KL term would show.

Tolerances, from fp32 arithmetic. The two runs compute every example's loss and gradient with the same kernels
on the same inputs (dropout masks are seeded per example); what differs is the order in which the per-example
gradients are added (two partial sums, then gloo's sum, against one running sum), a relative error of a few
units of fp32 rounding (2**-24 ≈ 6e-8) per addition. The first step's loss is therefore equal to ≈1e-7; later
losses move with the weights. AdamW divides each coordinate's step by its own gradient's magnitude, so a
relative gradient error δ moves a weight by ≈lr·δ per step; only a coordinate whose gradient is within rounding
of zero can change sign, and its step is then lr·|g|/(|g| + ε_adam) with ε_adam = 1e-8, small unless that
rounding noise itself exceeds 1e-8.
Hence: per-step losses within 1e-5 relative, adapter weights within lr·steps/20 — a twentieth of the distance
AdamW can move a weight in those steps. Measured with the sharding broken on purpose, the first logged losses were
10.60 (every process on the whole batch) and 3.52 (both processes on the same share) against 4.03, and a
per-process weight normaliser gave 6.350 against 6.286 at step 2 — each far outside the tolerance.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from training.examples import dump_jsonl

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
HEAVY = all(importlib.util.find_spec(m) for m in ("torch", "transformers", "peft", "accelerate"))
needs_heavy = pytest.mark.skipif(not HEAVY, reason="training extras (torch, transformers, peft, accelerate) missing")

STEPS, GLOBAL_BATCH, LR = 3, 4, 1e-3
LOSS_REL = 1e-5
WEIGHT_ABS = LR * STEPS / 20


def recipe_sets() -> list[str]:
    """The default recipe as ``--set`` options, shortened for a test (top 4 layers, 3 steps, global batch 4)."""
    from training.recipe import RECIPES

    recipe = {k: v for k, v in RECIPES["default"].items() if k != "base"}
    recipe.update(freeze_layers=26, checkpoint_every=0, rank=4, alpha=8, lr=LR, grad_accum=GLOBAL_BATCH,
                  max_steps=STEPS)
    return [f"--set={key}={value}" for key, value in sorted(recipe.items())]


def training_data(path: Path) -> Path:
    from tests.test_finetune import examples

    items = []
    for i, item in enumerate(examples() * 2):
        soft = {"critical": 0.1, "major": 0.2, "minor": 0.3, "trivial": 0.4} if i % 2 else None
        items.append(replace(item, id=f"t{i}", weight=(1.0, 2.5, 0.5)[i % 3], soft=soft))
    dump_jsonl(items, path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(command: list[str], tmp_path: Path) -> None:
    """Run a training command in its own process group; it stops by itself (or is stopped after 15 minutes)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"training did not finish: {out[-2000:]}")
    assert proc.returncode == 0, out[-4000:]


def finetune_args(data: Path, out: Path) -> list[str]:
    return ["finetune", "--data", str(data), "--out", str(out), "--base", "smollm2", "--code-chars", "0",
            *recipe_sets()]


def outcome(out: Path) -> tuple[list[float], dict, int]:
    from safetensors.torch import load_file

    losses = json.loads((out / "checkpoint" / "state.json").read_text())["losses"]
    processes = json.loads((out / "adapter" / "sieve_finetune.json").read_text())["processes"]
    return losses, load_file(str(out / "adapter" / "adapter_model.safetensors")), processes


@needs_heavy
def test_two_processes_train_like_one_at_the_same_global_batch(tmp_path):
    data = training_data(tmp_path / "train.jsonl")
    run([sys.executable, "-m", "training.cli", *finetune_args(data, tmp_path / "one")], tmp_path)
    run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port()),
         "-m", "training.cli", *finetune_args(data, tmp_path / "two")], tmp_path)
    one_losses, one, one_procs = outcome(tmp_path / "one")
    two_losses, two, two_procs = outcome(tmp_path / "two")
    assert (one_procs, two_procs) == (1, 2)
    assert len(one_losses) == len(two_losses) == STEPS
    assert two_losses == pytest.approx(one_losses, rel=LOSS_REL)
    assert one.keys() == two.keys()
    moved = max(float(t.abs().max()) for k, t in one.items() if "lora_B" in k)
    assert moved > WEIGHT_ABS  # training moved the adapter by more than the tolerance
    worst = max(float((one[k] - two[k]).abs().max()) for k in one)
    assert worst < WEIGHT_ABS, worst


@needs_heavy
def test_gradient_checkpointing_keeps_the_prefix_cache_and_the_result(tmp_path):
    """Checkpointed layers replay their forward pass with the read-only prefix cache: same losses and adapter
    (transformers' default would drop the cache and train each body without its prompt prefix)."""
    from training.finetune import FinetuneConfig, finetune
    from training.recipe import _parse_sets

    data = training_data(tmp_path / "train.jsonl")
    from training.examples import load_jsonl

    items = load_jsonl(data)
    settings = _parse_sets([s.removeprefix("--set=") for s in recipe_sets()])
    config = FinetuneConfig(base="smollm2", **settings)
    plain = finetune(items, config, tmp_path / "plain", progress=False)
    checkpointed = finetune(items, replace(config, gradient_checkpointing=True), tmp_path / "ckpt", progress=False)
    assert checkpointed.losses == pytest.approx(plain.losses, rel=LOSS_REL)
    a, b = outcome(tmp_path / "plain")[1], outcome(tmp_path / "ckpt")[1]
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < WEIGHT_ABS
