"""The first block runs a sublayer on its input unnormed: its pre-norm is `nn.Identity()`
(modernbert-decoder's layer 0 attention, whose input is the already normed embeddings)."""

from __future__ import annotations

import libcst as cst

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, ScopedTransformer, expression, run

# the house pre-norm of each sublayer
PRE_NORMS = {"attention": "self.attention_norm", "mlp": "self.ffn_norm"}


class BareFirstLayer(Transform):
    """`self.attention_norm = <norm>` in `TransformerBlock.__init__` becomes
    `self.attention_norm = <norm> if layer_id != 0 else nn.Identity()` for each sublayer in
    `sublayers` (attention, mlp): layer 0 builds no such norm, so it has no weight to load,
    and the adapter's `{}` row simply finds no layer-0 key on either side."""

    name = "bare_first_layer"

    def apply(self, package, features=None, *, sublayers: tuple[str, ...]) -> None:
        unknown = [s for s in sublayers if s not in PRE_NORMS]
        if unknown or not sublayers:
            raise EditError(f"no house pre-norm for sublayers {list(sublayers)}")
        layer_id = edits.ensure_layer_id(package)
        for sublayer in sublayers:
            run(package, "model.py", _FirstLayerIdentity(PRE_NORMS[sublayer], layer_id))


class _FirstLayerIdentity(ScopedTransformer):
    def __init__(self, target: str, layer_id: str):
        super().__init__("TransformerBlock", "__init__")
        self.target, self.layer_id = target, layer_id

    def leave_Assign(self, original, updated):
        if not (
            self.inside
            and len(updated.targets) == 1
            and edits.is_code(self.target)(updated.targets[0].target)
        ):
            return updated
        self.hits += 1
        return updated.with_changes(
            value=cst.IfExp(
                test=expression(f"{self.layer_id} != 0"),
                body=updated.value,
                orelse=expression("nn.Identity()"),
            )
        )
