"""LoRA fine-tuning of the student on the severity task (KD-LoRA: gold labels plus a teacher's probabilities).

What the loss scores — exactly what the llama.cpp rater scores: the prompt from :func:`bot.prompt.render`
(prefix + body + answer prefix, ending at ``{"issue_type": "``), then for each of the four labels the
**sum of the log-probabilities of the label's own tokens** (``label_continuation`` minus its closing
``"}``; in SmolLM2 ``trivial`` is two tokens ``tr`` + ``ivial``, the other three are one token). The four sums
are softmax-normalised into the model's distribution over levels. The loss per example is

    CE(gold, label smoothing ε) + distill_alpha · T² · KL(teacher soft ‖ student at temperature T)

except for a bare rejection from feedback (👎 without a correction, ``meta["rejected"]``), which says "this
should not have been posted": its loss is the unlikelihood −log P(allowed), the probability left on the levels
the 👎 allows (``meta["allowed"]``: those at or below the level team memory reads the 👎 as asking for, i.e.
below the posting threshold), which pushes the ruled-out levels down and keeps the order of the ones left
(training it on the runner-up of the model that was rejected, as earlier versions did, taught that model's own
bias back to it; ruling out the posted level alone let a 👎'd major finding move to critical). ``preference`` ``kto`` / ``dpo`` train feedback
rows with KTO (unpaired 👍/👎) and DPO (a correction's pair) against the starting student instead
(:mod:`training.preference`). Every example's loss is
weighted by the example's curriculum weight, normalised by the weights of its accumulated batch (micro-batch
1: a weighted mean inside one example would divide the weight back out).

Why the shared prefix is run without gradient: the system text and task are identical for every finding
(≈170 tokens). We compute its key/value cache with the current adapter once per optimizer step (the weights
only change there, so the forward pass is exact) and backpropagate through the per-finding part only. That
makes a step ≈2× cheaper; the LoRA still adapts how the body and answer attend to the prefix.

The loop reads top to bottom: load base → add LoRA → encode examples → for each optimizer step: refresh
prefix cache, accumulate weighted losses, step, checkpoint. ``accelerate.Accelerator`` owns devices, mixed
precision (bf16 autocast on CPU when supported) and data parallelism over processes (``accelerate launch``:
:mod:`training.distributed` says which process trains on which examples and how their losses add up).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bot.errors import TrainingError
from bot.prompt import MAX_CODE_CHARS, PROMPT_VERSION, render, truncate_code
from bot.severity import LABELS
from training.base import load_base
from training.checkpoints import Progress
from training.checkpoints import load_checkpoint as _load_checkpoint
from training.checkpoints import save_checkpoint as _save_checkpoint
from training.curriculum import allowed_levels
from training.distributed import make_accelerator, seed_example, share, summed
from training.examples import Example
from training.frozen import precompute_hidden, top_layers
from training.levers import enable_checkpointing, read_only
from training.preference import PREFERENCE_KINDS, PREFERENCES, attach_reference, kind_of, preference_loss


def _opt(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class FinetuneConfig:
    """Hyper-parameters of one LoRA run; saved next to the adapter so a run can be reproduced."""

    base: str = _opt("smollm2", "'smollm2' (packaged GGUF), 'gemma3-270m', a path to a .gguf, or an HF id/dir")
    rank: int = _opt(16, "LoRA rank r")
    alpha: int = _opt(32, "LoRA alpha (scale = alpha / rank)")
    dropout: float = _opt(0.05, "dropout on the LoRA input")
    targets: tuple[str, ...] = _opt(("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                                    "module names that get LoRA matrices")
    lr: float = _opt(2e-4, "peak learning rate (AdamW)")
    epochs: float = _opt(1.0, "passes over the examples (fractions allowed)")
    max_steps: int | None = _opt(None, "optimizer steps; overrides epochs when set")
    grad_accum: int = _opt(8, "examples per optimizer step (micro-batch is 1)")
    warmup: float = _opt(0.05, "fraction of steps with linear warm-up, then linear decay to 10%")
    distill_alpha: float = _opt(0.5, "weight of the KL term towards the teacher's soft labels")
    temperature: float = _opt(1.0, "distillation temperature T")
    label_smoothing: float = _opt(0.1, "label smoothing ε of the gold cross-entropy")
    bf16: bool = _opt(True, "bf16 autocast on CUDA (and on CPUs with AMX); fp32 elsewhere, where it is faster")
    seed: int = _opt(0, "seed for LoRA init and data order")
    checkpoint_every: int = _opt(100, "optimizer steps between checkpoints (0: only at the end)")
    max_prompt_tokens: int = _opt(384, "cap on prompt tokens; longer bodies lose their start (code head)")
    freeze_layers: int = _opt(0, "bottom decoder layers left without LoRA; their outputs are computed once per "
                                 "example and reused every epoch (training then runs only the layers above)")
    code_chars: int = _opt(MAX_CODE_CHARS, "characters of code kept in the prompt (the tail: the commented line); "
                                           "0 rates on the review text alone. Recorded in the manifest: the "
                                           "rater keeps the same")
    init_adapter: str = _opt("", "GGUF LoRA adapter to start from (warm start: the parent's adapter.gguf; same base, "
                                 "rank, alpha, targets and frozen layers); empty: a fresh LoRA")
    gradient_checkpointing: bool = _opt(False, "recompute each layer's activations in the backward pass instead of "
                                               "keeping them (less memory, more time; see docs/training.md)")
    template: str = _opt("", "prompt template (bot.prompt.TEMPLATES); empty: the base's own (chatml for SmolLM2, "
                             "plain for the Gemma 3 270M base model)")
    preference: str = _opt("unlikelihood", "how feedback rows train: 'unlikelihood' (👍/corrections hard labels, bare 👎 "
                                           "−log(1−P)), 'kto' (KTO on every row), 'dpo' (DPO on corrections, KTO on the "
                                           "rest); see training.preference")
    preference_beta: float = _opt(1.0, "β of the KTO / DPO terms (log-ratios to the starting student)")

    def prompt_template(self) -> str:
        return self.template or template_for(self.base)

    def to_json(self) -> dict:
        data = asdict(self)
        data["targets"] = list(self.targets)
        return data


@dataclass
class FinetuneResult:
    peft_dir: Path
    steps: int
    seconds: float
    seconds_per_step: float
    peak_rss_mb: float
    trainable_params: int
    total_params: int
    final_loss: float
    losses: list[float] = field(default_factory=list)  # mean loss per optimizer step


# ----------------------------------------------------------------------------- base model


def template_for(base: str) -> str:
    """The prompt template a base model is served with: its packaged default, else chatml."""
    from bot.models import PACKAGED_BASES
    from training.export import ALIASES

    return PACKAGED_BASES.get(ALIASES.get(str(base).lower(), ""), "chatml")


# ----------------------------------------------------------------------------- encoding


@dataclass
class LabelPlan:
    """How the four labels are read from one forward pass.

    ``tokens[label]`` are the label's token ids after the answer prefix. The sequence fed to the model is
    ``body + extension`` where ``extension`` is the longest label's tokens but its last; a label whose own
    prefix lies on the extension is scored from that pass (all four, for SmolLM2 and Gemma).
    """

    tokens: dict[str, list[int]]
    extension: list[int]

    @classmethod
    def build(cls, tokenizer, template: str = "chatml") -> LabelPlan:
        probe = render("", "", template).text
        probe_ids = tokenizer(probe, add_special_tokens=False)["input_ids"]
        tokens = {}
        for label in LABELS:
            full = tokenizer(probe + label, add_special_tokens=False)["input_ids"]
            if full[: len(probe_ids)] != probe_ids:
                raise TrainingError(f"label {label!r} merges with the answer prefix in this tokenizer",
                                    hint="use a tokenizer that splits the quote from the label")
            tokens[label] = full[len(probe_ids):]
        extension = max((t[:-1] for t in tokens.values()), key=len)
        for label, ids in tokens.items():
            if ids[:-1] != extension[: len(ids) - 1]:
                raise TrainingError(f"labels need more than one scoring pass ({label!r})",
                                    hint="this tokenizer splits two labels into different multi-token paths")
        return cls(tokens=tokens, extension=extension)


@dataclass
class Encoded:
    ids: list[int]  # body + answer prefix + label extension (the prefix is cached separately)
    keep: int  # positions scored, counted from the end: the last answer-prefix token + the extension
    target: int
    soft: list[float] | None
    weight: float
    embeds: object = None  # hidden states entering the first trained layer (with freeze_layers)
    allowed: list[int] | None = None  # a bare rejection (reject, bad): indices of the levels still possible
    kind: str = "ce"  # ce, reject (unlikelihood), good / bad (KTO), pair (DPO): training.preference.kind_of
    rejected: int | None = None  # the rejected level's index (bad, pair)
    ref: list[float] | None = None  # the starting student's label log-probabilities (preference kinds)


def prefix_ids(tokenizer, template: str = "chatml") -> list[int]:
    """The shared prompt prefix, with the BOS token when the tokenizer adds one (Gemma; llama.cpp does too)."""
    return tokenizer(render("", "", template).prefix, add_special_tokens=True)["input_ids"]


def encode(example: Example, tokenizer, plan: LabelPlan, prefix: list[int], max_tokens: int,
           template: str = "chatml", code_chars: int = MAX_CODE_CHARS, preference: str = "unlikelihood") -> Encoded:
    """Tokenise one example the way serving does: the whole rendered prompt, split after the prefix."""
    code = truncate_code(example.code, code_chars)[0] if code_chars else ""
    parts = render(code, example.review, template, example_origin(example))
    ids = tokenizer(parts.text, add_special_tokens=True)["input_ids"]
    if ids[: len(prefix)] != prefix:
        raise TrainingError("the prompt prefix tokenises differently inside a full prompt",
                            hint="the prompt template must end its prefix on a token boundary")
    body = ids[len(prefix):]
    budget = max(16, max_tokens - len(prefix))
    if len(body) > budget:
        body = body[-budget:]
    soft = [example.soft[label] for label in LABELS] if example.soft else None
    kind, rejected = kind_of(example.meta, example.label, preference)
    left = allowed_levels(example) if kind in ("reject", "bad") else None  # a bare 👎: the levels it leaves
    allowed = [LABELS.index(x) for x in left] if left else None
    return Encoded(ids=body + plan.extension, keep=len(plan.extension) + 1, target=LABELS.index(example.label),
                   soft=soft if kind == "ce" else None, weight=float(example.weight), allowed=allowed, kind=kind,
                   rejected=rejected)


def example_origin(example: Example) -> str:
    """The origin line an item shows the student (``meta["origin"]``, set by :mod:`training.corpus`)."""
    return str(example.meta.get("origin") or "")


def label_scores(logits, enc: Encoded, plan: LabelPlan):
    """The four whole-label log-prob sums (unnormalised over labels) from one pass's logits [seq, vocab]."""
    import torch

    logp = torch.log_softmax(logits[-enc.keep:].float(), dim=-1)
    rows = []
    for label in LABELS:
        toks = plan.tokens[label]
        rows.append(sum(logp[i, t] for i, t in enumerate(toks)))
    return torch.stack(rows)


