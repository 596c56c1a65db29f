"""Drop the final norm: the head reads the last layer's output as it is (openai-gpt)."""

from __future__ import annotations

import json

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditDict, EditError, ReplaceStatements, assigns, run


class DropFinalNorm(Transform):
    """`Model` builds no `self.norm` and `self.norm(h)` becomes `h` in `Model.forward`; the
    adapter loses the rows of the norm's weight and bias (the checkpoint has none)."""

    name = "drop_final_norm"

    def apply(self, package, features=None) -> None:
        edits.replace_expressions(
            package,
            "model.py",
            "Model",
            "forward",
            edits.call_of("self.norm"),
            lambda node: node.args[0].value,
        )
        run(package, "model.py", ReplaceStatements("Model", "__init__", assigns("self.norm"), ""))
        if "self.norm" in package.files["model.py"].code:
            raise EditError("model.py: self.norm is still used after dropping the final norm")
        dropped = []

        def rewrite(key, value):
            house = json.loads(value) if value != "None" else None
            if house in ("norm.weight", "norm.bias"):
                dropped.append(house)
                return []
            return [(key, value)]

        run(package, "state_dict_adapter.py", EditDict("from_hf_map", rewrite))
        if "norm.weight" not in dropped:
            raise EditError("state_dict_adapter.py has no row for norm.weight")
