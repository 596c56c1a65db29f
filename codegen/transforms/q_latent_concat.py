"""The query up-projection reads the query latent normed and as it is: `wq_b(cat([q_norm(a),
a]))` with `a = wq_a(x)` (A.X-K2), instead of `wq_b(q_norm(a))`."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    ReplaceStatements,
    ScopedTransformer,
    code_of,
    dotted,
    expression,
    run,
)

_LATENT = m.SimpleStatementLine(
    body=[
        m.Assign(
            targets=[m.AssignTarget(m.Name())],
            value=m.Call(func=dotted("self.q_norm"), args=[m.Arg()]),
        )
    ]
)
SPLIT = """
q_raw = {latent}  # the query latent, read as it is and normed
{name} = self.q_norm(q_raw)
"""


class QLatentConcat(Transform):
    """`wq_b` takes `cat([normed latent, latent])`: twice the query LoRA rank of inputs.

    Works on latent attention whose forward names the normed query latent
    (`q_latent = self.q_norm(self.wq_a(x))`, as the indexed attention writes it); the latent
    before the norm gets a name of its own and both reach `wq_b`.
    """

    name = "q_latent_concat"

    def apply(self, package, features=None) -> None:
        method = edits.find_method(package.module("model.py"), "Attention", "forward")
        found = [s for s in method.body.body if m.matches(s, _LATENT)] if method else []
        if not found:
            raise EditError(
                "Attention.forward names no normed query latent (`q_latent = self.q_norm(...)`)"
            )
        assign = found[0].body[0]
        name = assign.targets[0].target.value
        latent = code_of(assign.value.args[0].value)
        run(
            package,
            "model.py",
            ReplaceStatements(
                "Attention",
                "forward",
                lambda s: s.deep_equals(found[0]),
                SPLIT.format(latent=latent, name=name),
            ),
        )
        edits.replace_expressions(
            package,
            "model.py",
            "Attention",
            "forward",
            lambda node: m.matches(
                node, m.Call(func=dotted("self.wq_b"), args=[m.Arg(m.Name(name))])
            ),
            lambda call: call.with_changes(
                args=[cst.Arg(expression(f"torch.cat([{name}, q_raw], dim=-1)"))]
            ),
        )
        run(package, "model.py", _DoubleRank())


_RANK = dotted("args.q_lora_rank")


class _DoubleRank(ScopedTransformer):
    """`self.wq_b = nn.Linear(args.q_lora_rank, ...)` -> `nn.Linear(2 * args.q_lora_rank, ...)`."""

    def __init__(self):
        super().__init__("Attention", "__init__")

    def leave_Assign(self, original, updated):
        if not (
            self.inside
            and m.matches(updated.targets[0].target, dotted("self.wq_b"))
            and m.matches(
                updated.value, m.Call(args=[m.Arg(dotted("args.q_lora_rank")), m.ZeroOrMore()])
            )
        ):
            return updated
        self.hits += 1
        args = list(updated.value.args)
        args[0] = args[0].with_changes(value=expression("2 * args.q_lora_rank"))
        return updated.with_changes(value=updated.value.with_changes(args=args))
