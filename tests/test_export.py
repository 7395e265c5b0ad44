"""GGUF LoRA export: what llama.cpp computes with the exported adapter matches what transformers+peft computed.

Tolerance, measured: llama.cpp runs the Q4_1 base file itself (as-is) while transformers runs its fp32
dequantisation, so even the bare base differs a little (≈0.01 in label probability here). The test adapter
is random and strong enough to move label probabilities by > 0.1; the exported adapter must move
llama.cpp the same way and land within 0.05 of transformers for every label of every prompt.
"""

from __future__ import annotations

import importlib.util

import pytest

from bot.errors import ModelError, TrainingError
from bot.severity import LABELS
from training.examples import Example

pytestmark = pytest.mark.slow

HEAVY = all(importlib.util.find_spec(m) for m in ("torch", "transformers", "peft", "gguf", "llama_cpp"))
needs_heavy = pytest.mark.skipif(not HEAVY, reason="training extras or llama-cpp-python not installed")

PROMPTS = [
    Example(code="@@ -1 +1 @@\n+query = 'SELECT * FROM users WHERE name = ' + name",
            review="SQL injection: the name is concatenated into the query.", label="critical"),
    Example(code="@@ -4,2 +4,2 @@\n-    return a\n+    return b", review="Typo in the comment above.", label="trivial"),
    Example(code="@@ -9 +9 @@\n+for i in range(len(xs) - 1):", review="This skips the last element, so the "
            "sum is wrong.", label="major"),
    Example(code="", review="Consider logging at debug level instead of info.", label="minor"),
]
TOLERANCE = 0.05


@pytest.fixture(scope="module")
def random_adapter(tmp_path_factory):
    """A peft adapter on all seven projections of every layer, with random non-zero B (so it matters)."""
    import torch

    from training.base import load_base
    from training.finetune import FinetuneConfig, add_lora, label_probabilities

    folder = tmp_path_factory.mktemp("adapter")
    torch.manual_seed(0)
    model, tokenizer = load_base("smollm2")
    base_probs = label_probabilities(model, tokenizer, PROMPTS)
    peft_model = add_lora(model, FinetuneConfig(rank=4, alpha=8, dropout=0.0))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.15)
    tuned_probs = label_probabilities(peft_model, tokenizer, PROMPTS)
    peft_model.save_pretrained(folder / "peft")
    return folder, base_probs, tuned_probs


@needs_heavy
def test_export_writes_a_llamacpp_lora_adapter(random_adapter):
    import gguf

    from training.export import export_adapter

    folder, _, _ = random_adapter
    path = export_adapter(folder / "peft", folder / "adapter.gguf")
    reader = gguf.GGUFReader(str(path))
    fields = {name: reader.fields[name] for name in ("general.type", "adapter.type", "adapter.lora.alpha")}
    assert bytes(fields["general.type"].parts[-1]).decode() == "adapter"
    assert bytes(fields["adapter.type"].parts[-1]).decode() == "lora"
    assert float(fields["adapter.lora.alpha"].parts[-1][0]) == 8.0
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 30 * 7 * 2
    a, b = tensors["blk.0.attn_q.weight.lora_a"], tensors["blk.0.attn_q.weight.lora_b"]
    assert list(a.shape) == [576, 4] and list(b.shape) == [4, 576]  # GGUF order: ne0 first
    assert list(tensors["blk.3.ffn_down.weight.lora_a"].shape) == [1536, 4]
    assert a.tensor_type == gguf.GGMLQuantizationType.F16
    assert path.stat().st_size < 3_000_000


@needs_heavy
def test_llamacpp_with_exported_adapter_matches_transformers(random_adapter):
    from training.export import export_adapter, rate_with_llamacpp

    folder, hf_base, hf_tuned = random_adapter
    path = export_adapter(folder / "peft", folder / "parity.gguf")
    cpp_base = rate_with_llamacpp(PROMPTS, "smollm2", None, weight_format="as-is")
    cpp_tuned = rate_with_llamacpp(PROMPTS, "smollm2", path, weight_format="as-is")
    moved = max(abs(hf_tuned[i][k] - hf_base[i][k]) for i in range(len(PROMPTS)) for k in LABELS)
    print(f"adapter moves transformers by {moved:.3f}")
    assert moved > 0.1, "the test adapter is too weak to tell a working export from a no-op"
    base_gap = max(abs(cpp_base[i][k] - hf_base[i][k]) for i in range(len(PROMPTS)) for k in LABELS)
    tuned_gap = max(abs(cpp_tuned[i][k] - hf_tuned[i][k]) for i in range(len(PROMPTS)) for k in LABELS)
    print(f"llama.cpp vs transformers: base {base_gap:.4f}, with adapter {tuned_gap:.4f}")
    assert base_gap < TOLERANCE
    assert tuned_gap < TOLERANCE, (tuned_gap, cpp_tuned, hf_tuned)
    for i in range(len(PROMPTS)):
        for k in LABELS:
            delta_hf, delta_cpp = hf_tuned[i][k] - hf_base[i][k], cpp_tuned[i][k] - cpp_base[i][k]
            if abs(delta_hf) > 0.05:
                assert delta_hf * delta_cpp > 0, (i, k, delta_hf, delta_cpp)


