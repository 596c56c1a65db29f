"""The MoE's checkpoint rows at the target's stacked projection modules, and the bias it adds
to its merged output (JetMoE's `router.layer`, `input_linear`, `output_linear`, `bias`)."""

from __future__ import annotations

import json

import libcst as cst

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._attention_edits import find_method
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditDict,
    EditError,
    InsertStatements,
    ReplaceStatements,
    assigns,
    code_of,
    run,
)

BIAS = "self.bias = nn.Parameter(torch.empty(args.dim))  # added to the merged output\n"

# the house tensor -> the analysed module holding it (gate/up fused, as on disk)
HOUSE = {
    "layers.{}.moe.gate.weight": "router",
    "layers.{}.moe.experts.w13": "gate_up",
    "layers.{}.moe.experts.w2": "down",
}


class MoeProjections(Transform):
    """The MoE's router and expert rows read the target's stacked projection modules (each
    one [experts, out, in] weight, gate/up fused: after `fuse_experts`), and a bias the MoE
    adds to its merged output becomes `MoE.bias`.

    `projections` is the analysed `moe.projections`: paths in the HF MoE module of the
    router's linear, the gate/up and down projections, and the output bias (None: none).
    """

    name = "moe_projections"

    def apply(self, package, features=None, *, projections: dict) -> None:
        missing = [k for k in ("router", "gate_up", "down") if not projections.get(k)]
        if missing:
            raise EditError(f"stacked MoE projections without {', '.join(missing)}")
        prefixes = []

        def rewrite(key, value):
            house = moe_edits.house_of(value).strip('"')
            if house not in HOUSE:
                return [(key, value)]
            prefixes.append(_moe_prefix(json.loads(key)))
            hf = f"{prefixes[-1]}{projections[HOUSE[house]]}.weight"
            return [moe_edits.row(hf, house)]

        run(package, "state_dict_adapter.py", EditDict("from_hf_map", rewrite))
        if len(prefixes) != len(HOUSE):
            raise EditError(f"the adapter has {len(prefixes)} of the MoE rows {sorted(HOUSE)}")
        if projections.get("bias"):
            _add_bias(package, f"{prefixes[0]}{projections['bias']}")


def _moe_prefix(hf: str) -> str:
    """`model.layers.{}.mlp.` of `model.layers.{}.mlp.experts.gate_up_proj`."""
    head, sep, rest = hf.partition(".{}.")
    if not sep:
        raise EditError(f"{hf} is not a per-layer key")
    return f"{head}{sep}{rest.split('.', 1)[0]}."


def _add_bias(package, hf: str) -> None:
    run(package, "model.py", InsertStatements("MoE", "__init__", assigns("self.experts"), BIAS))
    method = find_method(package.module("model.py"), "MoE", "forward")
    returned = [
        s.body[0]
        for s in (method.body.body if method is not None else ())
        if isinstance(s, cst.SimpleStatementLine) and isinstance(s.body[0], cst.Return)
    ]
    if len(returned) != 1 or returned[0].value is None:
        raise EditError("MoE.forward has not one return of its output")
    value = code_of(returned[0].value)
    is_return = lambda s: isinstance(s, cst.SimpleStatementLine) and s.body[0] is returned[0]  # noqa: E731
    run(
        package,
        "model.py",
        ReplaceStatements("MoE", "forward", is_return, f"return {value} + self.bias"),
    )
    moe_edits.insert_rows_after(
        package, "layers.{}.moe.gate.weight", [moe_edits.row(hf, "layers.{}.moe.bias")]
    )
