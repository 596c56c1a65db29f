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
    assigns,
    calls,
    calls_super_init,
    code_of,
    run,
)

FIELD = "n_zero_experts: int = 0  # experts the router picks that pass the token on, weighted"
COUNT = "n_experts = args.n_routed_experts + args.n_zero_experts  # identity experts scored too"
# the experts' forward: identity slots sort after the routed ones, past the last offset, where
# the grouped products stop (HF's experts module runs no weights for them either): they are
# zeroed going in (the products leave their rows unset, and the gradient too) and take the
# token itself in place of the down projection's row, weighted as any slot
IDENTITY = """
identity = indices >= self.num_experts  # identity experts: no weights, the token passes on
"""
SKIPPED = """
# the products stop at the last offset, leaving the identity slots' rows unset: those go
# in zeroed (no gradient comes back from them) and come out as the token itself
skipped = identity.flatten()[order, None]
passed, rows = rows, rows.masked_fill(skipped, 0)
"""
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
    each token picked for an identity expert on times that slot's weight (inside Experts, as
    HF's experts module does). The experts' stacked
    weights HF sizes for the identity experts too (`rows` of the analysis: LongCat-Flash's
    gate/up projections, which HF never runs) hold those rows in the house Experts as well,
    unread, so checkpoints load and save unchanged. HF's all-identity setting
    (n_routed_experts <= 0) is refused."""

    name = "identity_experts"

    def apply(self, package, features=None, *, zero_experts: dict) -> None:
        count, rows = zero_experts["count"], tuple(zero_experts.get("rows", ()))
        read = _read_from_hf_config(count)
        held = sorted({house for row in rows for house in HOUSE_WEIGHTS.get(row, ("?",))})
        if "?" in held:
            raise EditError(f"identity_experts: no house weight for the experts' {rows}")
        for name in ("Gate", "MoE"):
            if not moe_edits.has_class(package, "model.py", name):
                raise EditError(f"model.py has no {name} class")
        moe_edits.add_args_fields(package, FIELD)
        moe_edits.add_config_kwargs(package, {"n_zero_experts": read})
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
        _identity_slots(package, held)
        refuse = InsertStatements("ModelArgs", "from_hf_config", calls("_check_supported"), REFUSE)
        run(package, "args.py", refuse)


def _read_from_hf_config(count) -> str:
    """The analysis's count ("config.zero_expert_num or 0") read in `from_hf_config`: each
    `config.<field>` becomes `hf_config.<field>`; anything but fields of the config and
    literals is refused."""
    try:
        expression = cst.parse_expression(count) if isinstance(count, str) else None
    except cst.ParserSyntaxError:
        expression = None
    config = m.Attribute(value=m.Name("config"), attr=m.Name())
    if expression is None or not m.findall(expression, config):
        raise EditError(f"identity_experts: count {count!r} is not a config expression")
    if m.findall(expression, m.Name() & ~m.Name("config") & ~m.Name("None")) != [
        node.attr for node in m.findall(expression, config)
    ]:
        raise EditError(f"identity_experts: count {count!r} reads more than the config")
    renamed = m.replace(
        expression, config, lambda node, _: node.with_changes(value=cst.Name("hf_config"))
    )
    return code_of(renamed)


def _identity_slots(package, held: list[str]) -> None:
    """The Experts class passes identity slots on (its output is HF's experts module's, so
    the two pair in verify's divergence search), and its `held` weights (those of them it
    has) get rows for the identity experts too (HF stores them, so checkpoints load and save
    as they are); the forward reads the routed experts' rows only."""
    moe_edits.own_experts(package)  # this target's experts differ from the shared ones
    run(package, "model.py", _ExtraRows(held))
    first = InsertStatements("Experts", "forward", assigns("top_k"), IDENTITY, before=True)
    run(package, "model.py", first)
    _routed_rows_only(package)
    run(package, "model.py", _Docstring())
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
        self.hits += 1
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


def _routed_rows_only(package) -> None:
    """The grouped products run the routed slots only: identity indices, sorted last, are
    counted past the routed experts (dropped from the offsets), their rows are zeroed going
    in, and the down projection's output takes each identity slot's token in its place."""
    edits.replace_expressions(
        package,
        "model.py",
        "Experts",
        "forward",
        lambda node: m.matches(node, m.Call(func=edits.dotted("torch.bincount"))),
        lambda node: cst.Subscript(
            value=node,
            slice=[
                cst.SubscriptElement(
                    cst.Slice(lower=None, upper=edits.expression("self.num_experts"))
                )
            ],
        ),
    )
    skip = InsertStatements("Experts", "forward", assigns("rows"), SKIPPED)
    skip.new = edits.statements(SKIPPED)  # with the comment above the first statement
    run(package, "model.py", skip)
    edits.replace_expressions(
        package,
        "model.py",
        "Experts",
        "forward",
        lambda node: m.matches(node, WEIGHTED),
        lambda node: node.with_changes(
            left=edits.expression(f"torch.where(skipped, passed, {code_of(node.left)})")
        ),
    )


# `<down projection> * weights.flatten()[order, None]`: each sorted slot's row, weighted
WEIGHTED = m.BinaryOperation(
    operator=m.Multiply(),
    right=m.Subscript(
        value=m.Call(func=m.Attribute(value=m.Name("weights"), attr=m.Name("flatten")))
    ),
)


DOC = """

    Indices from `num_experts` on are the `n_zero_experts` identity experts: their slots sort
    last, past the last offset, so the grouped products skip them; they run no weights and
    pass the token on, times the slot's weight."""


class _Docstring(cst.CSTTransformer):
    """Experts' docstring says what its indices past the routed experts are."""

    def __init__(self):
        super().__init__()
        self.hits = 0

    def leave_ClassDef(self, original, updated):
        body = list(updated.body.body)
        if updated.name.value != "Experts" or not body:
            return updated
        docstring = m.SimpleStatementLine(body=[m.Expr(value=m.SimpleString())])
        if not m.matches(body[0], docstring):
            return updated
        string = body[0].body[0].value
        text = string.value
        quote = text[-3:]
        closing = text[: -len(quote)].rstrip()
        indent = "\n    " if closing.endswith("\n") or "\n" in closing else ""
        new = closing.rstrip() + DOC + ("\n    " if indent else "") + quote
        self.hits += 1
        body[0] = body[0].with_changes(
            body=[body[0].body[0].with_changes(value=string.with_changes(value=new))]
        )
        return updated.with_changes(body=updated.body.with_changes(body=body))
