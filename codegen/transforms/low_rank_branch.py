"""A low-rank residual branch beside the attention (LAuReL, gemma3n's Laurel block): on the
attention's normed input, `x + norm(up(down(x)))`, summed with the attention's residual sum,
that sum divided by a constant (sqrt(2))."""

from __future__ import annotations

import math

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._ffn_edits import rewrite_adapter
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    _InMethod,
    add_import,
    assigns,
    code_of,
    run,
    statements,
)
from codegen.transforms.output_convs import _layer_prefix

BRANCH = '''
class LowRankBranch(nn.Module):
    """A learned augmented residual: `x + norm(up(down(x)))`, through `rank` channels."""

    def __init__(self, dim: int, rank: int, norm: nn.Module):
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)
        self.up = nn.Linear(rank, dim, bias=False)
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm(self.up(self.down(x)))
'''
RANK = "branch_rank: int = {rank}  # width of the low-rank branch beside the attention"
NORMED = "attention_input"

_NORM_CALL = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("attention_norm")))
_ATTENTION_CALL = m.Call(
    func=m.Attribute(value=m.Name("self"), attr=m.Name("attention")),
    args=[m.Arg(value=_NORM_CALL), m.ZeroOrMore()],
)


class LowRankBranch(Transform):
    """`TransformerBlock` builds `self.branch = LowRankBranch(args.dim, args.branch_rank,
    <a norm built as attention_norm is>)` and runs it on the attention's normed input:
    `attention_input = self.attention_norm(x)` is computed once, read by the attention and
    the branch, and the attention's residual sum becomes `(h + self.branch(attention_input))
    / sqrt(2)` (`divisor`, or the plain sum when it is None). `branch` is the analysed
    `block.low_rank_branch`: the HF module and its parts' attributes (the adapter's rows),
    the rank and its config field."""

    name = "low_rank_branch"

    def apply(self, package, features=None, *, branch: dict) -> None:
        if not {"module", "down", "up", "norm", "rank", "rank_field"} <= set(branch):
            raise EditError(f"low_rank_branch needs the branch's parts and rank, got {branch}")
        norm = _attention_norm_build(package)
        edits.insert_definition(package, "model.py", BRANCH, before="TransformerBlock")
        field = branch["rank_field"]
        edits.add_args_field(
            package,
            RANK.format(rank=branch["rank"]),
            f"branch_rank=hf_config.{field}" if field else None,
        )
        run(
            package,
            "model.py",
            InsertStatements(
                "TransformerBlock",
                "__init__",
                assigns("self.attention"),
                f"self.branch = LowRankBranch(args.dim, args.branch_rank, {norm})",
            ),
        )
        divisor = branch.get("divisor")
        if divisor is not None and _sqrt_of(divisor) is not None:
            add_import(package, "model.py", "math", "sqrt")
        run(package, "model.py", _BranchBesideAttention(divisor))
        prefix = f"{_layer_prefix(package)}.{branch['module']}"
        rows = [
            (f"{prefix}.{branch['down']}.weight", "layers.{}.branch.down.weight"),
            (f"{prefix}.{branch['up']}.weight", "layers.{}.branch.up.weight"),
        ]
        rows += [
            (f"{prefix}.{branch['norm']}.{part}", f"layers.{{}}.branch.norm.{part}")
            for part in _attention_norm_parameters(package)
        ]
        edits.insert_after_layer_rows(package, rows)


def _attention_norm_build(package) -> str:
    """The expression `TransformerBlock.__init__` builds `self.attention_norm` with."""
    init = edits.find_method(package.module("model.py"), "TransformerBlock", "__init__")
    found = m.findall(
        init,
        m.Assign(
            targets=[
                m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name("attention_norm")))
            ]
        ),
    )
    if init is None or len(found) != 1:
        raise EditError("TransformerBlock.__init__ builds no single self.attention_norm")
    return code_of(found[0].value)


def _attention_norm_parameters(package) -> list[str]:
    """The parameter names of `attention_norm` the adapter maps (`weight`, `bias`)."""
    found: list[str] = []

    def collect(hf, house):
        head, _, part = (house or "").rpartition(".")
        if head == "layers.{}.attention_norm":
            found.append(part)
        return [(hf, house)]

    rewrite_adapter(package, collect)
    return found


def _sqrt_of(divisor: float) -> int | None:
    """n when `divisor` is exactly math.sqrt(n) for a whole n, else None."""
    n = round(divisor * divisor)
    return n if n > 0 and math.sqrt(n) == divisor else None


class _BranchBesideAttention(_InMethod):
    """In TransformerBlock.forward: the statement summing the attention's output into the
    stream reads the normed input from a local computed before it, and the branch's output
    joins that sum after it."""

    def __init__(self, divisor: float | None):
        super().__init__("TransformerBlock", "forward")
        self.divisor = divisor

    def edit_statements(self, body: list) -> list:
        for index, statement in enumerate(body):
            target = _residual_target(statement)
            if target is None:
                continue
            (call,) = m.findall(statement, _ATTENTION_CALL)
            norm_call = call.args[0].value
            new_call = call.with_changes(
                args=[call.args[0].with_changes(value=cst.Name(NORMED)), *call.args[1:]]
            )
            summed = f"{target} + self.branch({NORMED})"
            if self.divisor is not None:
                n = _sqrt_of(self.divisor)
                summed = f"({summed}) / {f'sqrt({n})' if n is not None else repr(self.divisor)}"
            self.hits += 1
            return [
                *body[:index],
                *statements(f"{NORMED} = {code_of(norm_call)}"),
                statement.deep_replace(call, new_call),
                *statements(f"{target} = {summed}"),
                *body[index + 1 :],
            ]
        return body


def _residual_target(statement) -> str | None:
    """`h` for `h = <sum holding self.attention(self.attention_norm(...), ...)>`."""
    if not m.matches(
        statement,
        m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])]),
    ):
        return None
    assign = statement.body[0]
    if len(m.findall(assign.value, _ATTENTION_CALL)) != 1:
        return None
    if not m.matches(assign.value, m.BinaryOperation(operator=m.Add())):
        return None
    return assign.targets[0].target.value
