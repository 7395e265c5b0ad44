"""Training on more than one process: who takes which examples, how gradients and losses add up, who writes.

Data parallelism over ``accelerate launch`` (DDP: gloo on CPUs, NCCL on GPUs). ``grad_accum`` is the *global*
batch, the examples of one optimizer step whatever the number of processes: each process takes a strided share
of it (examples 0, N, 2N… of the batch for process 0 of N), so one process and N processes step over the same
examples and the same number of steps per epoch. Every process knows the whole batch, so the weight normaliser
is the global one without a collective; DDP averages gradients over processes, so each process scales its share
by N. The loss logged per step is the processes' shares summed (one all-reduce per step), i.e. the
single-process figure. Dropout draws come from a generator seeded by (seed, position of the example in the
run), so a process sees the masks the single-process run would see for the same example (and a resumed run
the masks of an uninterrupted one).

Only the main process writes adapters, checkpoints and progress lines.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bot.errors import TrainingError


def make_accelerator(config):
    """The run's ``Accelerator``: bf16 only where it pays (CUDA; CPUs with AMX), CPU collectives without CUDA.

    Without ``cpu=True`` accelerate leaves a CPU machine's processes un-joined (``accelerate launch --multi_gpu
    --num_processes 2`` there starts two *independent* runs that write the same folder), so a launch of several
    processes without CUDA asks for it (a single process keeps accelerate's own choice of device).
    """
    import torch
    from accelerate.utils import DistributedDataParallelKwargs

    cuda = torch.cuda.is_available()
    several = int(os.environ.get("WORLD_SIZE", "1") or 1) > 1
    bf16 = config.bf16 and (cuda and torch.cuda.is_bf16_supported() or not cuda and cpu_bf16())
    # the base's buffers (rotary tables) are constants: broadcasting them at every forward pass would make each
    # pass a collective, and the processes run different numbers of gradient-free passes (frozen layers)
    ddp = DistributedDataParallelKwargs(broadcast_buffers=False)
    accelerator = accelerator_at("bf16" if bf16 else "no", cpu=several and not cuda, kwargs_handlers=[ddp])
    check_launch(accelerator, config.grad_accum)
    return accelerator


def accelerator_at(mixed_precision: str, **kwargs):
    """An ``Accelerator`` at ``mixed_precision``, also after an earlier run in this process asked for another.

    accelerate keeps one state per process and refuses a second precision ("AcceleratorState has already been
    initialized and cannot be changed"). On a CPU with AMX a fine-tune asks for bf16 (:func:`cpu_bf16`) and the
    explainer's run for none, so one process that trains both (the test suite, a script) failed on the second.
    A single process starts the state over; a launched run of several processes keeps it (its process group
    belongs to the launch), and there the refusal stands.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    alone = int(os.environ.get("WORLD_SIZE", "1") or 1) == 1
    if state and alone and state.get("_mixed_precision") != mixed_precision:
        AcceleratorState._reset_state()
    return Accelerator(mixed_precision=mixed_precision, **kwargs)


def cpu_bf16() -> bool:
    """True only on CPUs with AMX bf16 tiles.

    Measured here (AVX-512-BF16, no AMX, 2 shared cores, ≈150-token bodies): under bf16 autocast the
    per-call fp32→bf16 weight casts dominated and the run went at 0.2 examples/s against 1.9 in fp32.
    """
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def check_launch(accelerator, grad_accum: int) -> None:
    """Refuse a launch that cannot train as asked; say so when a multi-process launch started one process."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1 and accelerator.num_processes != world:
        raise TrainingError(f"{world} processes were launched but they did not join one run",
                            hint="launch with `accelerate launch --multi_gpu --num_processes N` (on a CPU machine too)")
    if grad_accum < accelerator.num_processes:
        raise TrainingError(f"grad_accum {grad_accum} is below the {accelerator.num_processes} processes: "
                            "some process would have no example in a step",
                            hint=f"use grad_accum >= {accelerator.num_processes} (it is the global batch)")
    if str(accelerator.distributed_type).endswith("FSDP"):
        # under FSDP every forward pass and the state-dict gather are collectives; this loop saves from rank 0
        # alone and runs a per-process number of frozen-layer passes (docs/training.md)
        raise TrainingError("FSDP launches are not supported by this training loop",
                            hint="use DDP (`accelerate launch --multi_gpu`): every process holds the whole base")
    single_cpu_launch = os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true" and os.environ.get("MASTER_ADDR")
    if accelerator.num_processes == 1 and single_cpu_launch and world == 1:
        print("note: one training process: `accelerate launch --cpu` starts several only through mpirun; "
              "use `accelerate launch --multi_gpu --num_processes N` (training stays on the CPU without CUDA)",
              file=sys.stderr, flush=True)


def share(batch_size: int, process_index: int, num_processes: int) -> list[int]:
    """Positions in a global batch that one process trains on (strided: the shares differ by one at most)."""
    return list(range(process_index, batch_size, num_processes))


def seed_example(seed: int, position: int) -> None:
    """Seed the dropout generator for the example at ``position`` (its index in the run's example order)."""
    import torch

    torch.manual_seed((seed * 1_000_003 + position) % (2**63))


def summed(accelerator, value: float) -> float:
    """``value`` summed over processes (the value itself on one process)."""
    if accelerator.num_processes == 1:
        return value
    import torch

    return float(accelerator.reduce(torch.tensor([value], dtype=torch.float64, device=accelerator.device),
                                    reduction="sum")[0])


def is_main_process() -> bool:
    """True in the process that writes (rank 0 of a launch, or a plain single process)."""
    return int(os.environ.get("RANK", "0") or 0) == 0
