"""Multiply the MoE routing weights by the config's routed_scaling_factor."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._rope_edits import rewrite_expressions
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    assigns,
    expression,
    returns,
    run,
)

FIELD = "routed_scaling: float = 1.0  # the k routing weights are multiplied by this"


class SetRoutedScaling(Transform):
    """The router's k weights are multiplied by `routed_scaling` (HF `routed_scaling_factor`),
    after any renormalisation, as deepseek / glm4_moe do."""

    name = "set_routed_scaling"

    def apply(self, package, features=None, *, on: str = "weights") -> None:
        """`on="output"`: the experts' summed output is multiplied instead, where the source
        scales it (beam), so the experts' stage computes what HF's does."""
        if on not in ("weights", "output"):
            raise EditError(f"routed scaling on {on!r}: weights or output")
        moe_edits.add_args_fields(package, FIELD)
        moe_edits.add_config_kwargs(package, {"routed_scaling": "hf_config.routed_scaling_factor"})
        run(
            package,
            "model.py",
            InsertStatements(
                "MoE",
                "__init__",
                assigns("self.top_k"),
                "self.routed_scaling = args.routed_scaling",
            ),
        )
        if on == "output":
            experts = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("experts")))
            rewrite_expressions(
                package,
                "model.py",
                "MoE",
                "forward",
                lambda node: (
                    cst.BinaryOperation(node, cst.Multiply(), expression("self.routed_scaling"))
                    if m.matches(node, experts)
                    else None
                ),
            )
            return
        run(
            package,
            "model.py",
            InsertStatements(
                "MoE",
                "route",
                returns("weights"),
                "weights = weights * self.routed_scaling",
                before=True,
            ),
        )
