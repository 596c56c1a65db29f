"""RMSNorms multiply their weight into the fp32 values and cast last (T5-style: OLMo-2, flint)."""

from __future__ import annotations

from codegen.transforms._ffn_edits import EditCalls, InsertClassBefore, drop_import
from codegen.transforms.base import Transform
from codegen.transforms.edits import expression, run

# Llama's RMSNorm casts back before the weight; this one scales in fp32 and casts the
# product, as the checkpoint's norm does (the two round differently in bf16)
CAST_LAST_RMSNORM = '''
class CastLastRMSNorm(nn.Module):
    """RMSNorm whose weight scales the fp32 normalised values; the product is cast last."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = torch.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return (self.weight * normed).to(x.dtype)
'''

_CAST_LAST = expression("CastLastRMSNorm")


class RmsNormWeightFp32(Transform):
    """Every `RMSNorm(dim, eps)` of model.py (block, final and q/k norms) becomes
    `CastLastRMSNorm`: the weight multiplies the fp32 values and the product is cast to the
    input dtype, instead of the values being cast before the weight."""

    name = "rmsnorm_weight_fp32"

    def apply(self, package, features=None) -> None:
        rename = EditCalls(
            None, None, "RMSNorm", lambda o, updated: updated.with_changes(func=_CAST_LAST)
        )
        run(package, "model.py", rename)
        run(package, "model.py", InsertClassBefore(CAST_LAST_RMSNORM))
        drop_import(package, "model.py", "codegen.layers.norm", "RMSNorm")
