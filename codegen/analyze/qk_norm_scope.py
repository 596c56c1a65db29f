"""Where the q/k norm applies and whether it learns a scale (Llama4's L2 norm).

Llama4 norms q and k with a parameter-free RMS norm (no weight in the checkpoint), and builds
it only on the layers that rotate q and k (`if use_qk_norm and use_rope`), so its NoPE layers
attend with unnormed q and k. Both facts come from the analysed attention instances: the norm
module's own attributes, and which layers hold one against which apply RoPE.
"""

from __future__ import annotations

from codegen.analyze.evaluate import ModuleRec, ParamRec

# torch norm classes whose __init__ makes the scale (unless told `elementwise_affine=False`)
_TORCH_NORMS = ("LayerNorm", "RMSNorm", "GroupNorm")


def has_weight(norm: ModuleRec | None) -> bool:
    """The q/k norm holds a parameter (or a child module that could); a torch norm class
    (Persimmon's `nn.LayerNorm` per head) does unless built without an affine scale."""
    if norm is None:
        return True
    if any(isinstance(v, ParamRec | ModuleRec) for v in norm.attrs.values()):
        return True
    if norm.kind in _TORCH_NORMS and (norm.cls is None or norm.ext_base is not None):
        affine = norm.kwargs.get("elementwise_affine", norm.kwargs.get("affine", True))
        return affine is not False
    return False


def layers(per_layer: list[dict]) -> str:
    """`rope` when exactly the layers that apply RoPE hold a q/k norm (and some do not),
    else `all`."""
    attention = [p for p in per_layer if p.get("info") is not None]
    normed = [p for p in attention if p["info"].q_norm is not None or p["info"].k_norm is not None]
    if not normed or len(normed) == len(attention):
        return "all"
    bare = [p for p in attention if p not in normed]
    if all(p["rope"] for p in normed) and not any(p["rope"] for p in bare):
        return "rope"
    return "all"
