"""Short-convolution layers (LFM2): the layers a per-layer config list marks mix tokens with a
gated causal depthwise convolution instead of attention; the other layers keep theirs."""

from __future__ import annotations

import ast
import json

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._rope_edits import add_args_field
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    ReplaceStatements,
    assigns,
    findall,
    run,
)

SHORT_CONV = '''
class ShortConv(nn.Module):
    """Gated short convolution: the input projection gives three parts; `b * x` runs through
    a causal depthwise convolution over the sequence (one filter of `conv_kernel` taps per
    channel: position t sees t - conv_kernel + 1 .. t, so a document starts from zeros), `c`
    gates its output and the output projection maps it back."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.in_proj = nn.Linear(args.dim, 3 * args.dim, bias=args.conv_bias)
        self.conv = nn.Conv1d(
            args.dim,
            args.dim,
            args.conv_kernel,
            groups=args.dim,
            padding=args.conv_kernel - 1,
            bias=args.conv_bias,
        )
        self.out_proj = nn.Linear(args.dim, args.dim, bias=args.conv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.shape[1]
        {parts} = self.in_proj(x).chunk(3, dim=-1)
        mixed = self.conv((b * x).transpose(1, 2))[..., :seq]  # the right padding cropped
        return self.out_proj(c * mixed.transpose(1, 2))
'''

BLOCK = """
self.short_conv = args.layer_types[{layer_id}] == {layer_type}
if self.short_conv:
    self.conv = ShortConv(args)
else:
    {attention}
"""

KERNEL = "int = {kernel}  # taps of a short-conv layer's causal depthwise filter"
BIAS = "bool = {bias}  # biases on a short-conv layer's projections and filter"

LAYER_TYPES = 'LAYER_TYPES = ("full_attention", {layer_type})'
FIELD = "tuple[str, ...] | None = None  # one of LAYER_TYPES per layer; None: all full"

HOUSE = ("in_proj", "conv", "out_proj")


class ShortConvLayers(Transform):
    """Layers whose `layer_types` entry is the analysed value build a `ShortConv` (input
    projection to three parts, `b * x` through a causal depthwise Conv1d cropped to the
    sequence, gated by `c`, output projection) as `conv` instead of their attention; the
    block calls it on the normed input instead of the attention. Packed documents run one at
    a time (`forward_packed`), so the filter restarts at each document.

    `short_conv` is the analysed `block.short_conv`: the config list and value selecting
    the layers, the HF attribute names (the layer's mixer, its projections and filter),
    which part gates after the filter, and the config fields of the kernel and the bias.
    """

    name = "short_conv_layers"

    def apply(self, package, features=None, *, short_conv: dict) -> None:
        if short_conv.get("parts") != 3 or short_conv.get("post_gate") not in (0, 1, 2):
            raise EditError(f"short convolution needs three parts and a gate, got {short_conv}")
        layer_type = short_conv["layer_type"]
        _args(package, short_conv)
        layer_id = edits.ensure_layer_id(package)
        names = ["b", "x"]
        names.insert(short_conv["post_gate"], "c")
        code = SHORT_CONV.replace("{parts}", ", ".join(names))
        edits.insert_definition(package, "model.py", code, before="TransformerBlock")
        attention = _statement(package, "TransformerBlock", "__init__", "self.attention")
        block = BLOCK.format(
            layer_id=layer_id, layer_type=json.dumps(layer_type), attention=attention
        )
        run(
            package,
            "model.py",
            ReplaceStatements("TransformerBlock", "__init__", assigns("self.attention"), block),
        )
        edits.replace_expressions(
            package,
            "model.py",
            "TransformerBlock",
            "forward",
            edits.call_of("self.attention"),
            _either,
        )
        run(package, "model.py", edits.BareConditionalArgs(), required=False)
        _adapter(package, short_conv)


