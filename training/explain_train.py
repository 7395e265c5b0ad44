"""Train the explainer: a second LoRA adapter on the student's base that continues a rating with one sentence.

Why a second adapter rather than teaching the rating adapter to explain too: the rating adapter's figures were
measured and promoted as they are; a joint run would move them, and serving would still have to generate from
it. A separate adapter trains in minutes on two cores, loads beside the rating adapter on the same weights
(:mod:`bot.explainer`), and can be retrained or dropped without touching the rating.

Before training, the teacher's sentences on the training rules are re-rated by the severity student
(``--rerate-model``) and those it reads as another severity are dropped (:func:`consistent_items`).

The loop reads top to bottom: load the base (the cached HF conversion of the GGUF) → add LoRA on the upper
layers → encode each item exactly as serving tokenises it (instruction with BOS, body, target sentence — three
pieces, tokenised apart) → for each optimizer step: the mean token cross-entropy of the target sentences of
``grad_accum`` items, step, checkpoint → save the peft adapter → export it to GGUF → write the manifest.
Loss is on the sentence tokens only; the prompt is context. Logits are computed only at those positions (the
base's 262k-word output layer is the costliest part of a pass).

    python -m training.explain_train --out runs/explain --examples 800 --ruff-share 0.4 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bot import explain
from bot.errors import SieveError, TrainingError
from training.explain_data import Item


def _opt(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class ExplainConfig:
    """Hyper-parameters of one explainer run; saved in the manifest."""

    base: str = _opt("gemma3-270m", "the student's base: 'gemma3-270m', 'smollm2' or a .gguf path")
    rank: int = _opt(16, "LoRA rank r")
    alpha: int = _opt(32, "LoRA alpha (scale alpha / r)")
    dropout: float = _opt(0.05, "dropout on the LoRA input")
    targets: tuple[str, ...] = _opt(("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                                    "module names that get LoRA matrices")
    freeze_layers: int = _opt(6, "bottom decoder layers without LoRA (no backward pass through them)")
    lr: float = _opt(1e-3, "peak learning rate (AdamW)")
    examples: int = _opt(1200, "training items drawn from the teacher's (same share per tool)")
    epochs: float = _opt(1.0, "passes over the drawn items")
    grad_accum: int = _opt(8, "items per optimizer step (micro-batch 1)")
    warmup: float = _opt(0.05, "share of steps with linear warm-up, then linear decay to 10%")
    seed: int = _opt(0, "seed for LoRA init, the draw and the order")
    checkpoint_every: int = _opt(20, "optimizer steps between checkpoints")
    max_tokens: int = _opt(224, "cap on prompt + sentence tokens per item")
    init_adapter: str = _opt("", "GGUF explainer adapter to start from (same base, rank, targets, frozen layers)")
    threads: int = _opt(0, "torch CPU threads (0: torch's default)")
    rerate_model: str = _opt("default", "severity student that re-rates the teacher's sentences ('' for none)")
    contrast: bool = _opt(False, "add, for drawn findings whose sentences read as different levels, copies rated "
                                 "otherwise and taught the sentence that reads as that level (explain_data.contrasts)")

    def to_json(self) -> dict:
        data = asdict(self)
        data["targets"] = list(self.targets)
        return data


@dataclass
class Encoded:
    ids: list[int]
    n_target: int  # the last n_target ids are the sentence (its loss positions)


def encode(item: Item, tokenizer, max_tokens: int) -> Encoded:
    """Instruction (with BOS) + body + sentence, each tokenised on its own as :mod:`bot.explainer` does."""
    prefix = tokenizer(explain.INSTRUCTION, add_special_tokens=True)["input_ids"]
    body = tokenizer(explain.render_body(item.request()), add_special_tokens=False)["input_ids"]
    target = tokenizer(explain.target_text(item.target), add_special_tokens=False)["input_ids"]
    room = max(16, max_tokens - len(prefix) - len(target))
    return Encoded(ids=prefix + body[-room:] + target, n_target=len(target))


def item_loss(model, enc: Encoded, device):
    """Mean cross-entropy of the sentence tokens given everything before them."""
    import torch

    ids = torch.tensor([enc.ids], device=device)
    out = model(input_ids=ids, logits_to_keep=enc.n_target + 1)
    logits = out.logits[0, :-1].float()  # position t predicts token t+1
    return torch.nn.functional.cross_entropy(logits, ids[0, -enc.n_target:])


def train(items: list[Item], config: ExplainConfig, out_dir: Path) -> dict:
    """Train on ``items`` (each with a target); writes ``out_dir/adapter`` and checkpoints; returns run stats."""
    import torch

    from training.base import load_base
    from training.checkpoints import Progress, load_checkpoint, save_checkpoint
    from training.distributed import accelerator_at
    from training.finetune import _order, _schedule, add_lora

    usable = [item for item in items if item.target]
    if not usable:
        raise TrainingError("no items with a teacher's sentence", hint="build them with training.explain_data")
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    accelerator = accelerator_at("no")
    model, tokenizer = load_base(config.base)
    model = add_lora(model, config)
    if config.init_adapter:
        from training.export import import_adapter

        import_adapter(model, Path(config.init_adapter), base=config.base)
    encoded = [encode(item, tokenizer, config.max_tokens) for item in usable]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    steps = max(1, int(config.epochs * len(encoded) / config.grad_accum))
    order = _order(len(encoded), steps, config.grad_accum, config.seed)
    resume = (out_dir / "checkpoint" / "state.json").is_file()
    start, losses = load_checkpoint(accelerator.unwrap_model(model), optimizer, out_dir) if resume else (0, [])
    bar = Progress(steps, True)
    bar.begin(start)
    began = time.monotonic()
    model.train()
    for step in range(start, steps):
        for group in optimizer.param_groups:
            group["lr"] = config.lr * _schedule(step, steps, config.warmup)
        batch = [encoded[i] for i in order[step * config.grad_accum: (step + 1) * config.grad_accum]]
        total = 0.0
        for enc in batch:
            loss = item_loss(model, enc, accelerator.device) / len(batch)
            accelerator.backward(loss)
            total += float(loss.detach())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(total)
        bar.update(step + 1, sum(losses[-10:]) / len(losses[-10:]), len(batch))
        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and step + 1 < steps:
            save_checkpoint(accelerator, model, optimizer, out_dir, step + 1, losses)
    accelerator.unwrap_model(model).save_pretrained(out_dir / "adapter")
    save_checkpoint(accelerator, model, optimizer, out_dir, steps, losses)
    seconds = time.monotonic() - began
    return {"steps": steps, "items": len(encoded), "seconds": round(seconds, 1),
            "seconds_per_item": round(seconds / max(1, (steps - start) * config.grad_accum), 3),
            "trainable_params": sum(p.numel() for p in params), "losses": [round(x, 4) for x in losses],
            "mean_prompt_tokens": round(sum(len(e.ids) - e.n_target for e in encoded) / len(encoded), 1),
            "mean_sentence_tokens": round(sum(e.n_target for e in encoded) / len(encoded), 1)}


def write_manifest(folder: Path, *, config: ExplainConfig, adapter: Path, data_hash: str, run: dict,
                   metrics: dict, command: str) -> Path:
    """The explainer's manifest: base and adapter hashes, the explanation prompt version, data hash, config,
    run figures, held-out metrics, library versions."""
    from datetime import UTC, datetime

    from training.export import base_gguf_path, sha256_file
    from training.registry import library_versions

    base_path = base_gguf_path(config.base)
    manifest = {
        "name": "explain", "task": "explain",
        "base": {"name": config.base, "file": base_path.name, "sha256": sha256_file(base_path)},
        "adapter": {"file": adapter.name, "sha256": sha256_file(adapter), "bytes": adapter.stat().st_size},
        "prompt_version": explain.EXPLAIN_PROMPT_VERSION, "data_hash": data_hash,
        "hyperparameters": config.to_json(), "training": {k: v for k, v in run.items() if k != "losses"},
        "losses": run.get("losses", []), "metrics": metrics, "library_versions": library_versions(),
        "command": command, "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """Build the teacher's items, train on the training rules, export, write the manifest (metrics come from
    ``benchmarks/explanations.py --offline --manifest``)."""
    parser = argparse.ArgumentParser(prog="python -m training.explain_train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, adapter, GGUF)")
    parser.add_argument("--examples", type=int, default=ExplainConfig.examples)
    parser.add_argument("--epochs", type=float, default=ExplainConfig.epochs)
    parser.add_argument("--base", default=ExplainConfig.base)
    parser.add_argument("--ruff", default="ruff", help="ruff executable whose catalogue is read")
    parser.add_argument("--init-adapter", default="", help="explainer adapter.gguf to continue from")
    parser.add_argument("--skip", type=Path, help="items.jsonl of an earlier run: its items are not drawn again")
    parser.add_argument("--lr", type=float, default=ExplainConfig.lr)
    parser.add_argument("--ruff-share", type=float, default=None, help="share of the items drawn from ruff "
                        "(default: the same share from every tool)")
    parser.add_argument("--threads", type=int, default=ExplainConfig.threads, help="torch CPU threads")
    parser.add_argument("--contrast", action="store_true",
                        help="add severity-contrast copies of the drawn findings (needs --rerate-model)")
    parser.add_argument("--rerate-model", default=ExplainConfig.rerate_model,
                        help="severity student whose re-rating of a teacher's sentence must land within one level "
                        "of the finding's rating ('' keeps every sentence)")
    args = parser.parse_args(argv)
    # Measured here on 2 shared cores (load ≈5): 2-3 s per item with passive OpenMP threads, 5-7 s with spinning
    # ones; torch reads the variable when it loads, so set it before the first import.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        return _run(args, argv)
    except SieveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def _run(args, argv) -> int:
    from bot.reviewers.origin import ruff_catalogue
    from training import explain_data
    from training.export import export_adapter

    config = ExplainConfig(base=args.base, examples=args.examples, epochs=args.epochs, lr=args.lr,
                           init_adapter=args.init_adapter, threads=args.threads, rerate_model=args.rerate_model,
                           contrast=args.contrast)
    if config.contrast and not config.rerate_model:
        raise TrainingError("--contrast needs a severity student to re-rate the sentences",
                            hint="drop --rerate-model '' or --contrast")
    rules = ruff_catalogue(args.ruff)
    if not rules:
        raise TrainingError("ruff's rule catalogue is unavailable", hint="pass --ruff PATH to a ruff >= 0.5")
    train_items, _ = explain_data.split(explain_data.build(rules.values()))
    if args.skip:
        seen = {json.loads(line)["id"] for line in args.skip.read_text(encoding="utf-8").splitlines() if line}
        train_items = [item for item in train_items if item.id not in seen]
    (args.out).mkdir(parents=True, exist_ok=True)
    teacher_filter = None
    if config.rerate_model:
        train_items, teacher_filter = consistent_items(train_items, config, args.out)
        print(json.dumps({"teacher_filter": teacher_filter}), file=sys.stderr)
    drawn = explain_data.sample(train_items, config.examples, config.seed, args.ruff_share)
    contrast_counts = None
    if config.contrast:
        with cached_rerater(config, args.out) as rerate:
            extra, contrast_counts = explain_data.contrasts(drawn, rerate, progress=_progress("contrast sentences"))
        print(json.dumps({"contrast": contrast_counts}), file=sys.stderr)
        drawn += extra
    random.Random(config.seed).shuffle(drawn)
    (args.out / "items.jsonl").write_text("".join(json.dumps(asdict(i)) + "\n" for i in drawn), encoding="utf-8")
    run = train(drawn, config, args.out)
    if teacher_filter:
        run["teacher_filter"] = teacher_filter
    if contrast_counts:
        run["contrast"] = contrast_counts
    adapter = export_adapter(args.out / "adapter", args.out / "explain" / "adapter.gguf", base=config.base)
    write_manifest(args.out / "explain", config=config, adapter=adapter, data_hash=explain_data.data_hash(drawn),
                   run=run, metrics={}, command="python -m training.explain_train " + " ".join(argv or sys.argv[1:]))
    print(json.dumps({k: v for k, v in run.items() if k != "losses"}))
    return 0


def _progress(what: str):
    began = time.monotonic()

    def report(done: int, total: int) -> None:
        print(f"re-rated {done}/{total} {what} ({time.monotonic() - began:.0f} s)", file=sys.stderr)

    return report


@contextlib.contextmanager
def cached_rerater(config: ExplainConfig, out_dir: Path):
    """(code, text, origin) triples → the severity ``config.rerate_model`` gives each sentence read alone
    (:func:`training.explain_eval.rerater`), remembered in ``out_dir/rerated.jsonl`` so a resumed run does not
    rate again. The model is closed on leaving."""
    from bot.models import resolve_model
    from bot.rater.llamacpp import LlamaCppRater
    from training.explain_eval import rerater

    cache_path = out_dir / "rerated.jsonl"
    cache: dict[str, str] = {}
    if cache_path.is_file():
        for line in cache_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                cache[row["key"]] = row["severity"]
    options = resolve_model(config.rerate_model).rater_options()
    rater = LlamaCppRater(**options, n_threads=config.threads or None)
    rerate_live = rerater(rater)

    def rerate(triples: list[tuple[str, str, str]]) -> list[str]:
        keys = [json.dumps(list(t)) for t in triples]
        missing = [t for t, k in zip(triples, keys) if k not in cache]
        fresh = rerate_live(missing)
        with cache_path.open("a", encoding="utf-8") as handle:
            for triple, severity in zip(missing, fresh):
                key = json.dumps(list(triple))
                cache[key] = severity
                handle.write(json.dumps({"key": key, "severity": severity}) + "\n")
        return [cache[k] for k in keys]

    rerate.model_id = options["model_id"]
    try:
        yield rerate
    finally:
        rater.close()


def consistent_items(items: list[Item], config: ExplainConfig, out_dir: Path) -> tuple[list[Item], dict]:
    """The training items with every teacher's sentence that the severity student ``config.rerate_model`` reads
    as another severity cleared (:func:`training.explain_data.keep_consistent`)."""
    from training.explain_data import keep_consistent

    with cached_rerater(config, out_dir) as rerate:
        kept, counts = keep_consistent(items, rerate, progress=_progress("teacher sentences"))
        counts["rater"] = rerate.model_id
    (out_dir / "teacher_filter.json").write_text(json.dumps(counts, indent=1) + "\n", encoding="utf-8")
    return kept, counts


if __name__ == "__main__":
    raise SystemExit(main())