def example_loss(scores, enc: Encoded, config: FinetuneConfig):
    """Label-smoothed CE against gold plus the weighted KL towards the teacher (if the example has one);
    for a bare rejection, −log of the probability left on the levels it allows."""
    import torch

    logq = torch.log_softmax(scores, dim=-1)
    if enc.kind in PREFERENCE_KINDS:
        if enc.ref is None:
            raise TrainingError("a preference example has no reference scores",
                                hint="attach them with training.preference.attach_reference before training")
        ref = torch.tensor(enc.ref, dtype=logq.dtype, device=logq.device)
        return preference_loss(logq, ref, enc.kind, enc.target, enc.rejected, config.preference_beta, enc.allowed)
    if enc.allowed:
        return -torch.logsumexp(logq[enc.allowed], dim=0)
    eps = config.label_smoothing
    target = torch.full_like(logq, eps / len(LABELS))
    target[enc.target] += 1.0 - eps
    loss = -(target * logq).sum()
    if enc.soft is not None and config.distill_alpha > 0:
        t = config.temperature
        teacher = torch.tensor(enc.soft, dtype=logq.dtype, device=logq.device).clamp_min(1e-8)
        student = torch.log_softmax(scores / t, dim=-1)
        loss = loss + config.distill_alpha * t * t * (teacher * (teacher.log() - student)).sum()
    return loss


