"""The adapter merged into its base, for serving: one weight file, no LoRA product at run time.

llama.cpp applies a LoRA adapter at run time as two extra small matrix products (and an addition) per adapted
matrix per token: on a small model on a CPU those extra operations cost a large share of the time. Merged,
``W' = W + (alpha / r) · B·A`` is computed once (in float32, from the f16 copy of the base) and stored as f16
(``merged-f16``), or then quantized by llama.cpp's own quantizer to Q8_0 (``merged-q8``), which also halves the
bytes read per token. The copy is cached like the f16 one, keyed by the sha256 of base *and* adapter, so a new
adapter never meets an old merge. How close a merged student rates to the adapter form is measured
(benchmarks/rate_latency.py, docs/backends.md), not assumed.

Needs the ``gguf`` package (the training extra installs it); without it the merged formats are refused with one
line and the adapter form stays the default.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from bot.errors import ModelError
from bot.rater.locate import llama_quantize

log = logging.getLogger(__name__)

MERGED_FORMATS = {"merged-f16": "f16", "merged-q8": "q8_0"}


def _reader(path: Path):
    try:
        import gguf
    except ImportError:
        raise ModelError("a merged weight format needs the gguf package",
                         hint="pip install gguf (or the training extra), or use weight_format auto") from None
    return gguf, gguf.GGUFReader(str(path))


def merge_adapter(base_f16: Path, adapter: Path, target: Path) -> None:
    """Write ``base_f16`` with every adapted matrix replaced by ``W + (alpha / r) · B·A`` (f16), atomically."""
    gguf, base = _reader(base_f16)
    _, lora = _reader(adapter)
    alpha_field = lora.fields.get("adapter.lora.alpha")
    alpha = float(alpha_field.contents()) if alpha_field is not None else None
    pairs = {t.name: t for t in lora.tensors}
    arch = str(base.fields["general.architecture"].contents())
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    for field in base.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    tensors, merged = [], 0
    for tensor in base.tensors:
        data = np.asarray(tensor.data)
        a, b = pairs.get(f"{tensor.name}.lora_a"), pairs.get(f"{tensor.name}.lora_b")
        if a is not None and b is not None:
            low_a, low_b = np.asarray(a.data, dtype=np.float32), np.asarray(b.data, dtype=np.float32)
            scale = alpha / low_a.shape[0] if alpha else 1.0
            data = (data.astype(np.float32) + scale * (low_b @ low_a)).astype(data.dtype)
            merged += 1
        tensors.append((tensor, data))
        writer.add_tensor_info(tensor.name, data.shape, data.dtype, data.nbytes, tensor.tensor_type)
    if merged != len(pairs) // 2:
        raise ModelError(f"adapter {adapter.name} adapts {len(pairs) // 2} matrices, {merged} found in the base",
                         hint="the adapter must be a GGUF LoRA exported for this exact base model")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, data in tensors:
        writer.write_tensor_data(data)
    writer.close()
    os.replace(tmp, target)


def quantize(source: Path, target: Path, kind: str, n_threads: int) -> None:
    """llama.cpp's own quantizer, ``source`` → ``target`` (``q8_0``), atomically."""
    llama_quantize(source, target, kind, n_threads)


def merged_weights(base_f16: Path, adapter: Path, weight_format: str, folder: Path, key: str,
                   n_threads: int) -> Path:
    """The cached merged copy (``key`` names base and adapter by their digests), made on first use."""
    kind = MERGED_FORMATS[weight_format]
    f16 = folder / f"{key}.f16.merged.gguf"
    target = f16 if kind == "f16" else folder / f"{key}.{kind}.merged.gguf"
    if target.is_file() and target.stat().st_size > 0:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    if not f16.is_file():
        merge_adapter(base_f16, adapter, f16)
        log.info("weights: merged %s into %s at %s", adapter.name, base_f16.name, f16)
    if kind != "f16":
        quantize(f16, target, kind, n_threads)
    return target
