"""The full-attention layers' keys and values read inputs of their own: the layer's input
through a norm each, beside the queries' norm (Inkling-2's full layers)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    ReplaceStatements,
    assigns,
    code_of,
    dotted,
    expression,
    findall,
    run,
)
from codegen.transforms.log_scaled_layers import CLASS

# the house names of the full layers' norms, by what each norms the input for
NORMS = {"q": "query_norm", "k": "key_norm", "v": "value_norm"}
INPUTS = {"k": "xk", "v": "xv"}
BUILD = """if self.sliding:
    self.attention_norm = {norm}
else:  # the queries, keys and values each read the input through a norm of their own
    self.query_norm = {norm}
    self.key_norm = {norm}
    self.value_norm = {norm}
"""
NOTE = " `xk`, `xv`: the keys' and values' inputs (the layer's input through norms of their own)."


class LayerKvInputs(Transform):
    """On the full-attention layers (`LogScaledAttention`, see `log_scaled_layers`) the keys
    and values read inputs of their own: the block builds `query_norm`, `key_norm` and
    `value_norm` there in place of `attention_norm` and hands the attention the input through
    each; `LogScaledAttention.forward` takes `xk` and `xv` and its key and value projections
    read them. `inputs`: the analysed `attention.layer_inputs` ({"norms": {"q"|"k"|"v": HF
    norm attribute}, "reads": {"k"|"v": (HF projection attributes,)}}); the adapter maps each
    norm's weight. `residuals`: the analysed `block.attention_residuals`; where its attention
    module reads a query per input (`reads`: (HF norm, argument) per query), the block's
    stream is that module's tuple of outputs and each norm reads the output HF hands it."""

    name = "layer_kv_inputs"

    def apply(
        self, package, features=None, *, inputs: dict | None = None, residuals: dict | None = None
    ) -> None:
        found = inputs or {}
        norms, reads = found.get("norms") or {}, found.get("reads") or {}
        if set(norms) != set(NORMS) or set(reads) != set(INPUTS):
            raise EditError(f"full layers' inputs need q/k/v norms and k/v readers, got {found}")
        if not edits.has_definition(package, "model.py", CLASS):
            raise EditError(f"the full layers' inputs are {CLASS}'s: no such class")
        rows = _rows(package)
        norm = _built_norm(package)
        run(
            package,
            "model.py",
            ReplaceStatements(
                "TransformerBlock",
                "__init__",
                assigns("self.attention_norm"),
                BUILD.format(norm=norm).rstrip(),
            ),
        )
        _attend(package, _outputs(norms, residuals))
        for role, name in INPUTS.items():
            edits.add_param(package, CLASS, "forward", f"{name}: torch.Tensor")
            for attribute in reads[role]:
                house = rows["by_hf"].get(f"{rows['attention']}.{attribute}.weight")
                if house is None:
                    raise EditError(f"state_dict_adapter.py has no row for {attribute}")
                proj = house.split(".")[-2]  # layers.{}.attention.wk.weight -> wk
                edits.replace_expressions(
                    package,
                    "model.py",
                    CLASS,
                    "forward",
                    edits.call_of(f"self.{proj}"),
                    lambda call, name=name: call.with_changes(args=[cst.Arg(cst.Name(name))]),
                )
        run(package, "model.py", edits.DocstringNote(CLASS, "forward", NOTE))
        new = [
            (f"{rows['layer']}.{norms[role]}.weight", f"layers.{{}}.{house}.weight")
            for role, house in NORMS.items()
        ]
        edits.insert_rows_after(package, "layers.{}.attention_norm.weight", new)


def _built_norm(package) -> str:
    """The expression the block builds its attention norm with."""
    init = edits.find_method(package.module("model.py"), "TransformerBlock", "__init__")
    for statement in init.body.body if init is not None else ():
        if assigns("self.attention_norm")(statement):
            return code_of(statement.body[0].value)
    raise EditError("TransformerBlock.__init__ builds no self.attention_norm")


def _outputs(norms: dict, residuals: dict | None) -> dict | None:
    """{"q"|"k"|"v": the index of the depth module's output each norm reads}, where the
    block attention residuals read a query per input; else None (one stream)."""
    wide = [e["reads"] for e in ((residuals or {}).get("layer") or {}).values() if e.get("reads")]
    if not wide:
        return None
    roles = {attribute: role for role, attribute in norms.items()}
    found = {roles.get(norm): index for index, (norm, _) in enumerate(wide[0])}
    if len(wide) != 1 or set(found) != set(NORMS):
        raise EditError(f"the depth module's outputs reach other norms than q/k/v's: {wide}")
    return found


def _attend(package, outputs: dict | None) -> None:
    """The full layers' branch of the block's attention call (`log_scaled_layers` leaves
    `self.attention(...) if self.sliding else self.attention(...)`) hands the attention the
    input through each of their norms (`outputs`: each norm's output of the stream, a
    tuple, where the block attention residuals read a query per input)."""
    forward = edits.find_method(package.module("model.py"), "TransformerBlock", "forward")
    per_type = m.IfExp(
        test=dotted("self.sliding"),
        body=m.Call(func=dotted("self.attention")),
        orelse=m.Call(func=dotted("self.attention")),
    )
    found = findall(forward, per_type) if forward else []
    if len(found) != 1:
        raise EditError("TransformerBlock.forward has no attention call per layer type")
    edits.replace_expressions(
        package,
        "model.py",
        "TransformerBlock",
        "forward",
        lambda node: m.matches(node, per_type),
        lambda node: node.with_changes(orelse=_full_call(node.orelse, outputs)),
    )


def _full_call(call: cst.Call, outputs: dict | None) -> cst.Call:
    """The full layers' attention call with the queries, keys and values each reading the
    input (or its `outputs`' item) through their own norm, cast as the attention norm's
    output is (`.to(dtype)` where the block attention residuals run in fp32)."""
    first = call.args[0].value if call.args else None
    cast = None
    if m.matches(first, m.Call(func=m.Attribute(attr=m.Name("to")))):
        cast, first = first, first.func.value
    if not edits.call_of("self.attention_norm")(first):
        raise EditError("the block's attention reads other than self.attention_norm(...)")
    stream = code_of(first.args[0].value)

    def normed(role: str) -> cst.BaseExpression:
        read = stream if outputs is None else f"{stream}[{outputs[role]}]"
        norm = expression(f"self.{NORMS[role]}({read})")
        return norm if cast is None else cast.with_changes(func=cast.func.with_changes(value=norm))

    full = call.with_changes(
        args=[
            cst.Arg(normed("q")),
            *call.args[1:],
            cst.Arg(normed("k")),
            cst.Arg(normed("v")),
        ]
    )
    return edits.without_trailing_comma(full)


def _rows(package) -> dict:
    """The adapter's HF prefixes: the layer's (from the attention norm's row) and the
    attention's (from its output projection's row); `by_hf`: HF key -> house key."""
    from codegen.transforms._ffn_edits import rewrite_adapter

    found: dict[str, str] = {}

    def collect(hf, house):
        if house is not None:
            found[hf] = house
        return [(hf, house)]

    rewrite_adapter(package, collect)
    by_house = {house: hf for hf, house in found.items()}
    norm, wo = (by_house.get(f"layers.{{}}.{k}.weight") for k in ("attention_norm", "attention.wo"))
    if norm is None or wo is None:
        raise EditError("state_dict_adapter.py has no rows for the attention norm and wo")
    return {"by_hf": found, "layer": norm.rsplit(".", 2)[0], "attention": wo.rsplit(".", 2)[0]}
