"""The layers of some types turn q/k in fp32 on fp32 tables (dots3's indexed layers)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, run

IN_FP32 = '''
def in_fp32(rotate):
    """`rotate` with q/k taken to fp32 and the tables as computed (fp32), the result cast
    back to q/k's dtype: the rotation of the layers whose tables HF keeps in fp32."""

    def rotate_fp32(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        return rotate(x.float(), cos, sin).to(x.dtype)

    return rotate_fp32
'''

_ROTATE = m.Assign(
    targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name("rotate")))]
)


class RopeFp32LayerTypes(Transform):
    """`self.rotate = <rotation>` in `Attention.__init__` becomes `in_fp32(<rotation>)` on
    the layers whose type is one of `types` (the backbone computes their cos/sin from fp32
    inputs, dots3's "indexed_attention"), the rotation as it was on the others: those q/k
    turn in fp32 and are cast back once, as HF's do on fp32 tables."""

    name = "rope_fp32_layer_types"

    def apply(self, package, features=None, *, types: tuple[str, ...]) -> None:
        if not types:
            raise ValueError("rope_fp32_layer_types needs the layer types it turns in fp32")
        own = edits.ensure_attention_layer_id(package)
        if len(types) == 1:
            test = f'args.layer_types[{own}] == "{types[0]}"'
        else:
            test = f"args.layer_types[{own}] in ({', '.join(repr(t) for t in types)})"
        step = _PerType(test)
        run(package, "model.py", step, required=False)
        if not step.hits:
            raise EditError("Attention.__init__ picks no rotation (self.rotate = ...) to wrap")
        edits.insert_definition(package, "model.py", IN_FP32, before="Attention")


class _PerType(edits.InMethod):
    def __init__(self, test: str):
        super().__init__("Attention", "__init__")
        self.test = edits.expression(test)

    def leave_Assign(self, original, updated):
        if not (self.in_scope() and m.matches(updated, _ROTATE)):
            return updated
        rotation = updated.value
        wrapped = cst.Call(func=cst.Name("in_fp32"), args=[cst.Arg(rotation)])
        self.hits += 1
        return updated.with_changes(value=cst.IfExp(self.test, wrapped, rotation))
