"""An MLP sized per layer: its inner width is a config list indexed by the layer.

gemma3n's MLP takes `self.intermediate_size = config.intermediate_size[layer_idx]` and sizes
its projections with it (MatFormer checkpoints slice layers to widths of their own). A
package reading one `intermediate_size` builds no such model. Where the representative
layer's MLP class assigns `self.<attr> = config.<field>[<an __init__ parameter>]` and builds
an `nn.Linear` with `self.<attr>`, the fact `ffn.layer_widths` is `<field>`.
"""

from __future__ import annotations

import ast

from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.roles import MLP


def detect(ctx: Ctx) -> str | None:
    layers = [rec for rec in ctx.model.layers or () if isinstance(rec, ModuleRec)]
    if not layers:
        return None
    for _, child in layers[0].children():
        if not isinstance(child, ModuleRec) or ctx.roles.role(child) != MLP:
            continue
        info = child.cls
        init = info.methods.get("__init__") if info is not None else None
        if init is None:
            return None
        try:
            node = ast.parse(info.sf.code(init)).body[0]
        except SyntaxError:
            return None
        field = _indexed_width(node)
        if field is not None:
            ctx.cite("ffn.layer_widths", f"{ctx.class_site(child)} (config.{field}[layer])")
        return field
    return None


def _indexed_width(init: ast.FunctionDef) -> str | None:
    params = {a.arg for a in init.args.args[1:]}
    widths = {}
    for node in ast.walk(init):
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Attribute)
            and isinstance(node.value, ast.Subscript)
            and isinstance(node.value.slice, ast.Name)
            and node.value.slice.id in params
            and isinstance(node.value.value, ast.Attribute)
            and isinstance(node.value.value.value, ast.Name)
            and node.value.value.value.id == "config"
        ):
            widths[node.targets[0].attr] = node.value.value.attr
    for node in ast.walk(init):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "Linear":
            for arg in node.args:
                if isinstance(arg, ast.Attribute) and arg.attr in widths:
                    return widths[arg.attr]
    return None
