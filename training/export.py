"""Export a peft LoRA adapter as a GGUF LoRA adapter that llama.cpp loads next to the base GGUF.

Why our own writer instead of llama.cpp's converter script: the project must not depend on a llama.cpp
checkout, and the conventions are few. They are (read from llama.cpp's adapter loader and converter):

* ``general.type = "adapter"``, ``adapter.type = "lora"``, ``adapter.lora.alpha`` (llama.cpp scales by
  alpha / rank, where rank comes from the tensors — the same ``lora_alpha / r`` peft uses);
* one pair per adapted matrix, named after the base tensor: ``blk.N.attn_q.weight.lora_a`` / ``.lora_b``;
* ``lora_a`` keeps peft's torch shape ``(r, in)`` and ``lora_b`` keeps ``(out, r)`` (GGUF reverses the
  dimension order, giving the ``ne`` llama.cpp checks against the base tensor);
* for LLaMA-family bases the GGUF converter permutes the rows of ``q_proj`` / ``k_proj`` for llama.cpp's
  rotary layout, so ``lora_b`` of those two gets the same row permutation (``lora_a`` acts on inputs and
  is unchanged). transformers undoes that permutation when it dequantises the GGUF for training.

Tensors are written as f16 (small; llama.cpp computes the LoRA product in f32 anyway).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from bot.errors import ModelError, TrainingError
from bot.models import packaged_base
from bot.prompt import MAX_CODE_CHARS, PROMPT_VERSION

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIASES = {"smollm2": "smollm2", "smollm2-135m": "smollm2", "gemma3-270m": "gemma3-270m", "gemma": "gemma3-270m"}


def base_gguf_path(base: str) -> Path:
    """The GGUF file behind a base name: packaged SmolLM2, packaged Gemma 3 270M, or a path to a .gguf."""
    key = ALIASES.get(str(base).lower())
    if key in ("smollm2", "gemma3-270m"):
        path = packaged_base(key)  # the bot's own lookup: one place knows where packaged bases live
    else:
        path = Path(base).expanduser()
        if path.suffix != ".gguf":
            raise ModelError(f"base {base!r} is not a GGUF file",
                             hint="use 'smollm2', 'gemma3-270m' or a path to a .gguf file")
    if not path.is_file():
        raise ModelError(f"base model file {path} does not exist", hint="install the model package or fix the path")
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _permute_rows(weight, n_head: int):
    """llama.cpp's rotary row order for q/k: per head, interleave the two halves (as its converter does)."""
    out, *rest = weight.shape
    return weight.reshape(n_head, 2, out // n_head // 2, *rest).swapaxes(1, 2).reshape(weight.shape)


def _read_peft(peft_dir: Path) -> tuple[dict, dict]:
    config_path = peft_dir / "adapter_config.json"
    weights_path = peft_dir / "adapter_model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise TrainingError(f"{peft_dir} is not a peft adapter folder",
                            hint="expected adapter_config.json and adapter_model.safetensors (from finetune())")
    from safetensors.numpy import load_file

    return json.loads(config_path.read_text()), load_file(str(weights_path))


def _base_meta(base_path: Path) -> dict:
    """Architecture, block count and head counts read from the base GGUF itself."""
    import gguf

    reader = gguf.GGUFReader(str(base_path))
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()

    def value(key: str) -> int:
        field = reader.fields.get(f"{arch}.{key}")
        return int(field.parts[-1][0]) if field is not None else 0

    return {"arch": arch, "n_blocks": value("block_count"), "n_head": value("attention.head_count"),
            "n_head_kv": value("attention.head_count_kv") or value("attention.head_count")}


def _gguf_name(name_map, hf_name: str) -> str:
    mapped = name_map.get_name(hf_name, try_suffixes=(".weight",))
    if mapped is None:
        raise TrainingError(f"cannot map adapter tensor {hf_name!r} to a GGUF tensor name",
                            hint="adapt only the attention and MLP projections of a supported base")
    return mapped


