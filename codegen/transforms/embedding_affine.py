"""Token embeddings shifted and scaled by learned per-channel vectors (zaya's input scaling)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits, _moe_edits
from codegen.transforms._rope_edits import rewrite_expressions
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, assigns, run

SHIFTED = '''
class EmbeddingAffine(nn.Module):
    """The token embeddings shifted, then scaled, by learned per-channel vectors."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def init_parameters(self, std: float) -> None:
        # HF's _init_weights: the embeddings as they are
        nn.init.ones_(self.scale)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.bias) * self.scale
'''

SCALED = '''
class EmbeddingAffine(nn.Module):
    """The token embeddings scaled by a learned per-channel vector."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def init_parameters(self, std: float) -> None:
        nn.init.ones_(self.scale)  # HF's _init_weights: the embeddings as they are

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale
'''

MODULE = "self.embedding_affine = EmbeddingAffine(args.dim)  # before the first layer"

_EMBED = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("tok_embeddings")))


class EmbeddingAffine(Transform):
    """`Model.forward` passes the token embeddings through `self.embedding_affine`, an
    `EmbeddingAffine` computing `(x + bias) * scale` with per-channel vectors (ones and zeros
    at init; `x * scale` where HF adds nothing first).

    `affine` is the analysed `embedding.learned_affine`: the checkpoint keys of the scale and
    the bias ("" for none), which the adapter maps.
    """

    name = "embedding_affine"

    def apply(self, package, features=None, *, affine: dict | None = None) -> None:
        if not affine or not affine.get("scale"):
            raise EditError("embedding_affine: the checkpoint key of the learned scale")
        code = SHIFTED if affine.get("bias") else SCALED
        _moe_edits.insert_before_class(package, "model.py", "Model", code)
        run(
            package,
            "model.py",
            InsertStatements("Model", "__init__", assigns("self.tok_embeddings"), MODULE),
        )

        def rewrite(node):
            if not m.matches(node, _EMBED):
                return None
            return cst.Call(
                func=cst.Attribute(cst.Name("self"), cst.Name("embedding_affine")),
                args=[cst.Arg(node)],
            )

        if rewrite_expressions(package, "model.py", "Model", "forward", rewrite) != 1:
            raise EditError("Model.forward: not one call of self.tok_embeddings")
        rows = [(affine["scale"], "embedding_affine.scale")]
        if affine.get("bias"):
            rows.append((affine["bias"], "embedding_affine.bias"))
        _attention_edits.insert_rows_after(package, "tok_embeddings.weight", rows)
