"""Preference losses (KTO / DPO over the four label scores): kinds of feedback rows, gradient directions, the
reference, and one real training run per loss on the SmolLM2 base (its top two layers)."""

from __future__ import annotations

import importlib.util
import math

import pytest

from bot.errors import TrainingError
from training.curriculum import CurriculumConfig, feedback_example
from training.preference import kind_of

HEAVY = all(importlib.util.find_spec(m) for m in ("torch", "transformers", "peft", "accelerate"))
needs_heavy = pytest.mark.skipif(not HEAVY, reason="training extras (torch, transformers, peft) not installed")
PROBS = {"critical": 0.1, "major": 0.2, "minor": 0.6, "trivial": 0.1}


def row(vote: int, correction: str | None = None, predicted: str = "minor") -> dict:
    label = correction or predicted
    return {"code": "", "review": "D401 First line of docstring should be in imperative mood", "label": label,
            "predicted": predicted, "vote": vote, "correction": correction, "probabilities": PROBS, "id": "f"}


def kinds(preference: str) -> list[tuple[str, int | None]]:
    out = []
    for record in (row(1), row(-1), row(-1, "trivial"), row(1, "minor")):
        e = feedback_example(record, CurriculumConfig())
        out.append(kind_of(e.meta, e.label, preference))
    out.append(kind_of({}, "major", preference))  # a dataset item: never a preference term
    return out


def test_each_feedback_row_gets_its_kind():
    assert kinds("unlikelihood") == [("ce", None), ("reject", 2), ("ce", None), ("ce", None), ("ce", None)]
    assert kinds("kto") == [("good", None), ("bad", 2), ("good", None), ("good", None), ("ce", None)]
    # DPO: only a correction away from the posted level is a pair; rows without a pair fall back to KTO
    assert kinds("dpo") == [("good", None), ("bad", 2), ("pair", 2), ("good", None), ("ce", None)]


@needs_heavy
@pytest.mark.parametrize("kind,target,rejected", [("good", 3, None), ("bad", 0, 2), ("pair", 3, 2)])
def test_one_gradient_step_moves_the_labels_the_right_way(kind, target, rejected):
    import torch

    from training.preference import preference_loss

    ref = torch.log_softmax(torch.tensor([0.2, 0.5, 1.5, -0.3]), dim=-1)
    scores = torch.tensor([0.2, 0.5, 1.5, -0.3], requires_grad=True)
    loss = preference_loss(torch.log_softmax(scores, dim=-1), ref, kind, target, rejected, beta=1.0)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(2) if kind == "pair" else 0.5)  # at the reference: r = z = 0
    before = torch.softmax(scores.detach(), dim=-1)
    after = torch.softmax(scores.detach() - 1.0 * scores.grad, dim=-1)
    if kind in ("good", "pair"):
        assert after[target] > before[target]
    if kind in ("bad", "pair"):
        assert after[rejected] < before[rejected]


@needs_heavy
def test_a_bare_thumbs_down_under_kto_lowers_every_level_it_rules_out():
    """A 👎 on a major finding, threshold minor, allows trivial only: the mass on critical, major and minor falls
    together (the rejected level alone falling could hand its mass to critical)."""
    import torch

    from training.preference import preference_loss

    ref = torch.log_softmax(torch.tensor([0.2, 1.5, 0.5, -0.3]), dim=-1)
    scores = torch.tensor([0.2, 1.5, 0.5, -0.3], requires_grad=True)
    preference_loss(torch.log_softmax(scores, dim=-1), ref, "bad", 3, 1, beta=1.0, allowed=[3]).backward()
    before = torch.softmax(scores.detach(), dim=-1)
    after = torch.softmax(scores.detach() - 1.0 * scores.grad, dim=-1)
    assert after[:3].sum() < before[:3].sum() and after[3] > before[3]
    scores.grad = None  # the posted level alone: its mass falls, and some of it goes to critical
    preference_loss(torch.log_softmax(scores, dim=-1), ref, "bad", 3, 1, beta=1.0).backward()
    alone = torch.softmax(scores.detach() - 1.0 * scores.grad, dim=-1)
    assert alone[1] < before[1] and alone[0] > before[0]


