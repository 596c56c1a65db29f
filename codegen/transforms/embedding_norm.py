"""Normalise the token embeddings before the first layer: with the model's final norm
(nanochat), or with a norm module of their own (bloom's word_embeddings_layernorm)."""

from __future__ import annotations

import json

import libcst as cst

from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditDict,
    EditError,
    InsertStatements,
    ScopedTransformer,
    assigns,
    code_of,
    expression,
    is_name,
    run,
)


class EmbeddingNorm(Transform):
    """`h = self.tok_embeddings(tokens)` in `Model.forward` becomes
    `h = self.norm(self.tok_embeddings(tokens))`: the same module as the final norm, as HF
    applies its one norm twice (before the layers and after them); no new tensor to load.

    `module` (the HF path of a norm the embeddings have to themselves): `Model` builds
    `self.embedding_norm` as it builds `self.norm` (same kind, eps and bias, so run after the
    norm rules), applies that instead, and the adapter maps its weight (and bias) from
    `module`."""

    name = "embedding_norm"

    def apply(self, package, features=None, *, module: str = "") -> None:
        norm = "self.embedding_norm" if module else "self.norm"
        if module:
            _own_norm(package, module)
        found = _NormEmbeddings(norm)
        run(package, "model.py", found)
        if found.hits != 1:
            raise EditError("model.py: Model.forward has no `h = self.tok_embeddings(...)`")


def _own_norm(package, module: str) -> None:
    built = _FinalNorm()
    package.module("model.py").visit(built)
    if built.value is None:
        raise EditError("model.py: Model.__init__ builds no `self.norm`")
    run(
        package,
        "model.py",
        InsertStatements(
            "Model",
            "__init__",
            assigns("self.tok_embeddings"),
            f"self.embedding_norm = {code_of(built.value)}  # on the embeddings alone",
        ),
    )
    found = []

    def rows(key, value):
        for tensor in ("weight", "bias"):
            if value == json.dumps(f"norm.{tensor}"):
                found.append(tensor)
                new = (json.dumps(f"{module}.{tensor}"), json.dumps(f"embedding_norm.{tensor}"))
                return [(key, value), new]
        return [(key, value)]

    run(package, "state_dict_adapter.py", EditDict("from_hf_map", rows))
    if "weight" not in found:
        raise EditError("state_dict_adapter.py has no row for norm.weight")


class _FinalNorm(cst.CSTVisitor):
    """The value `Model.__init__` assigns to `self.norm`."""

    def __init__(self):
        self.value, self._class = None, None

    def visit_ClassDef(self, node):
        self._class = node.name.value

    def visit_Assign(self, node):
        if self._class == "Model" and is_name(node.targets[0].target, "self.norm"):
            self.value = node.value


class _NormEmbeddings(ScopedTransformer):
    def __init__(self, norm: str):
        super().__init__("Model", "forward")
        self.norm = norm

    def leave_Assign(self, original, updated):
        if not (
            self.inside
            and isinstance(updated.value, cst.Call)
            and is_name(updated.value.func, "self.tok_embeddings")
        ):
            return updated
        self.hits += 1
        return updated.with_changes(
            value=cst.Call(func=expression(self.norm), args=[cst.Arg(updated.value)])
        )
