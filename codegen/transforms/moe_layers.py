"""Which layers are MoE: HF's own decoder-layer condition, evaluated from ModelArgs.

The analysis restates the condition HF's decoder layer uses to build the MoE block instead
of the dense feed-forward as "layer `layer_idx` is MoE" over `config` fields
(`Features.moe.layer_condition`, e.g. `config.mlp_layer_types[layer_idx] == "sparse"` or
`(layer_idx + 1) % config.moe_layer_interval == 0 and layer_idx >= config.moe_layer_start_index`).
The package evaluates the same expression in `ModelArgs.is_moe_layer`, over fields of the same
names mapped in `from_hf_config`, so every config setting picks the layers HF picks.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._attention_edits import ensure_layer_id
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, assigns, code_of, run

METHOD = '''
def is_moe_layer(self, layer_id: int) -> bool:
    """HF's condition for a MoE feed-forward in layer `layer_id`."""
    return {condition}
'''
BUILD = "self.is_moe = args.is_moe_layer({layer_id})"


class SetMoeLayers(Transform):
    """The MoE block goes on the layers HF's condition (`condition`, over `config` and
    `layer_idx`) selects: `ModelArgs.is_moe_layer` evaluates it over same-named fields and
    `TransformerBlock` asks it. Replaces a condition the package had (the reference's
    `decoder_sparse_step` rule, say); its fields then read by nothing are dropped by tidy."""

    name = "set_moe_layers"

    def apply(self, package, features=None, *, condition: str | None = None) -> None:
        if not moe_edits.has_class(package, "model.py", "MoE"):
            raise EditError("model.py has no MoE class (run add_moe first)")
        install_condition(package, condition)
        layer_id = ensure_layer_id(package)
        moe_edits.replace_statement(
            package,
            "model.py",
            "TransformerBlock",
            "__init__",
            assigns("self.is_moe"),
            BUILD.format(layer_id=layer_id),
        )


def install_condition(package, condition: str | None) -> None:
    """`ModelArgs.is_moe_layer` evaluating `condition`, with the config fields it reads
    added to ModelArgs and mapped in `from_hf_config` (a field ModelArgs has is reused)."""
    if not condition or condition == "unknown":
        raise ValueError(f"MoE layer condition {condition!r} cannot be evaluated from ModelArgs")
    try:
        parsed = cst.parse_expression(condition)
    except cst.ParserSyntaxError as error:
        raise ValueError(f"MoE layer condition {condition!r} does not parse") from error
    reads = config_reads(parsed)
    if not reads:
        raise ValueError(f"MoE layer condition {condition!r} reads no config field")
    have = _fields(package)
    fields, kwargs = [], {}
    for name, kind in reads.items():
        if name in have:
            continue
        fields.append(FIELD[kind].format(name=name))
        kwargs[name] = MAPPING[kind].format(name=name)
    if fields:
        moe_edits.add_args_fields(
            package, "# which layers are MoE (HF's condition)\n" + "\n".join(fields)
        )
        moe_edits.add_config_kwargs(package, kwargs)
    run(package, "args.py", _DropMethod("ModelArgs", "is_moe_layer"), required=False)
    body = code_of(parsed.visit(_OverArgs()))
    moe_edits.add_method(package, "args.py", "ModelArgs", METHOD.format(condition=body))


# how a config field the condition reads becomes a ModelArgs field, by how it is read
FIELD = {
    "strings": "{name}: tuple[str, ...] = ()  # per layer, indexed by the layer",
    "ints": "{name}: tuple[int, ...] = ()  # layer indices",
    "int": "{name}: int = 0",
    "bool": "{name}: bool = False",
}
MAPPING = {
    "strings": "tuple(hf_config.{name})",
    "ints": "tuple(hf_config.{name} or ())",
    "int": "hf_config.{name}",
    "bool": "hf_config.{name}",
}


def config_reads(condition: cst.BaseExpression) -> dict[str, str]:
    """config field -> how the condition reads it: `strings` (indexed, compared with a
    string), `ints` (a collection of layer indices: indexed or searched with `in`), `bool`
    (a bare truth value), else `int`."""
    kinds: dict[str, str] = {}
    for attribute in m.findall(condition, m.Attribute(value=m.Name("config"))):
        kinds.setdefault(attribute.attr.value, "int")
    for node in m.findall(condition, m.Subscript(value=m.Attribute(value=m.Name("config")))):
        kinds[node.value.attr.value] = "ints"
    for node in m.findall(condition, m.Comparison()):
        operands = [node.left, *(c.comparator for c in node.comparisons)]
        strings = any(isinstance(o, cst.SimpleString) for o in operands)
        for operand, target in zip(operands, [None, *node.comparisons], strict=True):
            if m.matches(operand, m.Subscript(value=m.Attribute(value=m.Name("config")))):
                kinds[operand.value.attr.value] = "strings" if strings else "ints"
            if target is not None and isinstance(target.operator, cst.In | cst.NotIn):
                if m.matches(operand, m.Attribute(value=m.Name("config"))):
                    kinds[operand.attr.value] = "ints"
    truth = [condition]
    for node in m.findall(condition, m.BooleanOperation() | m.UnaryOperation()):
        truth += (
            [node.left, node.right] if isinstance(node, cst.BooleanOperation) else [node.expression]
        )
    for node in truth:
        if m.matches(node, m.Attribute(value=m.Name("config"))):
            kinds[node.attr.value] = "bool"
    return kinds


def _fields(package) -> set[str]:
    module = package.module("args.py")
    return {node.target.value for node in m.findall(module, m.AnnAssign(target=m.Name()))}


class _OverArgs(cst.CSTTransformer):
    """`config.X` -> `self.X`, `layer_idx` -> `layer_id`."""

    def leave_Attribute(self, original, updated):
        if m.matches(updated.value, m.Name("config")):
            return updated.with_changes(value=cst.Name("self"))
        return updated

    def leave_Name(self, original, updated):
        return updated.with_changes(value="layer_id") if updated.value == "layer_idx" else updated


class _DropMethod(cst.CSTTransformer):
    def __init__(self, class_name: str, method: str) -> None:
        super().__init__()
        self.class_name, self.method, self.hits = class_name, method, 0
        self._class: list[str] = []

    def visit_ClassDef(self, node):
        self._class.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self._class.pop()
        return updated

    def leave_FunctionDef(self, original, updated):
        if self._class[-1:] == [self.class_name] and updated.name.value == self.method:
            self.hits += 1
            return cst.RemoveFromParent()
        return updated