# ----------------------------------------------------------------------------- model pieces


def add_lora(model, config: FinetuneConfig):
    from peft import LoraConfig, get_peft_model

    n_layers = model.config.num_hidden_layers
    if not 0 <= config.freeze_layers < n_layers:
        raise TrainingError(f"freeze_layers={config.freeze_layers} but the base has {n_layers} layers",
                            hint=f"use 0 to {n_layers - 1}")
    layers = list(range(config.freeze_layers, n_layers)) if config.freeze_layers else None
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(config.targets), task_type="CAUSAL_LM", bias="none",
                      layers_to_transform=layers)
    return get_peft_model(model, lora)


def prefix_cache(model, prefix, device):
    """Key/value cache of the shared prefix under the current adapter (no gradient, no dropout); read-only, so
    passes that continue from it never extend it (and gradient checkpointing may replay them).

    ``prefix`` is token ids, or hidden states (a tensor) when training runs the top layers only.
    """
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        if isinstance(prefix, list):
            out = model(input_ids=torch.tensor([prefix], device=device), use_cache=True, logits_to_keep=1)
        else:
            out = model(inputs_embeds=prefix[None].to(device, torch.float32), use_cache=True, logits_to_keep=1)
    model.train(was_training)
    return read_only(out.past_key_values)


