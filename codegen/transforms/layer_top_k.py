"""Give each MoE layer its own top-k where the config's field is an int or a per-layer list
(hunyuan_v1_moe's `moe_topk`: `config.moe_topk[layer_idx]` unless it is an int)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._moe_edits import add_method, insert_before_class
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    calls,
    code_of,
    expression,
    run,
    statements,
)

FIELD = "top_k: int | list[int] = {default}  # experts per token; a list: each layer's, by index"

TOP_K_OF = '''
def top_k_of(self, layer_id: int) -> int:
    """Layer `layer_id`'s experts per token."""
    return self.top_k if isinstance(self.top_k, int) else self.top_k[layer_id]
'''

CHECK = '''
def layer_top_ks(value, n_layers: int) -> list[int]:
    """Each layer's top-k from the config's `{field}`, an int or one entry per layer; a list
    of another length is refused in one line."""
    if isinstance(value, int):
        return [value] * n_layers
    if len(value) != n_layers:
        raise ValueError(
            f"{package}: {field}={{list(value)!r}} has {{len(value)}} entries, one per layer is "
            f"needed: give an int or a list of {{n_layers}} (num_hidden_layers)"
        )
    return list(value)
'''

LOCAL = "top_ks = layer_top_ks(hf_config.{field}, {n_layers})"


class LayerTopK(Transform):
    """`MoE` takes its layer's top-k (`args.top_k_of(layer_id)`); ModelArgs.top_k is an int or
    a per-layer list mapped from the config's `field`, a list of another length refused."""

    name = "layer_top_k"

    def apply(self, package, features=None, *, field: str) -> None:
        layer = edits.ensure_layer_id(package)
        edits.replace_expressions(
            package,
            "model.py",
            "TransformerBlock",
            "__init__",
            lambda node: m.matches(node, m.Call(func=m.Name("MoE"))),
            lambda call: edits.with_arg(call, layer),
        )
        edits.add_param(package, "MoE", "__init__", "layer_id: int")
        edits.replace_expressions(
            package,
            "model.py",
            "MoE",
            "__init__",
            edits.is_code("args.top_k"),
            lambda _: expression("args.top_k_of(layer_id)"),
        )
        _per_layer_args(package, field)


def _per_layer_args(package, field: str) -> None:
    """ModelArgs: the field typed `int | list[int]`, `top_k_of`, and `from_hf_config` reading
    the config's field through `layer_top_ks` (the largest entry where it compared the one)."""
    run(package, "args.py", _RetypeField())
    add_method(package, "args.py", "ModelArgs", TOP_K_OF)
    insert_before_class(
        package, "args.py", "ModelArgs", CHECK.format(field=field, package=package.name)
    )
    call = _cls_call(package)
    top_k, n_layers = _keyword(call, "top_k"), _keyword(call, "n_layers")
    # the checks that compared the one top-k (`num_experts_per_tok > num_experts`) compare
    # the largest entry
    edits.replace_expressions(
        package,
        "args.py",
        "ModelArgs",
        "from_hf_config",
        lambda node: node.deep_equals(top_k),
        lambda _: expression("max(top_ks)"),
    )
    read = f"hf_config.{field}"
    edits.replace_expressions(
        package,
        "args.py",
        "ModelArgs",
        "from_hf_config",
        lambda node: isinstance(node, cst.Call) and edits.is_name(node.func, "cls"),
        lambda c: edits.set_arg(c, "top_k", f"{read} if isinstance({read}, int) else top_ks"),
    )
    local = LOCAL.format(field=field, n_layers=code_of(n_layers))
    checked = InsertStatements("ModelArgs", "from_hf_config", calls("require_settings"), local)
    run(package, "args.py", checked)


def _cls_call(package) -> cst.Call:
    found = m.findall(package.files["args.py"], m.Call(func=m.Name("cls")))
    found = [c for c in found if _keyword(c, "top_k") is not None]
    if not found:
        raise EditError("ModelArgs.from_hf_config builds no cls(..., top_k=...)")
    return found[0]


def _keyword(call: cst.Call, name: str) -> cst.BaseExpression | None:
    return next((a.value for a in call.args if a.keyword and a.keyword.value == name), None)


class _RetypeField(cst.CSTTransformer):
    """ModelArgs' `top_k: int = N` -> `top_k: int | list[int] = N` with its comment."""

    hits = 0

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0

    def visit_ClassDef(self, node) -> None:
        self.depth += node.name.value == "ModelArgs"

    def leave_ClassDef(self, original, updated):
        self.depth -= original.name.value == "ModelArgs"
        return updated

    def leave_SimpleStatementLine(self, original, updated):
        target = m.AnnAssign(target=m.Name("top_k"), value=m.DoNotCare())
        if not self.depth or not m.matches(updated.body[0], target):
            return updated
        self.hits += 1
        default = code_of(updated.body[0].value)
        (line,) = statements(FIELD.format(default=default))
        return line.with_changes(leading_lines=updated.leading_lines)
