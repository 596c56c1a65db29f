"""Causal depthwise convolutions over the attention's and the feed-forward's outputs, each
added back to its input, before the residual adds (inkling's short convolutions)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._residual_conv import add_causal_conv
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, assigns, run

# the block's attribute of each sublayer, and the calls whose output the conv reads
SUBLAYERS = {"attention": ("attention",), "ffn": ("feed_forward", "moe")}
BUILD = "self.{name} = CausalConv(args.dim, args.conv_kernel)"


class OutputConvs(Transform):
    """`TransformerBlock` builds a `CausalConv` (a causal depthwise Conv1d over the
    sequence, added back to its input) per sublayer the analysis names, `attention_conv`
    and `ffn_conv`, and filters that sublayer's output with it before the residual add:
    `x + self.attention_conv(self.attention(...))`; the FFN's calls (`feed_forward`, and
    `moe` where the layer has one) likewise. `convs` is the analysed `block.output_convs`:
    the HF module of each sublayer's filter (the adapter maps `<module>.<conv>.weight`),
    the kernel and its config field, and whether the filter runs in fp32."""

    name = "output_convs"

    def apply(self, package, features=None, *, convs: dict) -> None:
        add_causal_conv(package, convs)
        prefix = _layer_prefix(package)
        rows = []
        for module, sublayer in convs["convs"]:
            if sublayer not in SUBLAYERS:
                raise EditError(f"output_convs: a filter on {sublayer!r} output")
            name = f"{sublayer}_conv"
            hits = 0
            for callee in _callees(package, SUBLAYERS[sublayer]):
                hits += edits.replace_expressions(
                    package,
                    "model.py",
                    "TransformerBlock",
                    "forward",
                    edits.call_of(callee),
                    lambda call, name=name: cst.Call(
                        func=cst.parse_expression(f"self.{name}"), args=[cst.Arg(call)]
                    ),
                    required=False,
                )
            if not hits:
                raise EditError(f"TransformerBlock.forward calls no {SUBLAYERS[sublayer]}")
            run(
                package,
                "model.py",
                InsertStatements(
                    "TransformerBlock",
                    "__init__",
                    assigns(f"self.{SUBLAYERS[sublayer][0]}")
                    if sublayer == "attention"
                    else assigns("self.ffn_norm"),
                    BUILD.format(name=name),
                ),
            )
            rows.append(
                (f"{prefix}.{module}.{convs['conv']}.weight", f"layers.{{}}.{name}.conv.weight")
            )
        edits.insert_after_layer_rows(package, rows)


def _callees(package, attributes: tuple[str, ...]) -> list[str]:
    """`self.<attribute>` for each attribute, and the locals of `TransformerBlock.forward`
    assigned one of them (`ffn = self.moe if self.is_moe else self.feed_forward`)."""
    callees = [f"self.{a}" for a in attributes]
    forward = edits.find_method(package.module("model.py"), "TransformerBlock", "forward")
    for assign in (
        m.findall(forward, m.Assign(targets=[m.AssignTarget(m.Name())])) if forward else ()
    ):
        if any(m.findall(assign.value, edits.dotted(c)) for c in callees):
            callees.append(assign.targets[0].target.value)
    return callees


def _layer_prefix(package) -> str:
    """The HF prefix of a layer's keys (`model.layers.{}`), from the attention norm's row."""
    from codegen.transforms._ffn_edits import rewrite_adapter

    found = []

    def collect(hf, house):
        if house == "layers.{}.attention_norm.weight":
            found.append(hf.split(".{}.", 1)[0] + ".{}")
        return [(hf, house)]

    rewrite_adapter(package, collect)
    if not found:
        raise EditError("state_dict_adapter.py has no row for layers.{}.attention_norm.weight")
    return found[0]