def export_adapter(peft_dir: Path, out_path: Path, *, base: str = "smollm2") -> Path:
    """Write ``peft_dir``'s LoRA A/B matrices as a GGUF LoRA adapter for ``base``; returns ``out_path``."""
    import gguf
    import numpy as np

    peft_dir, out_path = Path(peft_dir), Path(out_path)
    config, tensors = _read_peft(peft_dir)
    meta = _base_meta(base_gguf_path(base))
    name_map = gguf.get_tensor_name_map(_arch_enum(meta["arch"]), meta["n_blocks"])
    writer = gguf.GGUFWriter(str(out_path), arch=meta["arch"])
    writer.add_string("general.type", "adapter")
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    count = 0
    for key in sorted(tensors):
        if ".lora_A." not in key:
            continue
        module = key.split(".lora_A.")[0].removeprefix("base_model.model.")
        a = tensors[key].astype(np.float32)
        b = tensors[key.replace(".lora_A.", ".lora_B.")].astype(np.float32)
        if module.endswith("q_proj") and meta["arch"] == "llama":
            b = _permute_rows(b, meta["n_head"])
        elif module.endswith("k_proj") and meta["arch"] == "llama":
            b = _permute_rows(b, meta["n_head_kv"])
        name = _gguf_name(name_map, module + ".weight")
        writer.add_tensor(name + ".lora_a", a.astype(np.float16))
        writer.add_tensor(name + ".lora_b", np.ascontiguousarray(b).astype(np.float16))
        count += 1
    if not count:
        raise TrainingError(f"{peft_dir} holds no LoRA tensors", hint="train an adapter first")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_path


def import_adapter(model, gguf_path: Path, *, base: str = "smollm2") -> int:
    """Load a GGUF LoRA adapter written by :func:`export_adapter` into a peft model's LoRA weights.

    The inverse of the export (rows of q/k ``lora_b`` un-permuted for LLaMA-family bases), so a model folder,
    which holds only the GGUF, can be trained further (the loop's warm start). The peft model must have the
    same rank and adapt the same modules; anything else is a clear error, never a silent partial load.
    Returns the number of adapted matrices loaded (one A/B pair each).
    """
    import gguf
    import numpy as np
    import torch

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise TrainingError(f"no adapter at {gguf_path}", hint="warm start needs the parent's adapter.gguf")
    reader = gguf.GGUFReader(str(gguf_path))
    stored = {t.name: t for t in reader.tensors}
    alpha_field = reader.fields.get(gguf.Keys.Adapter.LORA_ALPHA)
    alpha = float(alpha_field.parts[-1][0]) if alpha_field is not None else None
    meta = _base_meta(base_gguf_path(base))
    name_map = gguf.get_tensor_name_map(_arch_enum(meta["arch"]), meta["n_blocks"])
    used: set[str] = set()
    for module_name, module in model.named_modules():
        if not hasattr(module, "lora_A") or "default" not in module.lora_A:
            continue
        hf = module_name.removeprefix("base_model.model.")
        name = _gguf_name(name_map, hf + ".weight")
        if name + ".lora_a" not in stored:
            raise TrainingError(f"{gguf_path.name} does not adapt {hf}",
                                hint="warm start needs the same targets and frozen layers as the parent's recipe")
        a = np.asarray(stored[name + ".lora_a"].data, dtype=np.float32)
        b = np.asarray(stored[name + ".lora_b"].data, dtype=np.float32)
        if hf.endswith("q_proj") and meta["arch"] == "llama":
            b = _unpermute_rows(b, meta["n_head"])
        elif hf.endswith("k_proj") and meta["arch"] == "llama":
            b = _unpermute_rows(b, meta["n_head_kv"])
        target_a, target_b = module.lora_A["default"].weight, module.lora_B["default"].weight
        if tuple(a.shape) != tuple(target_a.shape) or tuple(b.shape) != tuple(target_b.shape):
            raise TrainingError(f"{gguf_path.name}: {hf} has LoRA shapes {a.shape} / {b.shape}, the model "
                                f"{tuple(target_a.shape)} / {tuple(target_b.shape)}",
                                hint="warm start needs the parent's rank and base")
        scaling = module.scaling["default"]
        if alpha is not None and not math.isclose(alpha / a.shape[0], scaling, rel_tol=1e-6):
            raise TrainingError(f"{gguf_path.name}: LoRA alpha {alpha:g} (scale {alpha / a.shape[0]:g}) but the "
                                f"model scales by {scaling:g}", hint="warm start needs the parent's alpha and rank")
        with torch.no_grad():
            target_a.copy_(torch.from_numpy(np.ascontiguousarray(a)))
            target_b.copy_(torch.from_numpy(np.ascontiguousarray(b)))
        used.update((name + ".lora_a", name + ".lora_b"))
    left = sorted(set(stored) - used)
    if not used or left:
        raise TrainingError(f"{gguf_path.name}: {len(left)} adapter tensors have no module to go to "
                            f"(first: {left[0] if left else 'none loaded'})",
                            hint="warm start needs the same base, targets and frozen layers as the parent")
    return len(used) // 2


