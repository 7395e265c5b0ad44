"""Memory levers of the fine-tune: gradient checkpointing that keeps the prefix cache.

transformers' gradient checkpointing drops a layer's key/value cache when it checkpoints (the replay in the
backward pass would append the same keys a second time). Sieve's loop depends on that cache: every finding's
body attends to the shared prompt prefix through it (:func:`training.finetune.prefix_cache`); dropped, the
attention mask (sized for prefix + body) no longer matches the keys and the pass fails. So the prefix cache is
*read-only* during training
(:class:`ReadOnlyPrefix`: each forward pass gets prefix + its own keys, nothing is stored), which makes the
replay exact, and the layers are told they may checkpoint with it.
"""

from __future__ import annotations

from bot.errors import TrainingError


def _read_only_class():
    from transformers import DynamicCache

    class ReadOnlyPrefix(DynamicCache):
        """A prefix's keys/values that forward passes read and never extend."""

        def update(self, key_states, value_states, layer_idx, *args, **kwargs):
            import torch

            layer = self.layers[layer_idx]
            if getattr(layer, "sliding_window", None) and \
                    layer.get_seq_length() + key_states.shape[-2] > layer.sliding_window:
                raise TrainingError("a training prompt is longer than the base's sliding attention window",
                                    hint="lower max_prompt_tokens below the window")
            return torch.cat([layer.keys, key_states], dim=-2), torch.cat([layer.values, value_states], dim=-2)

    return ReadOnlyPrefix


_CLASS = None


def read_only(cache):
    """Turn a filled ``DynamicCache`` into a read-only prefix in place (no copy of its tensors)."""
    global _CLASS
    from transformers import DynamicCache

    if cache is None or type(cache) is not DynamicCache:
        return cache
    _CLASS = _CLASS or _read_only_class()
    cache.__class__ = _CLASS
    return cache


def enable_checkpointing(model) -> None:
    """Recompute each decoder layer's activations in the backward pass instead of keeping them.

    Non-reentrant checkpointing (``use_reentrant=False``): it needs no input that requires grad (the embeddings
    and the frozen layers' hidden states carry none), works under DDP's ``no_sync`` and replays dropout with
    the saved RNG state. The layers may keep the cache because training only hands them read-only prefixes.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(inner, "supports_gradient_checkpointing", False):
        raise TrainingError(f"{type(inner).__name__} does not support gradient checkpointing",
                            hint="train without --gradient-checkpointing")
    from transformers.modeling_layers import GradientCheckpointingLayer

    inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    layers = [m for m in inner.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]
    if not layers:
        raise TrainingError("gradient checkpointing reached no layer of this base",
                            hint="train without --gradient-checkpointing")
    for layer in layers:
        layer._can_checkpoint_with_cache = True
