"""LoRA fine-tuning on the real SmolLM2 base (dequantised from its packaged GGUF).

Speed: the converted checkpoint is cached (``$SIEVE_CACHE_DIR`` or ``~/.cache/sieve``) after the first
run, and every run here trains only the top two decoder layers (``freeze_layers=28``) in fp32 (bf16 off so
runs are bit-for-bit repeatable and can be compared).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace

import pytest

from bot.errors import TrainingError
from training.examples import Example, data_hash, dump_jsonl, load_jsonl

pytestmark = pytest.mark.slow

HEAVY = all(importlib.util.find_spec(m) for m in ("torch", "transformers", "peft", "accelerate"))
needs_heavy = pytest.mark.skipif(not HEAVY, reason="training extras (torch, transformers, peft) not installed")

ITEMS = [
    ("@@ -1,2 +1,2 @@\n-x = 1\n+x = 2", "Typo in the docstring: 'recieve' should be 'receive'.", "trivial"),
    ("@@ -3 +3 @@\n+os.system('ls ' + user_input)", "Shell command built from user input: command injection.",
     "critical"),
    ("@@ -8 +8 @@\n+total = sum(xs) / len(xs) - 1", "Off by one: the average is wrong for every input.", "major"),
    ("@@ -5 +5 @@\n+log.info(data)", "This logs the whole payload at info level, which is noisy.", "minor"),
    ("@@ -2 +2 @@\n+def f(a,b):", "Please add spaces after commas (PEP 8).", "trivial"),
    ("@@ -9 +9 @@\n+cur.execute('SELECT * FROM t WHERE id=' + id)", "SQL injection via string concatenation.",
     "critical"),
    ("@@ -4 +4 @@\n+return items[1:]", "This drops the first element, so results are incorrect.", "major"),
    ("@@ -7 +7 @@\n+time.sleep(1)", "An unnecessary sleep slows the command down a bit.", "minor"),
]


def examples() -> list[Example]:
    return [Example(code=c, review=r, label=label, id=f"t{i}") for i, (c, r, label) in enumerate(ITEMS)]


def config(**overrides):
    from training.finetune import FinetuneConfig

    base = {"rank": 4, "alpha": 8, "dropout": 0.0, "lr": 2e-3, "grad_accum": 2, "max_steps": 4, "warmup": 0.0,
            "bf16": False, "freeze_layers": 28, "checkpoint_every": 0, "distill_alpha": 0.0, "label_smoothing": 0.0}
    return FinetuneConfig(**{**base, **overrides})


def adapter_tensors(peft_dir):
    from safetensors.torch import load_file

    return load_file(str(peft_dir / "adapter_model.safetensors"))


def test_examples_round_trip_and_hash(tmp_path):
    items = examples()
    items[0] = replace(items[0], soft={"trivial": 3.0, "minor": 1.0})  # normalised on construction
    path = tmp_path / "x.jsonl"
    dump_jsonl(items, path)
    back = load_jsonl(path)
    assert back == items
    assert back[0].soft == {"critical": 0.0, "major": 0.0, "minor": 0.25, "trivial": 0.75}
    assert data_hash(items) == data_hash(list(reversed(items)))
    assert data_hash(items) != data_hash([replace(items[0], weight=2.0)] + items[1:])


def test_bad_examples_say_what_to_fix(tmp_path):
    with pytest.raises(TrainingError, match="label 'severe'"):
        Example(code="", review="r", label="severe")
    path = tmp_path / "bad.jsonl"
    path.write_text('{"review": "ok", "label": "minor"}\nnot json\n')
    with pytest.raises(TrainingError, match=r"bad.jsonl:2: not JSON"):
        load_jsonl(path)
    path.write_text(json.dumps({"code": "x"}) + "\n")
    with pytest.raises(TrainingError, match="lacks field"):
        load_jsonl(path)


@needs_heavy
def test_training_lowers_the_loss_on_its_examples(tmp_path):
    """Gold-label cross-entropy through the transformers model, before and after a few steps."""
    import math

    from peft import PeftModel

    from training.base import load_base
    from training.finetune import finetune, label_probabilities

    items = examples()[:4]  # one per level: the base model puts almost all mass on "critical"
    result = finetune(items, config(max_steps=8), tmp_path / "run", progress=False)
    model, tokenizer = load_base("smollm2")
    before = label_probabilities(model, tokenizer, items)
    after = label_probabilities(PeftModel.from_pretrained(model, str(result.peft_dir)), tokenizer, items)
    loss_before = sum(-math.log(p[e.label]) for p, e in zip(before, items)) / len(items)
    loss_after = sum(-math.log(p[e.label]) for p, e in zip(after, items)) / len(items)
    assert loss_after < loss_before - 0.3, (loss_before, loss_after)
    assert result.steps == 8 and len(result.losses) == 8
    assert 0 < result.trainable_params < result.total_params / 100


@needs_heavy
def test_checkpoint_and_resume_match_an_uninterrupted_run(tmp_path):
    from training.finetune import finetune

    items = examples()[:4]
    whole = finetune(items, config(max_steps=4), tmp_path / "whole", progress=False)
    finetune(items, config(max_steps=2), tmp_path / "split", progress=False)
    assert json.loads((tmp_path / "split" / "checkpoint" / "state.json").read_text())["step"] == 2
    resumed = finetune(items, config(max_steps=4), tmp_path / "split", resume=True, progress=False)
    a, b = adapter_tensors(whole.peft_dir), adapter_tensors(resumed.peft_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max() < 1e-5, key
    assert resumed.losses[:2] == pytest.approx(whole.losses[:2])


@needs_heavy
def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    from training.finetune import finetune

    with pytest.raises(TrainingError, match="no checkpoint to resume"):
        finetune(examples()[:2], config(max_steps=1), tmp_path / "none", resume=True, progress=False)


@needs_heavy
def test_example_weights_count_and_are_normalised_per_batch(tmp_path):
    """Weight 0 removes an example; the weighted loss is normalised by the batch's weights (not re-divided)."""
    from training.finetune import finetune

    a, b = examples()[1], examples()[0]
    cfg = config(max_steps=1, grad_accum=2, lr=1e-3)
    alone = finetune([a], config(max_steps=1, grad_accum=1, lr=1e-3), tmp_path / "alone", progress=False)
    zero = finetune([a, replace(b, weight=0.0)], cfg, tmp_path / "zero", progress=False)
    even = finetune([a, b], cfg, tmp_path / "even", progress=False)
    heavy = finetune([replace(a, weight=3.0), b], cfg, tmp_path / "heavy", progress=False)
    t_alone, t_zero = adapter_tensors(alone.peft_dir), adapter_tensors(zero.peft_dir)
    t_even, t_heavy = adapter_tensors(even.peft_dir), adapter_tensors(heavy.peft_dir)
    key = next(k for k in t_alone if "lora_B" in k)
    assert (t_alone[key] - t_zero[key]).abs().max() < 1e-6
    assert (t_even[key] - t_heavy[key]).abs().max() > 1e-6
    assert zero.losses[0] == pytest.approx(alone.losses[0], rel=1e-4)
    assert heavy.losses[0] != pytest.approx(even.losses[0], rel=1e-3)


