"""Give every routed expert's projections a bias (gpt_oss experts)."""

from __future__ import annotations

import libcst as cst

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._ffn_edits import Scoped, adapter_rows
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, assigns, code_of, expression, run

EXPERT_OF_ROW = "experts = indices.flatten()[order]  # the expert of each sorted row"


class SetExpertBias(Transform):
    """Each expert weight `w<n>` of Experts gets a bias `w<n>_bias` [num_experts, out],
    added to its `grouped_mm` product row by row, in place (each row takes its own
    expert's bias).

    Adapter rows follow each expert weight row: `.weight` becomes `.bias` for per-expert
    checkpoint keys, a fused tensor `experts.gate_up_proj` gets `experts.gate_up_proj_bias`.
    """

    name = "set_expert_bias"

    def apply(self, package, features=None) -> None:
        moe_edits.own_experts(package)  # this target's experts differ from the shared ones
        finder = _Products()
        package.module("model.py").visit(finder)
        if not finder.weights:
            raise EditError("Experts.forward has no grouped_mm(rows, self.w<n>...) product")
        shapes = _weight_shapes(package)
        for weight, transposed in finder.weights.items():
            if weight not in shapes:
                raise EditError(f"Experts.__init__ does not build self.{weight}")
            num_experts, out_in = shapes[weight][0], shapes[weight][1:]
            out = out_in[1] if transposed else out_in[0]
            bias = f"self.{weight}_bias = nn.Parameter(torch.empty({num_experts}, {out}))"
            moe_edits.insert_statements(
                package, "Experts", "__init__", assigns(f"self.{weight}"), bias
            )
        moe_edits.insert_statements(package, "Experts", "forward", assigns("order"), EXPERT_OF_ROW)
        run(package, "model.py", _AddBias())
        _add_rows(package, finder.weights)


class _Products(Scoped):
    """Finds Experts.forward's `grouped_mm(_, self.w<n>[.mT], ...)` products:
    weight name -> whether it is used as stored ([num_experts, in, out])."""

    def __init__(self):
        super().__init__("Experts", "forward")
        self.weights: dict[str, bool] = {}

    def visit_Call(self, node):
        weight = _product_weight(node) if self.in_scope() else None
        if weight is not None:
            self.weights[weight[0]] = weight[1]


class _AddBias(Scoped):
    """`grouped_mm(rows, self.w13, ...)` -> `grouped_mm(...).add_(self.w13_bias[experts])`:
    in place, as the product is a fresh tensor its backward does not keep (an out-of-place
    sum would hold a second [rows, out] tensor per projection)."""

    def __init__(self):
        super().__init__("Experts", "forward")

    def leave_Call(self, original, updated):
        weight = _product_weight(original) if self.in_scope() else None
        if weight is None:
            return updated
        self.hits += 1
        return cst.Call(
            func=cst.Attribute(value=updated, attr=cst.Name("add_")),
            args=[cst.Arg(expression(f"self.{weight[0]}_bias[experts]"))],
        )


def _product_weight(call: cst.Call) -> tuple[str, bool] | None:
    """("w13", True) for `grouped_mm(x, self.w13, ...)`, ("w1", False) for `self.w1.mT`."""
    if code_of(call.func) != "grouped_mm" or len(call.args) < 2:
        return None
    operand = code_of(call.args[1].value)
    transposed = not operand.endswith(".mT")
    operand = operand.removesuffix(".mT")
    if not operand.startswith("self.w"):
        return None
    return operand.removeprefix("self."), transposed


def _weight_shapes(package) -> dict[str, list[str]]:
    """Experts.__init__'s `self.w<n> = nn.Parameter(torch.<f>(a, b, c)...)` -> [a, b, c]."""
    shapes = {}
    for statement in _method(package, "Experts", "__init__"):
        if not (
            isinstance(statement, cst.SimpleStatementLine)
            and isinstance(statement.body[0], cst.Assign)
        ):
            continue
        target = code_of(statement.body[0].targets[0].target)
        sizes = _tensor_sizes(statement.body[0].value)
        if target.startswith("self.w") and sizes is not None:
            shapes[target.removeprefix("self.")] = sizes
    return shapes


def _tensor_sizes(value) -> list[str] | None:
    """The three size arguments of the torch factory call inside `value`."""
    found: list[list[str]] = []

    class _Find(cst.CSTVisitor):
        def visit_Call(self, node):
            if code_of(node.func) in ("torch.empty", "torch.randn", "torch.zeros"):
                sizes = [code_of(arg.value) for arg in node.args if arg.keyword is None]
                if len(sizes) == 3:
                    found.append(sizes)

    value.visit(_Find())
    return found[0] if found else None


def _method(package, class_name: str, method: str) -> list:
    for statement in package.module("model.py").body:
        if isinstance(statement, cst.ClassDef) and statement.name.value == class_name:
            for item in statement.body.body:
                if isinstance(item, cst.FunctionDef) and item.name.value == method:
                    return list(item.body.body)
    raise EditError(f"model.py has no {class_name}.{method}")


def _add_rows(package, weights) -> None:
    rows = {house: hf for hf, house in adapter_rows(package) if house is not None}
    for weight in weights:
        house = next((h for h in rows if h.endswith(f".experts.{weight}")), None)
        if house is None:
            raise EditError(f"the adapter has no row for experts.{weight}")
        hf = rows[house]
        hf_bias = hf.removesuffix(".weight") + ".bias" if hf.endswith(".weight") else hf + "_bias"
        moe_edits.insert_rows_after(package, house, [moe_edits.row(hf_bias, f"{house}_bias")])
