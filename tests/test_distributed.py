"""Who trains on what under several processes, and the launches that are refused (no processes started here;
tests/test_multiprocess_training.py runs a real two-process launch)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bot.errors import TrainingError
from training.distributed import check_launch, share


@pytest.mark.parametrize("batch,processes", [(8, 1), (8, 2), (8, 3), (5, 2), (4, 4), (9, 4)])
def test_the_shares_of_a_global_batch_are_disjoint_and_cover_it(batch, processes):
    shares = [share(batch, rank, processes) for rank in range(processes)]
    taken = [i for part in shares for i in part]
    assert sorted(taken) == list(range(batch))  # every example once: none twice, none left out
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def launch(processes: int, kind: str = "MULTI_CPU"):
    return SimpleNamespace(num_processes=processes, distributed_type=f"DistributedType.{kind}")


def test_a_global_batch_smaller_than_the_processes_is_refused():
    with pytest.raises(TrainingError, match="grad_accum 1 is below the 2 processes"):
        check_launch(launch(2), grad_accum=1)
    check_launch(launch(2), grad_accum=2)


def test_processes_that_did_not_join_one_run_are_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TrainingError, match="did not join one run"):
        check_launch(launch(1), grad_accum=8)


def test_fsdp_is_refused_with_one_line():
    with pytest.raises(TrainingError, match="FSDP launches are not supported"):
        check_launch(launch(2, "FSDP"), grad_accum=8)


def test_a_single_cpu_process_from_a_multi_process_launch_is_told_so(monkeypatch, capsys):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    check_launch(launch(1), grad_accum=8)
    assert "one training process" in capsys.readouterr().err


def test_finetune_set_options_are_checked_before_training(tmp_path, capsys):
    from training.cli import main

    data = tmp_path / "d.jsonl"
    data.write_text('{"code": "", "review": "typo", "label": "trivial"}\n')
    with pytest.raises(TrainingError, match="'abc' is not a"):
        main(["finetune", "--data", str(data), "--out", str(tmp_path / "o"), "--set", "rank=abc"])
    with pytest.raises(TrainingError, match="unknown or unsupported key"):
        main(["finetune", "--data", str(data), "--out", str(tmp_path / "o"), "--set", "ranks=4"])


def test_one_process_can_train_at_two_precisions_in_turn() -> None:
    """accelerate refuses a second precision in one process; a fine-tune (bf16 on a CPU with AMX) and the
    explainer's run (no mixed precision) in one process each get theirs."""
    from accelerate.state import AcceleratorState

    from training.distributed import accelerator_at

    assert accelerator_at("no").mixed_precision == "no"
    assert accelerator_at("bf16").mixed_precision == "bf16"
    assert accelerator_at("no").mixed_precision == "no"
    assert AcceleratorState().mixed_precision == "no"