@needs_heavy
def test_import_reads_an_exported_adapter_back_for_a_warm_start(random_adapter):
    """GGUF → peft is the inverse of the export (q/k rows un-permuted): same weights within f16, same
    label probabilities; a model of another rank or other adapted layers is refused, not half-loaded."""
    import torch
    from safetensors.torch import load_file

    from training.base import load_base
    from training.export import export_adapter, import_adapter
    from training.finetune import FinetuneConfig, add_lora, label_probabilities

    folder, _, hf_tuned = random_adapter
    path = export_adapter(folder / "peft", folder / "back.gguf")
    torch.manual_seed(1)
    model, tokenizer = load_base("smollm2")
    fresh = add_lora(model, FinetuneConfig(rank=4, alpha=8, dropout=0.0))
    assert import_adapter(fresh, path) == 30 * 7
    saved = load_file(str(folder / "peft" / "adapter_model.safetensors"))
    loaded = {name.replace(".default", ""): p for name, p in fresh.named_parameters() if "lora_" in name}
    assert set(loaded) == set(saved)
    worst = max(float((loaded[k].detach() - saved[k]).abs().max() / saved[k].abs().max()) for k in saved)
    assert worst < 1e-3, worst  # f16 storage
    probs = label_probabilities(fresh, tokenizer, PROMPTS)
    gap = max(abs(probs[i][k] - hf_tuned[i][k]) for i in range(len(PROMPTS)) for k in LABELS)
    assert gap < 2e-3, gap
    with pytest.raises(TrainingError, match="LoRA shapes"):
        import_adapter(add_lora(load_base("smollm2")[0], FinetuneConfig(rank=8, alpha=16)), path)
    with pytest.raises(TrainingError, match="no module to go to"):
        import_adapter(add_lora(load_base("smollm2")[0], FinetuneConfig(rank=4, alpha=8, freeze_layers=4)), path)
    with pytest.raises(TrainingError, match="alpha"):
        import_adapter(add_lora(load_base("smollm2")[0], FinetuneConfig(rank=4, alpha=4)), path)


def test_export_of_a_folder_without_adapter_is_a_clear_error(tmp_path):
    from training.export import export_adapter

    with pytest.raises(TrainingError, match="is not a peft adapter folder"):
        export_adapter(tmp_path, tmp_path / "x.gguf")


def test_base_paths(tmp_path):
    from training.export import base_gguf_path

    assert base_gguf_path("smollm2").name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    with pytest.raises(ModelError, match="not a GGUF file"):
        base_gguf_path(str(tmp_path / "model.bin"))
    with pytest.raises(ModelError, match="does not exist"):
        base_gguf_path(str(tmp_path / "missing.gguf"))


@pytest.fixture(scope="module")
def gemma_adapter(tmp_path_factory):
    """The same check on the Gemma 3 270M base: plain template, a BOS token first, no rotary permutation."""
    import torch

    from training.base import load_base
    from training.finetune import FinetuneConfig, add_lora, label_probabilities

    folder = tmp_path_factory.mktemp("gemma")
    torch.manual_seed(0)
    model, tokenizer = load_base("gemma3-270m")
    base_probs = label_probabilities(model, tokenizer, PROMPTS, template="plain")
    peft_model = add_lora(model, FinetuneConfig(base="gemma3-270m", rank=4, alpha=8, dropout=0.0))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                # moves the label probabilities by ≈0.14 on the v4 prompt, the size of a trained adapter's effect;
                # far stronger random adapters (0.12: moved 0.55) leave llama.cpp's f16 copy 0.025 away, while the
                # shipped default's gap on 21 dev items is 0.0005
                param.normal_(0.0, 0.05)
    tuned_probs = label_probabilities(peft_model, tokenizer, PROMPTS, template="plain")
    peft_model.save_pretrained(folder / "peft")
    return folder, base_probs, tuned_probs


@needs_heavy
def test_gemma_adapter_matches_transformers(gemma_adapter):
    """Against the f16 copy llama.cpp serves by default, the gap is far below the Q4_1 case's (measured ≈0.001)."""
    from training.export import export_adapter, rate_with_llamacpp
    from training.finetune import FinetuneConfig

    assert FinetuneConfig(base="gemma3-270m").prompt_template() == "plain"
    folder, hf_base, hf_tuned = gemma_adapter
    path = export_adapter(folder / "peft", folder / "gemma.gguf", base="gemma3-270m")
    cpp_base = rate_with_llamacpp(PROMPTS, "gemma3-270m", None, weight_format="f16", template="plain")
    cpp_tuned = rate_with_llamacpp(PROMPTS, "gemma3-270m", path, weight_format="f16", template="plain")
    moved = max(abs(hf_tuned[i][k] - hf_base[i][k]) for i in range(len(PROMPTS)) for k in LABELS)
    base_gap = max(abs(cpp_base[i][k] - hf_base[i][k]) for i in range(len(PROMPTS)) for k in LABELS)
    tuned_gap = max(abs(cpp_tuned[i][k] - hf_tuned[i][k]) for i in range(len(PROMPTS)) for k in LABELS)
    print(f"gemma: adapter moves transformers by {moved:.3f}; llama.cpp gap base {base_gap:.4f}, "
          f"adapter {tuned_gap:.4f}")
    assert moved > 0.1, "the test adapter is too weak to tell a working export from a no-op"
    assert base_gap < 0.01 and tuned_gap < 0.01, (base_gap, tuned_gap)
