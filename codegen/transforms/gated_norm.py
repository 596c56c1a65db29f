"""Gated block norms: `y = norm(x); y * sigmoid(w2(act(w1(y))))` (A.X-K2's gated RMSNorm)
where the target gates a layer norm, on every layer or on the MoE layers only."""

from __future__ import annotations

import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._ffn_edits import adapter_rows, rewrite_adapter
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    ReplaceStatements,
    assigns,
    code_of,
    run,
)

CLASS = '''
class GatedRMSNorm(nn.Module):
    """RMSNorm whose output is scaled by a gate computed from it:
    `y * sigmoid(w2({act}(w1(y))))`, `w1` down to a small rank and `w2` back up."""

    def __init__(self, dim: int, rank: int, eps: float):
        super().__init__()
        self.norm = RMSNorm(dim, eps)
        self.w1 = nn.Linear(dim, rank, bias=False)
        self.w2 = nn.Linear(rank, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        return {gated}
'''
GATE = "self.w2(F.{act}(self.w1(y)))"
GATED = "y * torch.sigmoid({gate})"
GATED_FP32 = "(y * torch.sigmoid({gate}.float())).to(y.dtype)"
_ACTS = ("silu", "gelu", "relu")


class GatedNorm(Transform):
    """Each block norm the target gates becomes a `GatedRMSNorm`: the same RMSNorm (its
    checkpoint weight under `<norm>`), then the output times `sigmoid(w2(act(w1(y))))`, the
    two gate matrices under the target's names (`gated_parts` of the analysis's
    `norm.gated`: the gate module, its two linears in the order they apply, the activation,
    the config field of the gate's rank, whether the sigmoid takes fp32 input).

    `layers` says per checkpoint norm where it is gated: `all` (every layer) or `moe` (the
    layers that build a MoE block; the others keep the plain norm and its checkpoint row).
    """

    name = "gated_norm"

    def apply(self, package, features=None, *, parts: dict) -> None:
        act = parts.get("act")
        field = parts.get("rank_field")
        if act not in _ACTS or not field or not isinstance(parts.get("rank"), int):
            raise EditError(
                f"a gated norm with activation {act!r} and rank field {field!r} has no edit"
            )
        gate = GATE.format(act=act)
        gated = (GATED_FP32 if parts.get("fp32") else GATED).format(gate=gate)
        edits.insert_definition(
            package, "model.py", CLASS.format(act=act, gated=gated), before="Attention"
        )
        edits.add_args_field(
            package,
            f"{field}: int = {parts['rank']}  # inner width of the gated norms' gate",
            f"{field}=hf_config.{field}",
        )
        rows = dict(adapter_rows(package))
        for hf_name, where in parts["layers"].items():
            hf = f"model.layers.{{}}.{hf_name}.weight"
            house = rows.get(hf)
            if house is None or not house.endswith(".weight"):
                raise EditError(f"the adapter maps no {hf} to a block norm")
            norm = house.removeprefix("layers.{}.").removesuffix(".weight")
            _gate_norm(package, norm, where, field)
            own, gate_module = f"model.layers.{{}}.{hf_name}", parts["gate"]
            first, second = parts["linears"]
            new = [
                (f"{own}.{parts['norm']}.weight", f"layers.{{}}.{norm}.norm.weight"),
                (f"{own}.{gate_module}.{first}.weight", f"layers.{{}}.{norm}.w1.weight"),
                (f"{own}.{gate_module}.{second}.weight", f"layers.{{}}.{norm}.w2.weight"),
            ]
            disk = edits.disk_names(features, hf_name)
            new = [(disk.get(hf_key, hf_key), house_key) for hf_key, house_key in new]
            edits.insert_rows_after(package, house, new)
            if where == "all":  # no layer keeps the plain norm
                rewrite_adapter(package, lambda k, v, plain=house: [] if v == plain else [(k, v)])


def _gate_norm(package, norm: str, where: str, field: str) -> None:
    """`self.<norm> = RMSNorm(args.dim, eps)` -> GatedRMSNorm on every layer (`all`) or on
    the MoE layers (`moe`: built after `self.is_moe`, the plain norm elsewhere)."""
    method = edits.find_method(package.module("model.py"), "TransformerBlock", "__init__")
    built = [
        s
        for s in (method.body.body if method else ())
        if assigns(f"self.{norm}")(s)
        and m.matches(s.body[0].value, m.Call(func=m.Name("RMSNorm"), args=[m.Arg(), m.Arg()]))
    ]
    if not built:
        raise EditError(f"TransformerBlock builds no `self.{norm} = RMSNorm(dim, eps)`")
    dim, eps = (code_of(a.value) for a in built[0].body[0].value.args)
    gated = f"GatedRMSNorm({dim}, args.{field}, {eps})"
    this = assigns(f"self.{norm}")
    if where == "all":
        code = f"self.{norm} = {gated}"
        run(package, "model.py", ReplaceStatements("TransformerBlock", "__init__", this, code))
    elif where == "moe":
        code = f"self.{norm} = {gated} if self.is_moe else RMSNorm({dim}, {eps})"
        after = assigns("self.is_moe")
        run(package, "model.py", ReplaceStatements("TransformerBlock", "__init__", this, ""))
        run(package, "model.py", InsertStatements("TransformerBlock", "__init__", after, code))
    else:
        raise EditError(f"a norm gated on layers {where!r} has no edit")
