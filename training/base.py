"""The base model as training reads it: (model, tokenizer) in fp32, from a Hugging Face name or a packaged GGUF.

A GGUF base is dequantised by transformers once and cached as an HF checkpoint in Sieve's cache folder
(:func:`bot.rater.locate.cache_dir`), keyed by the GGUF's sha256; the severity fine-tuning
(:mod:`training.finetune`), the explainer's training (:mod:`training.explain_train`) and the training benchmarks
all load it through :func:`load_base`.
"""

from __future__ import annotations

import os
from pathlib import Path

from bot.rater.locate import cache_dir  # the one cache folder: $SIEVE_CACHE_DIR or ~/.cache/sieve


def load_base(base: str):
    """(model, tokenizer) for training, in fp32.

    A GGUF base is dequantised by transformers once and cached as an HF checkpoint keyed by the GGUF's
    sha256, because the conversion (≈20-30 s, half of it the tokenizer) would otherwise repeat every run.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.export import base_gguf_path, sha256_file

    is_gguf = str(base).lower() in ("smollm2", "smollm2-135m", "gemma3-270m", "gemma") or str(base).endswith(".gguf")
    if not is_gguf:
        return AutoModelForCausalLM.from_pretrained(base), AutoTokenizer.from_pretrained(base)
    gguf_path = base_gguf_path(base)
    target = cache_dir() / "hf" / f"{gguf_path.stem}-{sha256_file(gguf_path)[:16]}"
    if not (target / "config.json").is_file():
        _convert_gguf(gguf_path, target)
    import torch

    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(target)


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    """Dequantise a GGUF into an HF checkpoint folder, atomically (rename at the end)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model.hf_quantizer = None  # transformers refuses to save a GGUF-quantised model otherwise
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if target.exists():  # another process converted it meanwhile: keep theirs
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.replace(target)
