"""ALiBi: a per-head linear bias over the key positions added to the attention scores
(mpt, bloom), in place of a rotation of q and k."""

from __future__ import annotations

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, add_import, assigns, run

BIAS = "self.alibi = AlibiBias(args.n_heads)  # slope * key position, per head"
# after the scaled scores, before the mask (HF: scores * scale + bias, then masked)
ADD = "scores = scores + self.alibi(positions)  # (batch, heads, 1, keys): float32"


class Alibi(Transform):
    """`Attention` owns an `AlibiBias` (the shared layer `codegen/layers/alibi.py`, vendored
    into the package) and adds its bias for the key positions to the scaled scores, before
    the causal mask (built in fp32: the scores are fp32 once the bias is added). SDPA's
    `is_causal` takes no additive bias, so the attention maths is written out (HF's eager
    order: scaled scores + bias, mask, float32 softmax). `positions`
    (the model's input, restarting per packed document) is handed through each block.
    Run after `no_rope`: the model has no rotary left to give positions."""

    name = "alibi"

    def apply(self, package, features=None) -> None:
        if "self.rotary" in package.module("model.py").code:
            raise EditError("ALiBi replaces the rotary embedding: run no_rope first")
        add_import(package, "model.py", "codegen.layers.alibi", "AlibiBias")
        run(
            package, "model.py", InsertStatements("Attention", "__init__", assigns("self.wo"), BIAS)
        )
        edits.make_attention_explicit(package)
        run(package, "model.py", InsertStatements("Attention", "forward", assigns("scores"), ADD))
        edits.set_table_dtype(package, "torch.float32")  # the mask is added to fp32 scores
        for cls in ("Attention", "TransformerBlock"):
            edits.add_param(package, cls, "forward", "positions: torch.Tensor")
        _pass_along(package, "TransformerBlock", "forward", "self.attention")
        _pass_along(package, "Model", "forward", "layer")


def _pass_along(package, class_name: str, method: str, callee: str) -> None:
    """Calls of `callee` in `class_name.method` get `positions=positions` (last)."""
    edits.replace_expressions(
        package,
        "model.py",
        class_name,
        method,
        edits.call_of(callee),
        lambda call: edits.with_arg(call, "positions", keyword="positions", before=""),
    )
