"""Move the q/k norms behind RoPE: they take the rotated q and k (HunYuan), not the
projections (Qwen3)."""

from __future__ import annotations

import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import InsertStatements, run

# a call handed the sine table: the rotation (`apply_rotary(q, cos, sin)`, `self.rotate(...)`)
_ROTATES = m.Call(args=[m.ZeroOrMore(), m.Arg(value=m.Name("sin")), m.ZeroOrMore()])


def rotates(statement) -> bool:
    """Anchor: the statement that rotates q/k (also an `if` around it, for NoPE layers)."""
    return bool(m.findall(statement, _ROTATES))


class QkNormAfterRope(Transform):
    """`self.q_norm(...)` / `self.k_norm(...)` come off q/k's projections in
    `Attention.forward`, and `q, k = self.q_norm(q), self.k_norm(k)` follows the rotation.

    Norm and rotation do not commute (an RMSNorm rescales each head by its own RMS, which
    the rotation keeps, but a learned per-dim weight does not commute with mixing pairs of
    dims), so the order is part of the architecture. The norm modules and checkpoint rows
    stay as `set_qk_norm` (or the reference) made them.
    """

    name = "qk_norm_after_rope"

    def apply(self, package, features=None) -> None:
        edits.replace_expressions(
            package,
            "model.py",
            "Attention",
            "forward",
            lambda node: edits.call_of("self.q_norm")(node) or edits.call_of("self.k_norm")(node),
            lambda call: call.args[0].value,
        )
        run(
            package,
            "model.py",
            InsertStatements(
                "Attention", "forward", rotates, "q, k = self.q_norm(q), self.k_norm(k)"
            ),
        )
