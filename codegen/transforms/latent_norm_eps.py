"""The q/kv latent norms of latent attention take the config's rms_norm_eps."""

from __future__ import annotations

import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, run

_LATENT_NORMS = ("q_norm", "kv_norm")


class LatentNormEps(Transform):
    """`self.q_norm = RMSNorm(args.q_lora_rank)` and `self.kv_norm = RMSNorm(...)` (the
    reference's 1e-6) take `args.norm_eps`, the config's rms_norm_eps, as dots3 builds its
    latent norms."""

    name = "latent_norm_eps"

    def apply(self, package, features=None) -> None:
        step = _WithEps()
        run(package, "model.py", step, required=False)
        if step.hits != len(_LATENT_NORMS):
            raise EditError("Attention builds no RMSNorm(rank) q_norm and kv_norm to give an eps")


class _WithEps(edits.InMethod):
    def __init__(self):
        super().__init__("Attention", "__init__")

    def leave_Assign(self, original, updated):
        latent = m.Assign(
            targets=[
                m.AssignTarget(
                    m.Attribute(
                        value=m.Name("self"), attr=m.OneOf(*(m.Name(n) for n in _LATENT_NORMS))
                    )
                )
            ],
            value=m.Call(func=m.Name("RMSNorm"), args=[m.Arg(keyword=None)]),
        )
        if self.in_scope() and m.matches(updated, latent):
            self.hits += 1
            return updated.with_changes(value=edits.with_arg(updated.value, "args.norm_eps"))
        return updated
