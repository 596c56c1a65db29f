"""RoPE groups picked per layer: the config groups its rope parameters under labels that are
not layer types (DeepSeek-V4's "main" and "compress") and each attention layer rotates with
the tables of one of two labels, decided by a test over the config and the layer index
(`rope.layer_groups`: DeepSeek-V4's sliding layers pick "main", its compressed ones
"compress").

`rope` is already the first layer's group (the `rope_group` rule). Here `other_rope` is built
from the other group, `other_rope_layers` lists the layers whose test holds (the test
restated over `hf_config`), the model builds a second table from it (only when a layer reads
it) and hands each block the table of its own group.
"""

from __future__ import annotations

import json

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _rope_edits as rope_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import InsertStatements, assigns, code_of, dotted, run

FIELD = """
# the tables of the layers in other_rope_layers: their rope_parameters group is another
# label than `rope`'s; None: every layer rotates with `rope`
other_rope: RopeScaling | None = None
other_rope_layers: tuple[int, ...] = ()  # the layers that rotate with other_rope
"""

_FROM_HF = m.Call(func=m.Attribute(value=m.Name("RopeScaling"), attr=m.Name("from_hf")))
_PARAMETERS = dotted("hf_config.rope_parameters")


class RopeLayerGroups(Transform):
    """`other_rope` from the other rope_parameters group, `other_rope_layers` from the
    layers' test; the blocks of those layers rotate with the second table."""

    name = "rope_layer_groups"

    def apply(self, package, features=None, *, groups: dict) -> None:
        other, test = groups["other"], groups["test"]
        built = _rope_call(package)
        if built is None:
            raise ValueError("from_hf_config builds no RopeScaling.from_hf(...) to pick from")
        first = _resolved(package, built.args[0].value)
        picked = first.visit(_Relabel(other))
        if code_of(picked) == code_of(first):
            raise ValueError("from_hf_config reads no rope_parameters group to relabel")
        other_built = built.with_changes(args=[built.args[0].with_changes(value=picked)])
        other_built = other_built.with_changes(args=[*other_built.args, *built.args[1:]])
        layers = f"tuple(i for i in range(hf_config.num_hidden_layers) if {test})"
        edits.add_args_field(package, FIELD, f"other_rope={code_of(other_built)}")
        edits.add_hf_kwarg(package, f"other_rope_layers={layers}")

        model = package.module("model.py")
        rotary = rope_edits.first_assignment(model, "Model", "__init__", "self.rotary")
        table = rope_edits.first_assignment(model, "Model", "forward", "rope")
        if rotary is None or table is None:
            raise ValueError("the model builds no `self.rotary` table to pick from per layer")
        run(
            package,
            "model.py",
            InsertStatements(
                "Model",
                "__init__",
                assigns("self.rotary"),
                rope_edits.second_rotary(rotary, "other_rope", "other_rotary"),
            ),
        )
        run(
            package,
            "model.py",
            InsertStatements("Model", "forward", assigns("rope"), _other_table(table)),
        )
        rope_edits.layers_pick_table(
            package,
            "self.other_rope = {layer_id} in args.other_rope_layers",
            "other_rope if layer.other_rope else rope",
        )


def _rope_call(package) -> cst.Call | None:
    """The `RopeScaling.from_hf(...)` call of `from_hf_config`."""
    method = edits.find_method(package.module("args.py"), "ModelArgs", "from_hf_config")
    found = m.findall(method, _FROM_HF) if method is not None else []
    return found[0] if found else None


def _resolved(package, value: cst.BaseExpression) -> cst.BaseExpression:
    """`value`, or what `from_hf_config` assigned it where it is a local name."""
    if not isinstance(value, cst.Name):
        return value
    method = edits.find_method(package.module("args.py"), "ModelArgs", "from_hf_config")
    for assign in m.findall(method, m.Assign(targets=[m.AssignTarget(target=m.Name())])):
        if assign.targets[0].target.value == value.value:
            return assign.value
    return value


class _Relabel(cst.CSTTransformer):
    """`hf_config.rope_parameters["<label>"]` -> `hf_config.rope_parameters["<other>"]`."""

    def __init__(self, other: str):
        super().__init__()
        self.other = other

    def leave_Subscript(self, original, updated):
        if not m.matches(original.value, _PARAMETERS):
            return updated
        index = cst.SubscriptElement(cst.Index(cst.SimpleString(json.dumps(self.other))))
        return updated.with_changes(slice=[index])


def _other_table(statement) -> str:
    """`rope = self.rotary(positions)` -> the other table, built where a layer reads it."""
    value = statement.body[0].value
    renamed = value.with_changes(func=value.func.with_changes(attr=cst.Name("other_rotary")))
    return f"other_rope = {code_of(renamed)} if self.args.other_rope_layers else None"
