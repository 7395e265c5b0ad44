"""Training bookkeeping: the progress line and atomic checkpoints (adapter + optimizer + step) for resume."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bot.errors import TrainingError


class Progress:
    """One plain stderr line per report: step, loss (running mean), examples/s, ETA."""

    def __init__(self, total: int, enabled: bool, every_s: float = 10.0) -> None:
        self.total, self.enabled, self.every_s = total, enabled, every_s
        self.start = self.last = time.monotonic()
        self.done = 0

    def update(self, step: int, loss: float, examples: int) -> None:
        self.done += examples
        now = time.monotonic()
        if not self.enabled or (now - self.last < self.every_s and step < self.total):
            return
        self.last = now
        rate = self.done / max(1e-9, now - self.start)
        steps_left = self.total - step
        eta = steps_left * (now - self.start) / max(1, step - self.first) if hasattr(self, "first") else 0
        print(f"step {step}/{self.total} loss {loss:.4f} {rate:.2f} ex/s eta {eta / 60:.1f} min",
              file=sys.stderr, flush=True)

    def begin(self, step: int) -> None:
        self.first = step
        self.start = time.monotonic()


def save_checkpoint(accelerator, model, optimizer, out_dir: Path, step: int, losses: list[float]) -> None:
    """Adapter + optimizer + step, written to a temp folder and renamed (a crash never leaves half a checkpoint)."""
    import torch

    if not accelerator.is_main_process:
        return
    ckpt, tmp = out_dir / "checkpoint", out_dir / "checkpoint.tmp"
    accelerator.unwrap_model(model).save_pretrained(tmp)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "losses": losses}))
    if ckpt.exists():
        old = out_dir / "checkpoint.old"
        ckpt.replace(old)
        tmp.replace(ckpt)
        import shutil

        shutil.rmtree(old)
    else:
        tmp.replace(ckpt)


def load_checkpoint(model, optimizer, out_dir: Path) -> tuple[int, list[float]]:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    ckpt = out_dir / "checkpoint"
    if not (ckpt / "state.json").is_file():
        raise TrainingError(f"no checkpoint to resume in {out_dir}", hint="run without resume=True first")
    set_peft_model_state_dict(model, load_file(str(ckpt / "adapter_model.safetensors")))
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    state = json.loads((ckpt / "state.json").read_text())
    return int(state["step"]), list(state.get("losses", []))
