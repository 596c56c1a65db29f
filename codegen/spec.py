"""ModelSpec: what a model package exports so codegen can build, load and verify it.

Kept free of torch imports so that reading specs' metadata stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    """One model package: its classes and the HF `model_type`s it implements."""

    name: str
    model: type  # nn.Module subclass: Model(args); forward(tokens, positions=None) -> logits
    args: type  # dataclass with classmethod from_hf_config(hf_config)
    adapter: type  # StateDictAdapter(args): from_hf / to_hf / convert_single_to_hf
    supported_model_types: frozenset[str]

    def build(self, hf_config: Any):
        """Instantiate (args, model, adapter) for an HF config."""
        args = self.args.from_hf_config(hf_config)
        return args, self.model(args), self.adapter(args)