def _unpermute_rows(weight, n_head: int):
    """Inverse of :func:`_permute_rows`."""
    out, *rest = weight.shape
    return weight.reshape(n_head, out // n_head // 2, 2, *rest).swapaxes(1, 2).reshape(weight.shape)


def _arch_enum(arch: str):
    """The gguf MODEL_ARCH member for an architecture name read from a GGUF file."""
    import gguf

    for member, name in gguf.MODEL_ARCH_NAMES.items():
        if name == arch:
            return member
    raise TrainingError(f"base architecture {arch!r} is unknown to the installed gguf package",
                        hint="upgrade gguf or use a supported base")


# ----------------------------------------------------------------------------- verification of what ships


def rate_with_llamacpp(examples, base: str = "smollm2", adapter: Path | None = None,
                       weight_format: str = "auto", template: str = "chatml",
                       code_chars: int = MAX_CODE_CHARS,
                       prompt_version: str = PROMPT_VERSION) -> list[dict[str, float]]:
    """Label probabilities from the serving rater (llama.cpp, base GGUF + adapter GGUF): what ships."""
    from bot.rater.llamacpp import LlamaCppRater
    from training.evaluate import rater_input

    rater = LlamaCppRater(model_path=base_gguf_path(base), adapter_path=adapter, weight_format=weight_format,
                          template=template, code_chars=code_chars, prompt_version=prompt_version)
    try:
        return [dict(r.probabilities) for r in rater.rate_texts([rater_input(e) for e in examples])]
    finally:
        rater.close()


def severity_metrics(examples, probabilities: list[dict[str, float]]) -> dict:
    """Every figure for rated items (accuracy, band, macro-F1 over present levels, concordance, ECE, per level):
    :func:`training.metrics.severity_metrics`, the one definition."""
    from training.metrics import severity_metrics as score

    return score(examples, probabilities)


def calibrate_threshold(examples, probabilities: list[dict[str, float]], level: str = "major",
                        min_precision: float = 0.8) -> dict:
    """The lowest cut on P(severity ≥ level) whose precision on ``examples`` is ≥ ``min_precision``.

    Why the lowest: it keeps as many real major/critical findings as possible at the promised precision.
    Returns the cut with its precision and recall (cut 1.0 and recall 0 when no cut reaches the precision).
    """
    from bot.severity import mass_at_least, parse_severity

    threshold = parse_severity(level)
    mass = [mass_at_least(p, threshold) for p in probabilities]
    positive = [parse_severity(e.label) >= threshold for e in examples]
    best = {"level": level, "min_precision": min_precision, "cut": 1.0, "precision": None, "recall": 0.0}
    for cut in sorted({round(m, 4) for m in mass}):
        chosen = [pos for m, pos in zip(mass, positive) if m >= cut]
        if not chosen:
            continue
        precision = sum(chosen) / len(chosen)
        if precision >= min_precision:
            recall = sum(chosen) / max(1, sum(positive))
            return {**best, "cut": cut, "precision": round(precision, 4), "recall": round(recall, 4)}
    return best


def apply_label_bias(probabilities: list[dict[str, float]], bias: dict[str, float]) -> list[dict[str, float]]:
    """``softmax(log p + b)``: what the serving rater returns when its manifest carries ``label_bias``."""
    out = []
    for p in probabilities:
        w = {label: p[label] * math.exp(bias.get(label, 0.0)) for label in p}
        total = math.fsum(w.values()) or 1.0
        out.append({label: v / total for label, v in w.items()})
    return out


def fit_label_bias(examples, probabilities: list[dict[str, float]], *, span: float = 2.0, step: float = 0.25,
                   passes: int = 3) -> dict[str, float]:
    """Per-label log offsets maximising macro-F1 + accuracy on ``examples`` (coordinate ascent on a grid).

    Why: a student trained with class-balanced weights on one label mix and served on another predicts
    some levels too often; a prior correction fitted on the held-out exam (never on dev) fixes the mix
    without touching the adapter. Coarse grid and few passes: four numbers, little room to over-fit.
    """
    from bot.severity import LABELS

    def score(bias: dict[str, float]) -> tuple[float, float]:
        m = severity_metrics(examples, apply_label_bias(probabilities, bias))
        return (m["macro_f1"] + m["accuracy"], m["macro_f1"])

    grid = [round(-span + i * step, 4) for i in range(int(2 * span / step) + 1)]
    bias = {label: 0.0 for label in LABELS}
    best = score(bias)
    for _ in range(passes):
        moved = False
        for label in LABELS[1:]:  # the first label is the reference (offsets are relative)
            for value in grid:
                trial = {**bias, label: value}
                got = score(trial)
                if got > best:
                    best, bias, moved = got, trial, True
        if not moved:
            break
    return bias


def label_bias_is_stable(examples, probabilities: list[dict[str, float]], seeds: int = 3) -> dict:
    """Does a bias fitted on one half of ``examples`` raise macro-F1 on the other half, every time?

    Three random halvings, both directions: six fits, six held-out checks. A prior correction that helps
    only in-sample (its values swing between halves) is not applied. Returns the per-split figures.
    """
    import random

    checks = []
    for seed in range(seeds):
        order = list(range(len(examples)))
        random.Random(seed).shuffle(order)
        half = len(order) // 2
        for fit, held in ((order[:half], order[half:]), (order[half:], order[:half])):
            bias = fit_label_bias([examples[i] for i in fit], [probabilities[i] for i in fit])
            gold, probs = [examples[i] for i in held], [probabilities[i] for i in held]
            before, after = severity_metrics(gold, probs), severity_metrics(gold, apply_label_bias(probs, bias))
            checks.append({"bias": bias, "macro_f1": [before["macro_f1"], after["macro_f1"]],
                           "accuracy": [before["accuracy"], after["accuracy"]]})
    return {"stable": all(c["macro_f1"][1] > c["macro_f1"][0] for c in checks), "checks": checks}


def write_manifest(folder: Path, *, name: str | None = None, base: str = "smollm2", adapter_file: str = "adapter.gguf",
                   **fields) -> Path:
    """``manifest.json`` for a student folder, through the registry's writer (one manifest format), plus
    any extra keys this training run knows about (data selection, training cost)."""
    from training.registry import write_manifest as registry_write

    folder = Path(folder)
    known = ("data_hash", "hyperparameters", "metrics", "threshold_calibration", "parent", "command", "template")
    path = registry_write(folder, name=name or folder.name, base=base, base_path=base_gguf_path(base),
                          adapter_file=adapter_file, **{k: fields.pop(k) for k in known if k in fields})
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["adapter"]["bytes"] = (folder / adapter_file).stat().st_size
    for stale in ("label_bias", "label_bias_rejected", "metrics_uncorrected", "notes", "lexical", "metrics_student"):  # from a rewritten model
        manifest.pop(stale, None)
    manifest.update(fields)
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
