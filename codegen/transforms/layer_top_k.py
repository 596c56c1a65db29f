"""Give each MoE layer its own top-k where the config's field is an int or a per-layer list
(hunyuan_v1_moe's `moe_topk`: `config.moe_topk[layer_idx]` unless it is an int)."""

from __future__ import annotations

import libcst as cst

from codegen.transforms import _attention_edits as edits
from codegen.transforms._layer_lists import RetypeField, cls_call, keyword, moe_layer_id
from codegen.transforms._moe_edits import add_method, insert_before_class
from codegen.transforms.base import Transform
from codegen.transforms.edits import InsertStatements, calls, code_of, expression, run

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
        moe_layer_id(package)
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
    run(package, "args.py", RetypeField("top_k", FIELD))
    add_method(package, "args.py", "ModelArgs", TOP_K_OF)
    insert_before_class(
        package, "args.py", "ModelArgs", CHECK.format(field=field, package=package.name)
    )
    call = cls_call(package, "top_k")
    top_k, n_layers = keyword(call, "top_k"), keyword(call, "n_layers")
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
