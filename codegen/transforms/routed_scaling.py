"""Multiply the MoE routing weights by the config's routed_scaling_factor."""

from __future__ import annotations

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    InsertStatements,
    assigns,
    returns,
    run,
)

FIELD = "routed_scaling: float = 1.0  # the k routing weights are multiplied by this"


class SetRoutedScaling(Transform):
    """The router's k weights are multiplied by `routed_scaling` (HF `routed_scaling_factor`),
    after any renormalisation, as deepseek / glm4_moe do."""

    name = "set_routed_scaling"

    def apply(self, package, features=None) -> None:
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
