"""Drop the final norm: the head reads the last layer's output as it is (openai-gpt)."""

from __future__ import annotations

import json

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditDict,
    EditError,
    ReplaceStatements,
    assigns,
    dotted,
    run,
)


class DropFinalNorm(Transform):
    """`Model` builds no `self.norm` and `self.norm(h)` becomes `h` in `Model.forward`; the
    adapter loses the rows of the norm's weight and bias (the checkpoint has none)."""

    name = "drop_final_norm"

    def apply(self, package, features=None) -> None:
        # `h = self.norm(h)` goes as a whole (it would read `h = h`); a norm inside an
        # expression, `self.output(self.norm(h))`, gives way to its argument
        dropped_statement = ReplaceStatements("Model", "forward", _normalises_in_place, "")
        hits = run(package, "model.py", dropped_statement, required=False)
        hits += edits.replace_expressions(
            package,
            "model.py",
            "Model",
            "forward",
            edits.call_of("self.norm"),
            lambda node: node.args[0].value,
            required=False,
        )
        if not hits:
            raise EditError("model.py: Model.forward never applies self.norm")
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


_NORM_OF_A_NAME = m.SimpleStatementLine(
    body=[
        m.Assign(
            targets=[m.AssignTarget(target=m.Name())],
            value=m.Call(func=dotted("self.norm"), args=[m.Arg(value=m.Name())]),
        )
    ]
)


def _normalises_in_place(statement: cst.CSTNode) -> bool:
    """`x = self.norm(x)`: the final norm of a name, written back to that name."""
    if not m.matches(statement, _NORM_OF_A_NAME):
        return False
    assign = statement.body[0]
    return assign.targets[0].target.value == assign.value.args[0].value.value