def _args(package, short_conv: dict) -> None:
    kernel_field, bias_field = short_conv.get("kernel_field"), short_conv.get("bias_field")
    kernel = f"hf_config.{kernel_field}" if kernel_field else str(short_conv["kernel"])
    bias = f"hf_config.{bias_field}" if bias_field else str(bool(short_conv["bias"]))
    add_args_field(package, "conv_kernel", KERNEL.format(kernel=short_conv["kernel"]), kernel)
    add_args_field(package, "conv_bias", BIAS.format(bias=bool(short_conv["bias"])), bias)
    layer_type = short_conv["layer_type"]
    if not edits.has_definition(package, "args.py", "LAYER_TYPES"):
        definition = LAYER_TYPES.format(layer_type=json.dumps(layer_type))
        edits.insert_definition(package, "args.py", definition)
        add_args_field(package, "layer_types", FIELD, f"tuple(hf_config.{short_conv['field']})")
        edits.append_to_method(
            package, "args.py", "ModelArgs", "__post_init__", edits.LAYER_PATTERN_CHECKS
        )
        return

    def extend(node):
        values = [e.value for e in node.elements if isinstance(e.value, cst.SimpleString)]
        if layer_type in {v.evaluated_value for v in values}:
            return node
        elements = [*node.elements, cst.Element(cst.SimpleString(json.dumps(layer_type)))]
        return node.with_changes(elements=elements)

    run(package, "args.py", _ExtendTuple("LAYER_TYPES", extend))


class _ExtendTuple(cst.CSTTransformer):
    """The module-level `NAME = (...)` tuple rewritten by `extend`."""

    def __init__(self, name: str, extend):
        super().__init__()
        self.name, self.extend, self.hits = name, extend, 0

    def leave_Assign(self, original, updated):
        if m.matches(
            updated, m.Assign(targets=[m.AssignTarget(m.Name(self.name))], value=m.Tuple())
        ):
            self.hits += 1
            return updated.with_changes(value=self.extend(updated.value))
        return updated


def _statement(package, class_name: str, method: str, target: str) -> str:
    """The source of the statement assigning `target` in `class_name.method`."""
    found = edits.find_method(package.module("model.py"), class_name, method)
    for statement in found.body.body if found is not None else ():
        if assigns(target)(statement):
            return cst.Module([]).code_for_node(statement.body[0])
    raise EditError(f"{class_name}.{method} assigns no {target}")


def _either(call: cst.Call) -> cst.BaseExpression:
    """`self.attention(h, ...)` -> `(self.conv(h) if self.short_conv else
    self.attention(h, ...))`: the block calls the mixer its layer kind built."""
    first = call.args[0].value
    conv = cst.Call(func=cst.Attribute(cst.Name("self"), cst.Name("conv")), args=[cst.Arg(first)])
    test = cst.Attribute(cst.Name("self"), cst.Name("short_conv"))
    return cst.IfExp(
        test=test,
        body=conv,
        orelse=call,
        lpar=[cst.LeftParen()],
        rpar=[cst.RightParen()],
    )


def _adapter(package, short_conv: dict) -> None:
    """Rows for the filter and the projections (weights, and biases where they may be on)
    after the attention's last row, under the checkpoint's layer prefix."""
    module = package.module("state_dict_adapter.py")
    rows = [
        (ast.literal_eval(e.key.value), ast.literal_eval(e.value.value))
        for e in findall(module, m.DictElement(key=m.SimpleString(), value=m.SimpleString()))
    ]
    attention = [(hf, house) for hf, house in rows if house.startswith("layers.{}.attention.")]
    if not attention:
        raise EditError("state_dict_adapter.py has no attention rows to follow")
    prefix = attention[-1][0].split(".{}.", 1)[0]
    mixer = short_conv["module"]
    biases = short_conv.get("bias_field") or short_conv.get("bias")
    new = []
    for hf, house in zip((short_conv[n] for n in HOUSE), HOUSE, strict=True):
        for tensor in ("weight", "bias") if biases else ("weight",):
            new.append(
                (f"{prefix}.{{}}.{mixer}.{hf}.{tensor}", f"layers.{{}}.conv.{house}.{tensor}")
            )
    edits.insert_rows_after(package, attention[-1][1], new)