def forward_scores(model, enc: Encoded, cache, plan: LabelPlan, device):
    """Four label scores for one encoded example, continuing from a copy of the prefix cache."""
    import torch

    past = copy.deepcopy(cache) if cache is not None else None
    if enc.embeds is not None:
        out = model(inputs_embeds=enc.embeds[None].to(device, torch.float32), past_key_values=past,
                    use_cache=past is not None, logits_to_keep=enc.keep)
    else:
        out = model(input_ids=torch.tensor([enc.ids], device=device), past_key_values=past,
                    use_cache=past is not None, logits_to_keep=enc.keep)
    return label_scores(out.logits[0], enc, plan)


def label_probabilities(model, tokenizer, examples: list[Example], max_tokens: int = 4096,
                        template: str = "chatml", code_chars: int = MAX_CODE_CHARS) -> list[dict[str, float]]:
    """Probability per label for each example (transformers side; used by the export parity check)."""
    import torch

    plan, prefix = LabelPlan.build(tokenizer, template), prefix_ids(tokenizer, template)
    device = next(model.parameters()).device
    model.eval()
    cache = prefix_cache(model, prefix, device)
    out = []
    with torch.no_grad():
        for example in examples:
            enc = encode(example, tokenizer, plan, prefix, max_tokens, template, code_chars)
            probs = torch.softmax(forward_scores(model, enc, cache, plan, device), dim=-1).tolist()
            out.append(dict(zip(LABELS, probs)))
    return out


# ----------------------------------------------------------------------------- the loop


def _order(n: int, steps: int, grad_accum: int, seed: int) -> list[int]:
    """Example indices for every micro-step: a fresh shuffle per epoch, reproducible from the seed."""
    order: list[int] = []
    epoch = 0
    while len(order) < steps * grad_accum:
        perm = list(range(n))
        random.Random(seed * 1000 + epoch).shuffle(perm)
        order.extend(perm)
        epoch += 1
    return order[: steps * grad_accum]


def _schedule(step: int, total: int, warmup: float) -> float:
    """Learning-rate factor: linear warm-up, then linear decay to 10% of the peak."""
    warm = max(1, int(total * warmup))
    if step < warm:
        return (step + 1) / warm
    return max(0.1, 1.0 - 0.9 * (step - warm) / max(1, total - warm))


def total_steps(n_examples: int, config: FinetuneConfig) -> int:
    if config.max_steps is not None:
        return int(config.max_steps)
    return max(1, math.ceil(config.epochs * n_examples / config.grad_accum))


