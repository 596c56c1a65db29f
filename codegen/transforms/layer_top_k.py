"""Give each MoE layer its own top-k where the config's field is an int or a per-layer list
(hunyuan_v1_moe's `moe_topk`: `config.moe_topk[layer_idx]` unless it is an int)."""

from __future__ import annotations

import libcst as cst

from codegen.transforms import _attention_edits as edits
from codegen.transforms._layer_lists import (
    CheckPerLayer,
    RetypeField,
    cls_call,
    keyword,
    moe_layer_id,
    read_per_layer,
)
from codegen.transforms._moe_edits import add_method
from codegen.transforms.base import Transform
from codegen.transforms.edits import code_of, expression, run

FIELD = "top_k: int | list[int] = {default}  # experts per token; a list: each layer's, by index"

TOP_K_OF = '''
def top_k_of(self, layer_id: int) -> int:
    """Layer `layer_id`'s experts per token."""
    return self.top_k if isinstance(self.top_k, int) else self.top_k[layer_id]
'''


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
    """ModelArgs: the field typed `int | list[int]`, `top_k_of`, and `from_hf_config`
    passing the config's field on once `per_layer` has checked it, the checks that compared
    the one top-k comparing each layer's."""
    run(package, "args.py", RetypeField("top_k", FIELD))
    add_method(package, "args.py", "ModelArgs", TOP_K_OF)
    call = cls_call(package, "top_k")
    top_k, n_layers = keyword(call, "top_k"), code_of(keyword(call, "n_layers"))
    read_per_layer(package, "top_ks", field, n_layers)
    run(package, "args.py", CheckPerLayer(top_k, "top_ks", n_layers), required=False)
    edits.replace_expressions(
        package,
        "args.py",
        "ModelArgs",
        "from_hf_config",
        lambda node: isinstance(node, cst.Call) and edits.is_name(node.func, "cls"),
        lambda c: edits.set_arg(c, "top_k", f"hf_config.{field}"),
    )
