"""The activations HF looks up by name (`ACT2FN[config.hidden_act]`), as torch functions.

A package whose feed-forward follows the config's activation name applies the entry of this
table; a name outside it is refused in one line rather than run as another function. The
tanh GELU variants (gelu_new, gelu_fast, gelu_pytorch_tanh) are one function written three
ways; quick_gelu, x * sigmoid(1.702 x), is silu(1.702 x) / 1.702.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": lambda x: F.silu(x),
    "swish": lambda x: F.silu(x),
    "gelu": lambda x: F.gelu(x),
    "gelu_python": lambda x: F.gelu(x),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_python_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "quick_gelu": lambda x: F.silu(1.702 * x) / 1.702,
    "relu": lambda x: F.relu(x),
    "relu2": lambda x: F.relu(x).square(),
    "relu6": lambda x: F.relu6(x),
    "sigmoid": lambda x: torch.sigmoid(x),
    "tanh": lambda x: torch.tanh(x),
}


def activation(name: str, field: str = "hidden_act") -> Callable[[torch.Tensor], torch.Tensor]:
    """The function HF's activation `name` computes; `field` is the config field naming it."""
    if name not in ACTIVATIONS:
        raise NotImplementedError(
            f"{field}={name!r} is not supported (it takes {', '.join(sorted(ACTIVATIONS))})"
        )
    return ACTIVATIONS[name]
