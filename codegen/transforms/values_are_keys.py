"""Hand the rotated keys to the attention as its values too: no value projection."""

from __future__ import annotations

import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._attention_edits import find_method
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, assigns, run, sets

VALUES = "v = k  # the keys are the values: one tensor, rotated, read twice\n"


class ValuesAreKeys(Transform):
    """`self.wv` and its projection go; `v = k` after the keys' rotation.

    DeepSeek-V4's attention projects one tensor (normed, then rotated) and hands it to the
    attention as both its keys and its values, so its values carry the keys' rotation (which
    its output rotation turns back). The statement that rotates `k` is the anchor: every
    later reading of `v` (SDPA's argument, a written-out `probs @ v`) reads the keys as the
    attention gets them. The adapter's value-projection rows go (the checkpoint has none).
    """

    name = "values_are_keys"

    def apply(self, package, features=None) -> None:
        forward = find_method(package.module("model.py"), "Attention", "forward")
        if forward is None or not any(_rotates_k(s) for s in forward.body.body):
            raise EditError("values_are_keys: Attention.forward rotates no `k` by `cos`, `sin`")
        edits.remove_statements(package, "model.py", "Attention", "__init__", sets("self.wv"))
        edits.remove_statements(package, "model.py", "Attention", "forward", assigns("v"))
        run(package, "model.py", InsertStatements("Attention", "forward", _rotates_k, VALUES))
        if not edits.drop_rows(package, lambda house: ".attention.wv." in house):
            raise EditError("values_are_keys: state_dict_adapter.py maps no attention.wv")


def _rotates_k(statement) -> bool:
    """A statement assigning `k` (alone or in a tuple) from a call taking `k`, `cos`, `sin`."""
    k = m.Name("k")
    assign = m.Assign(
        targets=[
            m.AssignTarget(
                target=k | m.Tuple(elements=[m.ZeroOrMore(), m.Element(k), m.ZeroOrMore()])
            )
        ]
    )
    found = m.findall(statement, assign)
    if not found:
        return False
    for call in m.findall(found[0].value, m.Call()):
        names = [arg.value for arg in call.args]
        if (
            names
            and m.matches(names[0], k)
            and any(m.matches(n, m.Name("cos")) for n in names[1:])
            and any(m.matches(n, m.Name("sin")) for n in names[1:])
        ):
            return True
    return False
