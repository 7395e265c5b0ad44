"""Frozen bottom layers: computed once per example, then training runs only the layers above them.

Layers below ``freeze_layers`` carry no LoRA, so their outputs never change during training. Their hidden
states are computed once (:func:`precompute_hidden`) and each step runs the trained stack only
(:func:`top_layers`), which saves their forward pass on every epoch.
"""

from __future__ import annotations

import contextlib
import copy


def _decoder(model):
    """The transformer stack (``LlamaModel``-like, holding ``.layers``) under peft/accelerate wrappers."""
    inner = model.module if hasattr(model, "module") else model
    inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    return inner.model


@contextlib.contextmanager
def top_layers(model, start: int):
    """Make the model look like its layers ``start…`` only (fed with hidden states as ``inputs_embeds``).

    Why: layers below ``start`` carry no LoRA, so their outputs never change during training; they are
    computed once (:func:`precompute_hidden`) and each step runs only the trained part. Layer indices and
    the layer count are renumbered for the duration so the KV cache and masks see a consistent stack.
    """
    if not start:
        yield
        return
    import torch

    decoder = _decoder(model)
    saved, cfg = decoder.layers, decoder.config
    n_layers, layer_types = cfg.num_hidden_layers, getattr(cfg, "layer_types", None)
    decoder.layers = torch.nn.ModuleList(list(saved)[start:])
    for i, layer in enumerate(decoder.layers):
        layer.self_attn.layer_idx = i
    cfg.num_hidden_layers = n_layers - start
    if layer_types:
        cfg.layer_types = layer_types[start:]
    try:
        yield
    finally:
        for i, layer in enumerate(decoder.layers):
            layer.self_attn.layer_idx = start + i
        decoder.layers = saved
        cfg.num_hidden_layers = n_layers
        if layer_types:
            cfg.layer_types = layer_types


class _Reached(Exception):
    """Raised by a hook to stop a forward pass once the wanted layer's input is known."""


def _hidden_before(model, start: int, **inputs):
    """Hidden states entering layer ``start`` — runs only the layers below it (the rest is skipped)."""
    captured = []

    def hook(module, args, kwargs):
        captured.append(kwargs["hidden_states"] if "hidden_states" in kwargs else args[0])
        raise _Reached

    handle = _decoder(model).layers[start].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model(**inputs)
    except _Reached:
        pass
    finally:
        handle.remove()
    return captured[0][0]


def precompute_hidden(model, encoded: list, prefix: list[int], start: int, device):
    """Hidden states entering layer ``start`` for the prefix (returned) and each ``Encoded`` example (stored
    on its ``embeds``)."""
    import torch
    from transformers import DynamicCache

    was_training = model.training
    model.eval()
    with torch.no_grad():
        cache = DynamicCache()
        prefix_hidden = _hidden_before(model, start, input_ids=torch.tensor([prefix], device=device),
                                       past_key_values=cache, use_cache=True)
        for enc in encoded:
            hidden = _hidden_before(model, start, input_ids=torch.tensor([enc.ids], device=device),
                                    past_key_values=copy.deepcopy(cache), use_cache=True)
            enc.embeds = hidden.to(torch.bfloat16)
    model.train(was_training)
    return prefix_hidden.to(torch.bfloat16)
