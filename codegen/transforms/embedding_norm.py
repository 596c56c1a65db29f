"""Normalise the token embeddings before the first layer with the model's final norm (nanochat)."""

from __future__ import annotations

import libcst as cst

from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, ScopedTransformer, expression, is_name, run


class EmbeddingNorm(Transform):
    """`h = self.tok_embeddings(tokens)` in `Model.forward` becomes
    `h = self.norm(self.tok_embeddings(tokens))`: the same module as the final norm, as HF
    applies its one norm twice (before the layers and after them); no new tensor to load."""

    name = "embedding_norm"

    def apply(self, package, features=None) -> None:
        found = _NormEmbeddings()
        run(package, "model.py", found)
        if found.hits != 1:
            raise EditError("model.py: Model.forward has no `h = self.tok_embeddings(...)`")


class _NormEmbeddings(ScopedTransformer):
    def __init__(self):
        super().__init__("Model", "forward")

    def leave_Assign(self, original, updated):
        if not (
            self.inside
            and isinstance(updated.value, cst.Call)
            and is_name(updated.value.func, "self.tok_embeddings")
        ):
            return updated
        self.hits += 1
        return updated.with_changes(
            value=cst.Call(func=expression("self.norm"), args=[cst.Arg(updated.value)])
        )
