"""A random HF model saved the way hub checkpoints are: safetensors files on disk.

Every parameter and persistent buffer is perturbed away from its initial value, so a weight
the package forgets to load (a router correction bias initialised to zero, a norm
initialised to one) changes the logits instead of hiding behind its default. Integer
buffers are kept, except index tables (`index_tables`: a token -> experts table HF
initialises to zeros), filled with distinct valid indices per row.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from codegen.verify.index_tables import fill_index_tables

# Noise added to every matrix (std) and every vector (norm weights, biases). Matrices get
# more than HF's 0.02 init so that attention scores, gate/up activations and logits reach
# the softcaps, clamps and clips the toy config sets (see tiny_config.CAPS).
WEIGHT_NOISE = 0.05
VECTOR_NOISE = 0.1


def random_hf_model(config, seed: int = 0, weight_noise: float = WEIGHT_NOISE):
    """The real transformers causal LM for `config`, in eval mode, with random weights.
    `weight_noise` is the matrices' extra std (0: HF's own initialisation scale)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for _, tensor in _float_state(model):
            noise = torch.randn(tensor.shape, generator=generator)
            tensor.add_(noise * (weight_noise if tensor.dim() > 1 else VECTOR_NOISE))
        # a table built with padding_idx never learns its padding row, so a trained
        # checkpoint holds it at its initial zeros (and some classes zero it again on load)
        for module in model.modules():
            if isinstance(module, torch.nn.Embedding) and module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
    fill_index_tables(model, generator)
    return model


def _float_state(model):
    """Parameters and persistent floating buffers, each tensor once (tied weights share)."""
    seen: set[int] = set()
    persistent = set(model.state_dict())
    named = list(model.named_parameters()) + [
        (name, buf) for name, buf in model.named_buffers() if name in persistent
    ]
    for name, tensor in named:
        if tensor.is_floating_point() and id(tensor) not in seen:
            seen.add(id(tensor))
            yield name, tensor


def save_checkpoint(model, directory: Path) -> None:
    model.save_pretrained(directory)


def load_checkpoint(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of the safetensors files in `directory`, sharded or not."""
    from safetensors.torch import load_file

    directory = Path(directory)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = sorted(path.name for path in directory.glob("*.safetensors"))
    state_dict: dict[str, torch.Tensor] = {}
    for name in files:
        state_dict.update(load_file(directory / name))
    return state_dict
