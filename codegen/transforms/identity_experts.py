"""Identity ("zero-computation") experts beside the routed ones: the router scores them too,
and a token it sends to one passes on unchanged, times its routing weight."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    ReplaceStatements,
    assigns,
    calls,
    calls_super_init,
    code_of,
    run,
)

FIELD = "n_zero_experts: int = 0  # experts the router picks that pass the token on, weighted"
COUNT = "n_experts = args.n_routed_experts + args.n_zero_experts  # identity experts scored too"
ROUTED = assigns("routed", calling="self.experts")
# the routed experts compute their slots; an identity expert's slot is the token itself
IDENTITY = """
tokens = x.view(-1, x.shape[-1])
identity = indices >= self.n_routed_experts  # slots of identity experts: no weights to run
routed = self.experts(tokens, indices.masked_fill(identity, 0), weights.masked_fill(identity, 0))
passed = (weights * identity).sum(dim=-1, keepdim=True) * tokens
routed = (routed + passed.to(x.dtype)).view_as(x)
"""
KEEP = "self.n_routed_experts = args.n_routed_experts"
# HF's experts module without routed experts (every pick an identity): not built here
REFUSE = """
if hf_config.n_routed_experts <= 0:
    raise NotImplementedError("n_routed_experts <= 0 (only identity experts) is not supported")
"""
# the HF experts' stacked weights -> the house Experts' (by the checkpoint's usual names;
# fused_experts keeps gate/up in one w13)
HOUSE_WEIGHTS = {
    "gate_up_proj": ("w1", "w3", "w13"),
    "gate_proj": ("w1",),
    "up_proj": ("w3",),
    "down_proj": ("w2",),
}


class IdentityExperts(Transform):
    """`count` (a config expression, "config.zero_expert_num or 0") identity experts follow the
    routed ones in the router's scores (the Gate scores `n_routed_experts + n_zero_experts`,
    its correction bias as wide); the MoE runs the routed experts on their slots and passes
    each token picked for an identity expert on times that slot's weight. The experts' stacked
    weights HF sizes for the identity experts too (`rows` of the analysis: LongCat-Flash's
    gate/up projections, which HF never runs) hold those rows in the house Experts as well,
    unread, so checkpoints load and save unchanged. HF's all-identity setting
    (n_routed_experts <= 0) is refused."""

    name = "identity_experts"

    def apply(self, package, features=None, *, zero_experts: dict) -> None:
        count, rows = zero_experts["count"], tuple(zero_experts.get("rows", ()))
        if not isinstance(count, str) or not count.startswith("config."):
            raise EditError(f"identity_experts: count {count!r} is not a config expression")
        held = sorted({house for row in rows for house in HOUSE_WEIGHTS.get(row, ("?",))})
        if "?" in held:
            raise EditError(f"identity_experts: no house weight for the experts' {rows}")
        for name in ("Gate", "MoE"):
            if not moe_edits.has_class(package, "model.py", name):
                raise EditError(f"model.py has no {name} class")
        moe_edits.add_args_fields(package, FIELD)
        moe_edits.add_config_kwargs(
            package, {"n_zero_experts": "hf_" + count.replace(" config.", " hf_config.")}
        )
        edits.replace_expressions(
            package,
            "model.py",
            "Gate",
            "__init__",
            lambda node: m.matches(
                node, m.Attribute(value=m.Name("args"), attr=m.Name("n_routed_experts"))
            ),
            lambda node: cst.Name("n_experts"),
        )
        run(package, "model.py", InsertStatements("Gate", "__init__", calls_super_init, COUNT))
        run(package, "model.py", InsertStatements("MoE", "__init__", calls_super_init, KEEP))
        run(package, "model.py", ReplaceStatements("MoE", "forward", ROUTED, IDENTITY))
        if held:
            _unused_rows(package, held)
        refuse = InsertStatements("ModelArgs", "from_hf_config", calls("_check_supported"), REFUSE)
        run(package, "args.py", refuse)


def _unused_rows(package, held: list[str]) -> None:
    """The experts' `held` weights (those of them the Experts class has) get rows for the
    identity experts too (HF stores them, so checkpoints load and save as they are); the
    forward reads the routed experts' rows only."""
    moe_edits.own_experts(package)  # this target's experts differ from the shared ones
    run(package, "model.py", _ExtraRows(held))
    for weight in held:
        edits.replace_expressions(
            package,
            "model.py",
            "Experts",
            "forward",
            lambda node, weight=weight: m.matches(
                node, m.Attribute(value=m.Name("self"), attr=m.Name(weight))
            ),
            lambda node: cst.Subscript(
                value=node,
                slice=[
                    cst.SubscriptElement(
                        cst.Slice(lower=None, upper=edits.expression("self.num_experts"))
                    )
                ],
            ),
            required=False,
        )
    edits.replace_expressions(
        package,
        "model.py",
        "MoE",
        "__init__",
        lambda node: m.matches(node, m.Call(func=m.Name("Experts"))),
        lambda node: node.with_changes(
            args=[*node.args, cst.Arg(edits.expression("args.n_zero_experts"))]
        ),
    )


class _ExtraRows(cst.CSTTransformer):
    """Experts.__init__ takes `n_zero_experts` and sizes the `held` weights
    `num_experts + n_zero_experts`, with a comment saying why."""

    def __init__(self, held: list[str]):
        super().__init__()
        self.held = held
        self.hits = 0
        self._in = False

    def visit_ClassDef(self, node):
        self._class = node.name.value

    def visit_FunctionDef(self, node):
        self._in = getattr(self, "_class", "") == "Experts" and node.name.value == "__init__"

    def leave_FunctionDef(self, original, updated):
        if not self._in:
            return updated
        self._in = False
        params = updated.params.with_changes(
            params=[
                *updated.params.params,
                cst.Param(
                    cst.Name("n_zero_experts"),
                    annotation=cst.Annotation(cst.Name("int")),
                    default=cst.Integer("0"),
                ),
            ]
        )
        body = []
        first = True
        for statement in updated.body.body:
            target, _ = _self_assign(statement)
            if target in self.held:
                statement = statement.visit(_WiderFirstDim())
                if first:
                    statement = statement.with_changes(
                        leading_lines=[*statement.leading_lines, *UNUSED_COMMENT]
                    )
                    first = False
                self.hits += 1
            body.append(statement)
        return updated.with_changes(params=params, body=updated.body.with_changes(body=body))


UNUSED_COMMENT = [
    cst.EmptyLine(comment=cst.Comment("# rows for the identity experts too, as HF stores them,")),
    cst.EmptyLine(comment=cst.Comment("# which the forward never reads")),
]


class _WiderFirstDim(cst.CSTTransformer):
    """`torch.empty(num_experts, ...)` -> `torch.empty(num_experts + n_zero_experts, ...)`."""

    def leave_Call(self, original, updated):
        if m.matches(updated.func, m.Attribute(m.Name("torch"), m.Name("empty"))) and updated.args:
            first = updated.args[0].with_changes(
                value=edits.expression(f"{code_of(updated.args[0].value)} + n_zero_experts")
            )
            return updated.with_changes(args=[first, *updated.args[1:]])
        return updated


def _self_assign(statement):
    if m.matches(
        statement,
        m.SimpleStatementLine(
            body=[m.Assign(targets=[m.AssignTarget(m.Attribute(value=m.Name("self")))])]
        ),
    ):
        assign = statement.body[0]
        return assign.targets[0].target.attr.value, assign.value
    return None, None
