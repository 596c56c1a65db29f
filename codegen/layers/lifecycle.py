"""The meta-device lifecycle engines use: build on `meta`, shard, `to_empty`, then initialise.

`init_weights` starts every parameter the way HF's `_init_weights` does, by one table of
rules: normal(0, std) for matrices, embeddings, experts, router weights and attention sinks,
zeros for biases and persistent buffers (a router's correction bias), ones for a norm's scale.
A module whose parameters start otherwise says so itself: `init_parameters(std)` (an offset
`1 + w` norm starts at zero), or `normal_init`, the names of its tensors HF draws normal where
the table says zero (gpt_oss's router bias); both run after the table. `init_buffers`
rebuilds the non-persistent buffers a module declares through `init_buffers(device)`; the
RoPE tables here are computed per forward, so they need none.
"""

from __future__ import annotations

import torch
from torch import nn


def _zero_bias(module: nn.Module) -> None:
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


def _linear(module: nn.Module, std: float) -> None:
    nn.init.normal_(module.weight, mean=0.0, std=std)
    _zero_bias(module)


def init_embedding(module: nn.Embedding, std: float) -> None:
    """A token table drawn normal(0, std), its padding row (if any) at zero."""
    nn.init.normal_(module.weight, mean=0.0, std=std)
    if module.padding_idx is not None:
        nn.init.zeros_(module.weight[module.padding_idx])


def _norm(module: nn.Module, std: float) -> None:
    if getattr(module, "weight", None) is not None:
        nn.init.ones_(module.weight)
    _zero_bias(module)


# torch module type -> how its parameters start (HF PreTrainedModel._init_weights)
TORCH_RULES = (
    (nn.Linear, _linear),
    (nn.Embedding, init_embedding),
    (nn.LayerNorm, _norm),
)


def _own_tensors(module: nn.Module, std: float) -> None:
    """A house module without a rule: its own parameters and persistent buffers by name."""
    is_norm = "Norm" in type(module).__name__
    for name, param in module.named_parameters(recurse=False):
        if name == "bias" or name.endswith("_bias"):
            nn.init.zeros_(param)
        elif is_norm:
            nn.init.ones_(param)
        else:  # expert stacks, router weights, attention sinks
            nn.init.normal_(param, mean=0.0, std=std)
    for name, buffer in module.named_buffers(recurse=False):
        if name not in module._non_persistent_buffers_set and buffer.is_floating_point():
            buffer.zero_()  # a checkpoint tensor that starts at zero (router correction bias)


def init_module_buffers(model: nn.Module, buffer_device=None) -> None:
    """Rebuild every non-persistent buffer after `to_empty` (modules' own `init_buffers`)."""
    with torch.no_grad():
        for module in model.modules():
            if module is not model and hasattr(module, "init_buffers"):
                module.init_buffers(buffer_device)


def init_module_weights(model: nn.Module, std: float, buffer_device=None) -> None:
    """Initialise every parameter as HF does for `initializer_range=std`, then the buffers."""
    init_module_buffers(model, buffer_device)
    with torch.no_grad():
        for module in model.modules():
            rule = next((r for kind, r in TORCH_RULES if isinstance(module, kind)), None)
            if rule is not None:
                rule(module, std)
            else:
                _own_tensors(module, std)
        for module in model.modules():  # a module's own word wins over the table
            if hasattr(module, "init_parameters"):
                module.init_parameters(std)
            if hasattr(module, "normal_init"):  # an attribute read: tidy keeps the line
                for name in module.normal_init:
                    nn.init.normal_(module.get_parameter(name), mean=0.0, std=std)
