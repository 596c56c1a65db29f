"""The values times a factor of the config's before the attention (MiMo-V2-Flash)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import InsertStatements, assigns, run

FIELD = "v_scale: float = 1.0  # the values' factor before the attention"
ASSIGN = "self.v_scale = args.v_scale"

_V_PROJECTED = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("wv")))


class ValueScale(Transform):
    """The values are multiplied by `args.v_scale` once projected and split into heads, as
    HF multiplies them (in the model's dtype) before the attention; `from_hf_config` reads
    the factor as HF's `__init__` computes it (`factor`: MiMo-V2-Flash's
    `attention_value_scale`, 1.0 where it is None)."""

    name = "value_scale"

    def apply(self, package, features=None, *, factor: str | None = None) -> None:
        if not factor:
            raise ValueError("value_scale needs the config expression of the values' factor")
        edits.add_args_field(package, FIELD, f"v_scale={factor}")
        run(
            package,
            "model.py",
            InsertStatements("Attention", "__init__", assigns("self.wo"), ASSIGN),
        )
        run(package, "model.py", _Scaled())


class _Scaled(edits.InMethod):
    """`v = <the value projection, viewed>` -> `v = <...> * self.v_scale`."""

    def __init__(self):
        super().__init__("Attention", "forward")

    def leave_Assign(self, original, updated):
        if (
            self.inside
            and m.matches(updated.targets[0].target, m.Name("v"))
            and m.findall(updated.value, _V_PROJECTED)
        ):
            self.hits += 1
            scaled = cst.BinaryOperation(
                left=updated.value,
                operator=cst.Multiply(),
                right=edits.expression("self.v_scale"),
            )
            return updated.with_changes(value=scaled)
        return updated
