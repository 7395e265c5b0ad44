"""Preference losses over the four label scores: KTO for unpaired 👍/👎, DPO where a correction gives a pair.

Feedback says one of three things about a posted comment: 👍 (the posted level was right: *desirable*), a bare 👎
("not that level": *undesirable*) and ``/sieve severity X`` (X, not the posted level: a *pair*). ``preference``
chooses how those rows train (items that are not feedback always train on gold cross-entropy + distillation):

* ``unlikelihood`` (the default): 👍 and corrections are hard labels (cross-entropy), a bare 👎 is
  −log P(allowed): the levels it leaves possible, below the posting threshold (training.curriculum).
* ``kto``: every feedback row is one KTO term over the label distribution, against the *reference* (the student
  the run starts from). With ``r(y) = log π(y|x) − log π_ref(y|x)`` and ``z = KL(π(·|x) ‖ π_ref(·|x))`` (detached)
  a desirable level costs ``1 − σ(β(r(y) − z))`` and an undesirable one ``1 − σ(β(z − r(y)))``. Over four labels the
  KL is exact and costs nothing, so the mismatched-pair estimate of the paper is not needed. A correction counts
  as desirable X.
* ``dpo``: a correction to X ≠ the posted level P is a pair: ``−log σ(β((r(X) − r(P))))``; 👍 and bare 👎 have no
  pair and take the KTO terms above.

The reference is the starting student's label log-probabilities, computed once (no gradient, dropout off) before
the first step and stored on the encoded example, so training runs one forward pass per item as before.

Why not TRL's ``KTOTrainer`` / ``DPOTrainer``: they score whole completions with log-probabilities normalised over the
vocabulary and run their own loop over a text dataset. Here the model is a four-way classifier read from label
tokens (softmax over the four label sums), trained with a cached shared prefix, frozen bottom layers computed
once, per-example curriculum weights normalised per accumulated batch, and replay items (cross-entropy +
distillation) mixed into the same steps — none of which those trainers do. DPO's loss is the same either way
(a per-prompt normaliser cancels in r(X) − r(P)); KTO's is not: its reward and KL reference point move with the
normaliser, so vocabulary-normalised KTO would reward mass that leaves the four labels altogether
(``tests/test_preference.py`` checks both facts).
"""

from __future__ import annotations

from bot.severity import LABELS

PREFERENCES = ("unlikelihood", "kto", "dpo")
PREFERENCE_KINDS = ("good", "bad", "pair")


def kind_of(meta: dict, label: str, preference: str) -> tuple[str, int | None]:
    """What one example trains — ``ce`` (gold), ``reject`` (unlikelihood), ``good`` / ``bad`` (KTO) or ``pair``
    (DPO) — and the index of its rejected level (None when it has none)."""
    rejected = meta.get("rejected")
    rejected = rejected if rejected in LABELS else None
    if preference == "unlikelihood" or ("vote" not in meta and rejected is None):
        return ("reject", LABELS.index(rejected)) if rejected else ("ce", None)
    if rejected is not None:
        return "bad", LABELS.index(rejected)
    posted, correction = meta.get("predicted"), meta.get("correction")
    if preference == "dpo" and correction in LABELS and posted in LABELS and correction != posted and label == correction:
        return "pair", LABELS.index(posted)
    return "good", None


def preference_loss(logq, ref, kind: str, target: int, rejected: int | None, beta: float,
                    allowed: list[int] | None = None):
    """The KTO or DPO term of one example from its label log-probabilities ``logq`` and the reference's ``ref``.
    A bare 👎 (``bad``) rules out every level not in ``allowed`` (default: the rejected one alone); its log-ratio
    is that of the ruled-out levels' total probability."""
    import torch
    import torch.nn.functional as F

    ratio = logq - ref
    if kind == "pair":
        return -F.logsigmoid(beta * (ratio[target] - ratio[rejected]))
    kl = (logq.exp() * ratio).sum().detach().clamp_min(0.0)
    if kind == "good":
        return 1.0 - torch.sigmoid(beta * (ratio[target] - kl))
    if kind == "bad":
        out = [i for i in range(logq.shape[-1]) if i not in allowed] if allowed else [rejected]
        bad = torch.logsumexp(logq[out], dim=0) - torch.logsumexp(ref[out], dim=0)
        return 1.0 - torch.sigmoid(beta * (kl - bad))
    raise ValueError(f"not a preference kind: {kind!r}")


def attach_reference(model, encoded: list, plan, prefix, device, freeze_layers: int = 0) -> int:
    """Store the current model's label log-probabilities on every preference example (``enc.ref``); returns how
    many. Run before the first optimizer step: the model then is the starting student. With frozen bottom layers
    the scores go through the same stored hidden states training reads (:mod:`training.frozen`), so the first
    step starts exactly at the reference."""
    import torch

    from training.finetune import forward_scores, prefix_cache
    from training.frozen import precompute_hidden, top_layers

    todo = [enc for enc in encoded if enc.kind in PREFERENCE_KINDS and enc.ref is None]
    if not todo:
        return 0
    was_training = model.training
    model.eval()
    context = precompute_hidden(model, todo, prefix, freeze_layers, device) if freeze_layers else prefix
    with torch.no_grad(), top_layers(model, freeze_layers):
        cache = prefix_cache(model, context, device)
        for enc in todo:
            enc.ref = torch.log_softmax(forward_scores(model, enc, cache, plan, device), dim=-1).tolist()
    model.train(was_training)
    return len(todo)
