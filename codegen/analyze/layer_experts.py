"""A router whose width, the number of routed experts, is a config field that is an int or a
per-layer list.

hunyuan_v1_moe's router takes `self.num_experts = config.num_experts if
isinstance(config.num_experts, int) else config.num_experts[layer_idx]` and scores them with
`nn.Linear(config.hidden_size, self.num_experts)`: a checkpoint may give each layer its own
number of experts. A package sizing every layer's router and experts by one count cannot
load such a checkpoint. Where a class of a layer's modules assigns `self.<attr>` in that form
(`int_or_list`) and builds a `Linear` whose output width is `self.<attr>`, the fact
`moe.layer_experts` is the field. Found by the code's structure with libcst; nothing is run.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.layer_top_k import detect_in_layers, per_layer_attrs
from codegen.analyze.source import ClassInfo


def detect(ctx: Ctx) -> str | None:
    """The config field of the router's per-layer expert count, cited, else None."""
    return detect_in_layers(ctx, "moe.layer_experts", in_class)


def in_class(info: ClassInfo) -> tuple[str, cst.CSTNode] | None:
    """(field, the assignment) where `info` sizes a Linear's output by a per-layer count."""
    for field, node, attr in per_layer_attrs(info):
        if any(_widens(method, attr) for method in info.methods.values()):
            return field, node
    return None


def _widens(method: cst.FunctionDef, attr: str) -> bool:
    """`method` builds a `Linear` (`nn.Linear(d, self.<attr>)`, `Linear(d,
    out_features=self.<attr>)`) whose output width is `self.<attr>`."""
    width = m.Attribute(value=m.Name("self"), attr=m.Name(attr))
    linear = m.Name("Linear") | m.Attribute(attr=m.Name("Linear"))
    keyword = m.Call(
        func=linear,
        args=[m.ZeroOrMore(), m.Arg(value=width, keyword=m.Name("out_features")), m.ZeroOrMore()],
    )
    positional = m.Call(
        func=linear,
        args=[m.Arg(keyword=None), m.Arg(value=width, keyword=None), m.ZeroOrMore()],
    )
    return bool(m.findall(method, positional | keyword))
