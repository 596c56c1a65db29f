"""Change every norm of the model (block, final, QK) from RMSNorm to the target's kind."""

from __future__ import annotations

import json

from codegen.transforms._ffn_edits import EditCalls, InsertClassBefore, adapter_rows, drop_import
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, code_of, expression, run
from codegen.transforms.qkv_bias import set_adapter_rows

# HF GemmaRMSNorm: normalise and scale in fp32, cast last; the weight is an offset from 1.
# (Llama's RMSNorm casts back before the weight; here the order matters in bf16.)
OFFSET_RMSNORM = '''
class OffsetRMSNorm(nn.Module):
    """RMSNorm scaled by (1 + weight), computed in fp32 and cast back last (HF GemmaRMSNorm)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def init_parameters(self, std: float) -> None:
        nn.init.zeros_(self.weight)  # the scale is 1 + weight: it starts at 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = torch.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return (normed * (1.0 + self.weight.float())).type_as(x)
'''

# HF LayerNorm1P: nn.LayerNorm whose scale is (1 + weight). HF's init starts the weight at
# one like any LayerNorm's (a scale of 2), so init_weights' LayerNorm row holds for it too.
OFFSET_LAYERNORM = '''
class OffsetLayerNorm(nn.LayerNorm):
    """LayerNorm scaled by (1 + weight) (HF LayerNorm1P)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight + 1.0, self.bias, self.eps)
'''

KINDS = ("layernorm", "layernorm_offset", "rmsnorm_offset")
# the class each LayerNorm kind builds (set_norm_bias edits calls of these)
LAYERNORM_CLASSES = {"layernorm": "nn.LayerNorm", "layernorm_offset": "OffsetLayerNorm"}


class SetNormKind(Transform):
    """Every `RMSNorm(dim, eps)` of model.py becomes the target's norm; adapter rows follow.

    `layernorm`: `nn.LayerNorm(dim, eps=eps)`, with a bias (mapped for every norm) when
    `bias`, else `bias=False`; `layernorm_offset`: the same with `OffsetLayerNorm` (above).
    `rmsnorm_offset`: the `OffsetRMSNorm` class above, added to model.py. QK-norms built
    with RMSNorm change too: models with these norm kinds build their q/k norms from the
    same class (cohere's LayerNorm, gemma3's offset RMSNorm).
    """

    name = "set_norm_kind"

    def apply(self, package, features=None, *, kind: str, bias: bool = False) -> None:
        if kind not in KINDS:
            raise ValueError(f"norm kind {kind!r} is not one of {KINDS}")
        if kind == "rmsnorm_offset" and bias:
            raise ValueError("an offset RMSNorm has no bias")
        if kind in LAYERNORM_CLASSES:
            suffix = "" if bias else ", bias=False"
            cls = LAYERNORM_CLASSES[kind]

            def rewrite(original, updated):
                if len(updated.args) != 2:
                    raise EditError(f"{code_of(updated)}: expected RMSNorm(dim, eps)")
                dim, eps = (code_of(arg.value) for arg in updated.args)
                return expression(f"{cls}({dim}, eps={eps}{suffix})")

            run(package, "model.py", EditCalls(None, None, "RMSNorm", rewrite))
            if kind == "layernorm_offset":
                run(package, "model.py", InsertClassBefore(OFFSET_LAYERNORM))
            set_adapter_rows(package, norm_bias_rows(package), bias)
        else:
            rename = EditCalls(
                None, None, "RMSNorm", lambda o, updated: updated.with_changes(func=_OFFSET)
            )
            run(package, "model.py", rename)
            run(package, "model.py", InsertClassBefore(OFFSET_RMSNORM))
        drop_import(package, "model.py", "codegen.layers.norm", "RMSNorm")


_OFFSET = expression("OffsetRMSNorm")


def norm_bias_rows(package) -> list[tuple[str, str]]:
    """A `.bias` row beside the weight row of every norm (house names end in `norm`)."""
    rows = []
    for hf, house in adapter_rows(package):
        if house is not None and house.endswith("norm.weight"):
            bias_hf = hf.removesuffix(".weight") + ".bias"
            bias_house = house.removesuffix(".weight") + ".bias"
            rows.append((json.dumps(bias_hf), json.dumps(bias_house)))
    return rows