def finetune(examples: list[Example], config: FinetuneConfig, out_dir: Path, *, resume: bool = False,
             progress: bool = True) -> FinetuneResult:
    """Train a LoRA adapter on ``examples``; writes ``out_dir/adapter`` (peft format) and returns its stats."""
    import torch

    if not examples:
        raise TrainingError("no training examples", hint="pass at least one Example")
    if config.preference not in PREFERENCES:
        raise TrainingError(f"unknown preference {config.preference!r}", hint=f"use one of: {', '.join(PREFERENCES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    accelerator = make_accelerator(config)
    model, tokenizer = load_base(config.base)
    model = add_lora(model, config)
    if config.gradient_checkpointing:
        enable_checkpointing(model)
    if config.init_adapter:
        from training.export import import_adapter

        import_adapter(model, Path(config.init_adapter), base=config.base)
    template = config.prompt_template()
    plan, prefix = LabelPlan.build(tokenizer, template), prefix_ids(tokenizer, template)
    encoded = [encode(e, tokenizer, plan, prefix, config.max_prompt_tokens, template, config.code_chars,
                      config.preference) for e in examples]
    attach_reference(model, encoded, plan, prefix, next(model.parameters()).device, config.freeze_layers)  # the start
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    steps = total_steps(len(encoded), config)
    mine = share(config.grad_accum, accelerator.process_index, accelerator.num_processes)
    order = _order(len(encoded), steps, config.grad_accum, config.seed)
    start, losses = _load_checkpoint(accelerator.unwrap_model(model), optimizer, out_dir) if resume else (0, [])
    bar = Progress(steps, progress and accelerator.is_local_main_process)
    began = time.monotonic()
    context = prefix
    if config.freeze_layers:
        needed = sorted({order[s * config.grad_accum + i] for s in range(start, steps) for i in mine})
        context = precompute_hidden(model, [encoded[i] for i in needed], prefix, config.freeze_layers,
                                    accelerator.device)
        if bar.enabled:
            print(f"frozen layers computed for {len(needed)} examples in {time.monotonic() - began:.0f} s",
                  file=sys.stderr, flush=True)
    bar.begin(start)
    model.train()
    for step in range(start, steps):
        for group in optimizer.param_groups:
            group["lr"] = config.lr * _schedule(step, steps, config.warmup)
        first = step * config.grad_accum
        batch = [encoded[i] for i in order[first: first + config.grad_accum]]
        with top_layers(model, config.freeze_layers):
            losses.append(_train_step(model, optimizer, accelerator, batch, plan, context, config, first))
        bar.update(step + 1, sum(losses[-20:]) / len(losses[-20:]), len(batch))
        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and step + 1 < steps:
            _save_checkpoint(accelerator, model, optimizer, out_dir, step + 1, losses)
    seconds = time.monotonic() - began
    peft_dir = out_dir / "adapter"
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(peft_dir)
        (peft_dir / "sieve_finetune.json").write_text(json.dumps(
            {"config": config.to_json(), "prompt_version": PROMPT_VERSION, "template": template, "steps": steps,
             "processes": accelerator.num_processes}, indent=2))
    _save_checkpoint(accelerator, model, optimizer, out_dir, steps, losses)
    accelerator.wait_for_everyone()  # every process returns once the adapter is on disk
    total = sum(p.numel() for p in accelerator.unwrap_model(model).parameters())
    return FinetuneResult(peft_dir=peft_dir, steps=steps, seconds=seconds,
                          seconds_per_step=seconds / max(1, steps - start),
                          peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                          trainable_params=sum(p.numel() for p in params), total_params=total,
                          final_loss=losses[-1] if losses else float("nan"), losses=losses)


def _train_step(model, optimizer, accelerator, batch: list[Encoded], plan: LabelPlan, prefix,
                config: FinetuneConfig, first: int = 0) -> float:
    """One optimizer step over an accumulated (global) batch whose first example is the run's ``first``; this
    process trains on its share (:mod:`training.distributed`). Returns the batch's weighted mean loss."""
    cache = prefix_cache(model, prefix, accelerator.device)
    weight_sum = sum(e.weight for e in batch)
    if weight_sum <= 0:
        optimizer.zero_grad(set_to_none=True)
        return 0.0
    n = accelerator.num_processes  # DDP averages the processes' gradients: scale each share back up
    mine = share(len(batch), accelerator.process_index, n)
    total = 0.0
    for k, i in enumerate(mine):
        enc = batch[i]
        seed_example(config.seed, first + i)
        sync = accelerator.no_sync(model) if k < len(mine) - 1 else contextlib.nullcontext()
        with sync, accelerator.autocast():
            loss = example_loss(forward_scores(model, enc, cache, plan, accelerator.device), enc, config)
            scaled = loss * (enc.weight * n / weight_sum)
        accelerator.backward(scaled)
        total += float(scaled.detach()) / n
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return summed(accelerator, total)


# ----------------------------------------------------------------------------- the shipped default student


if __name__ == "__main__":  # the recipe entry point moved to training.recipe; kept for old commands
    from training.recipe import main as _recipe_main

    raise SystemExit(_recipe_main())