@needs_heavy
def test_dpo_ignores_the_normaliser_and_kto_does_not():
    """Why the four-way softmax matters for KTO (and why TRL's vocabulary-normalised scores do not fit it):
    the same label logits inside a vocabulary that holds more or less mass elsewhere."""
    import torch

    from training.preference import preference_loss

    labels = torch.tensor([0.2, 0.5, 1.5, -0.3])
    ref_labels = torch.tensor([0.1, 0.5, 1.0, 0.0])

    def vocab_logq(label_logits, rest):  # log-probs of the four label tokens in a 6-token vocabulary
        return torch.log_softmax(torch.cat([label_logits, torch.tensor([rest, rest])]), dim=-1)[:4]

    four, four_ref = torch.log_softmax(labels, dim=-1), torch.log_softmax(ref_labels, dim=-1)
    vocab, vocab_ref = vocab_logq(labels, 3.0), vocab_logq(ref_labels, 0.0)
    dpo = [preference_loss(q, r, "pair", 3, 2, 1.0).item() for q, r in ((four, four_ref), (vocab, vocab_ref))]
    kto = [preference_loss(q, r, "good", 3, None, 1.0).item() for q, r in ((four, four_ref), (vocab, vocab_ref))]
    assert dpo[0] == pytest.approx(dpo[1], abs=1e-6)
    assert abs(kto[0] - kto[1]) > 0.05


@needs_heavy
def test_a_preference_example_without_its_reference_is_a_clear_error():
    import torch

    from training.finetune import Encoded, FinetuneConfig, example_loss

    enc = Encoded(ids=[], keep=1, target=1, soft=None, weight=1.0, kind="good")
    with pytest.raises(TrainingError, match="no reference scores"):
        example_loss(torch.zeros(4), enc, FinetuneConfig(preference="kto"))


@needs_heavy
def test_an_unknown_preference_is_a_clear_error(tmp_path):
    from training.examples import Example
    from training.finetune import FinetuneConfig, finetune

    with pytest.raises(TrainingError, match="unknown preference 'ipo'"):
        finetune([Example(code="", review="r", label="minor")], FinetuneConfig(preference="ipo"), tmp_path)


def _config(**overrides):
    from training.finetune import FinetuneConfig

    base = {"rank": 4, "alpha": 8, "dropout": 0.0, "lr": 3e-3, "grad_accum": 2, "max_steps": 4, "warmup": 0.0,
            "bf16": False, "freeze_layers": 28, "checkpoint_every": 0, "distill_alpha": 0.0, "label_smoothing": 0.0}
    return FinetuneConfig(**{**base, **overrides})


@pytest.mark.slow
@needs_heavy
def test_reference_is_the_starting_student_and_each_loss_trains_its_way(tmp_path):
    """Real SmolLM2: the stored reference equals the start's label log-probabilities (so each preference term
    starts at r = z = 0), and a few steps of each loss move the reacted finding the way its row says."""
    import torch
    from peft import PeftModel

    from training.base import load_base
    from training.finetune import LabelPlan, add_lora, encode, finetune, label_probabilities, prefix_ids
    from training.preference import attach_reference

    bad = feedback_example(row(-1, predicted="critical"), CurriculumConfig())  # 👎 on "critical" (the base's pick)
    pair = feedback_example(row(-1, "trivial", "critical"), CurriculumConfig())  # /sieve severity trivial
    model, tokenizer = load_base("smollm2")
    start = label_probabilities(model, tokenizer, [bad])[0]
    peft_model = add_lora(model, _config())
    plan, prefix = LabelPlan.build(tokenizer), prefix_ids(tokenizer)
    encs = [encode(e, tokenizer, plan, prefix, 384, preference="dpo") for e in (bad, pair)]
    assert attach_reference(peft_model, encs, plan, prefix, torch.device("cpu")) == 2
    assert [(e.kind, e.rejected) for e in encs] == [("bad", 0), ("pair", 0)]
    assert encs[0].ref == pytest.approx([math.log(start[k]) for k in ("critical", "major", "minor", "trivial")],
                                        abs=1e-4)
    frozen = [encode(bad, tokenizer, plan, prefix, 384, preference="kto")]  # through the stored hidden states
    assert attach_reference(peft_model, frozen, plan, prefix, torch.device("cpu"), freeze_layers=28) == 1
    assert frozen[0].ref == pytest.approx(encs[0].ref, abs=0.05) and frozen[0].embeds is not None
    checks = {"kto": (bad, lambda q: q["critical"] < start["critical"] - 0.05),
              "dpo": (pair, lambda q: q["trivial"] / q["critical"] > 2 * start["trivial"] / start["critical"]),
              "unlikelihood": (bad, lambda q: q["critical"] < start["critical"] - 0.05)}
    for preference, (item, moved) in checks.items():
        result = finetune([item], _config(preference=preference, grad_accum=1), tmp_path / preference,
                          progress=False)
        model, _ = load_base("smollm2")
        after = label_probabilities(PeftModel.from_pretrained(model, str(result.peft_dir)), tokenizer, [item])[0]
        assert moved(after), (preference, start, after)
        if preference != "unlikelihood":  # the first step starts at the reference: r = z = 0
            assert result.losses[0] == pytest.approx(0.5 if preference == "kto" else math.log(2), abs=1e-3)