@needs_heavy
def test_a_bare_rejection_trains_below_the_posting_threshold_and_nothing_else():
    """👎 without a correction: "should not have been posted". Loss −log P(levels below the threshold); with the
    threshold at critical that is −log(1 − P(critical)): the rejected level drops, the others keep their order."""
    import torch

    from training.curriculum import CurriculumConfig, feedback_example
    from training.finetune import Encoded, example_loss

    record = {"code": "x", "review": "nit", "label": "critical", "predicted": "critical", "vote": -1,
              "probabilities": {"critical": 0.7, "major": 0.2, "minor": 0.06, "trivial": 0.04}}
    posted_at_minor = feedback_example(record, CurriculumConfig())  # the default threshold: minor
    assert posted_at_minor.meta["allowed"] == ["trivial"] and posted_at_minor.label == "trivial"
    rejected = feedback_example(record, CurriculumConfig(threshold="critical"))
    assert rejected.meta["rejected"] == "critical" and rejected.label == "major"  # runner-up kept for bookkeeping
    assert rejected.meta["allowed"] == ["major", "minor", "trivial"]
    cfg = config(label_smoothing=0.1, distill_alpha=1.0)
    enc = Encoded(ids=[], keep=1, target=1, soft=[0.0, 0.6, 0.3, 0.1], weight=1.0, allowed=[1, 2, 3])
    scores = torch.tensor([2.0, 0.5, 0.0, -1.0], requires_grad=True)
    loss = example_loss(scores, enc, cfg)
    q = torch.softmax(scores.detach(), dim=-1)
    assert loss.item() == pytest.approx(-torch.log(1 - q[0]).item(), rel=1e-6)
    loss.backward()
    stepped = torch.softmax(scores.detach() - 0.5 * scores.grad, dim=-1)
    assert stepped[0] < q[0]  # the rejected level goes down
    assert stepped[1:].argsort().tolist() == q[1:].argsort().tolist()  # the other three keep their order
    below = Encoded(ids=[], keep=1, target=3, soft=None, weight=1.0, allowed=[3])  # threshold minor: trivial only
    scores.grad = None
    loss = example_loss(scores, below, cfg)
    assert loss.item() == pytest.approx(-torch.log(q[3]).item(), rel=1e-6)
    loss.backward()
    assert (scores.grad[:3] > 0).all() and scores.grad[3] < 0  # every level at or above the threshold goes down
    # the same scores as a confirmed "major" would also be pulled towards major in particular
    confirmed = Encoded(ids=[], keep=1, target=1, soft=None, weight=1.0)
    scores.grad = None
    example_loss(scores, confirmed, cfg).backward()
    assert scores.grad[1] < 0 and scores.grad[2] > 0


def test_curriculum_keeps_the_rejected_level_through_a_save(tmp_path):
    from training.curriculum import CurriculumConfig, feedback_example

    record = {"code": "x", "review": "nit", "label": "minor", "predicted": "minor", "vote": -1, "id": "f1",
              "probabilities": {"critical": 0.1, "major": 0.1, "minor": 0.6, "trivial": 0.2}}
    example = feedback_example(record, CurriculumConfig())
    dump_jsonl([example], tmp_path / "c.jsonl")
    again = load_jsonl(tmp_path / "c.jsonl")[0]
    assert again.meta["rejected"] == "minor" and "minor" not in again.acceptable
