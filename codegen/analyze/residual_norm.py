"""Post-LN: the norm applied to each residual sum, `x = norm(x + sublayer(x))`.

`detect_norm` calls a norm after a sublayer `post` whether it norms the sublayer's output
before the residual add (OLMo2) or the sum itself (GPT-1, the original Transformer). The
two compute different functions, so the second is told apart here, from the same facts: the
attention's sum is normed (and its input is not), and the MLP's sum is normed, its input
being at most that norm's output.
"""

from __future__ import annotations


def placement(found: str, facts: dict | None) -> str:
    """`post_residual` for a post-LN block, else `found` as it is."""
    if found != "post" or not facts:
        return found
    attention, mlp = facts.get("attention"), facts.get("mlp")
    if not isinstance(attention, dict) or not isinstance(mlp, dict):
        return found
    if not attention.get("post_add") or attention.get("pre") or attention.get("post_out"):
        return found
    fed = mlp.get("input") is not None and mlp.get("input") is attention.get("post_norm")
    if not mlp.get("post_add") or mlp.get("post_out") or (mlp.get("pre") and not fed):
        return found
    return "post_residual"
