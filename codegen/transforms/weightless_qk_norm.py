"""The q/k norm learns no scale (Llama4's L2 norm): a parameter-free RMS norm per head."""

from __future__ import annotations

import libcst.matchers as m

from codegen.transforms._ffn_edits import EditCalls, InsertClassBefore, rewrite_adapter
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, expression, run
from codegen.transforms.norm_weight import PLAIN_RMSNORM

_PLAIN = expression("PlainRMSNorm")
_NORMS = ("q_norm", "k_norm")


class WeightlessQkNorm(Transform):
    """`Attention`'s `q_norm` / `k_norm` are built as the weightless `PlainRMSNorm` (x over
    its root mean square in fp32, cast back: HF's L2 norm with the config's eps), and their
    checkpoint rows go: the checkpoint holds no tensor for them. A package whose norms are
    already weightless (`drop_norm_weight`) is left as it is."""

    name = "weightless_qk_norm"

    def apply(self, package, features=None) -> None:
        edit = EditCalls(
            "Attention", "__init__", "RMSNorm", lambda o, updated: updated.with_changes(func=_PLAIN)
        )
        package.edit("model.py", edit)
        plain = m.ClassDef(name=m.Name("PlainRMSNorm"))
        if edit.hits and not m.findall(package.module("model.py"), plain):
            run(package, "model.py", InsertClassBefore(PLAIN_RMSNORM))
        built = m.Call(func=m.Name("PlainRMSNorm"))
        if not m.findall(package.module("model.py"), built):
            raise EditError("Attention builds no RMSNorm q/k norm")
        rewrite_adapter(package, lambda hf, house: [] if _qk_norm_tensor(house) else [(hf, house)])


def _qk_norm_tensor(house: str | None) -> bool:
    if house is None:
        return False
    module, _, tensor = house.rpartition(".")
    return tensor == "weight" and module.rsplit(".", 1)[-1] in _NORMS
