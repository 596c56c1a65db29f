"""Differential attention (DiffLlama): what a package needs to rebuild it from the source.

Two attention maps share q and k; the second is subtracted from the first, scaled by a
learned lambda that starts at a per-layer constant `lambda_init` (a function of the layer
index written in the source). This module reads, without running anything:

* `lambda_init` as an expression of `layer_id`: the attention's `__init__` assigns a float
  attribute from its layer-index parameter, directly or through a module-level function whose
  body is one `return`; the expression is checked against the value the analysis evaluated
  for the analysed layer;
* the learned lambda vectors: the attention's own parameters of size head_dim, in the order
  they are defined (q1, k1, q2, k2), and the config field their random start reads (its std).

Anything else (another form, other parameters) gives None: the feature stays unsupported.
"""

from __future__ import annotations

import ast
import math

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleRec, ParamRec
from codegen.analyze.walk import findall

LAYER = "layer_id"  # the name the package's expression uses for the layer index


def read(ctx: Ctx, rec: ModuleRec, head_dim) -> dict | None:
    """{"lambda_init": expression, "lambdas": (4 attribute names)} or None."""
    cls = rec.cls
    if cls is None:
        return None
    found = ctx.model.project.find_method(cls, "__init__")
    if found is None:
        return None
    owner, init = found
    lambdas = tuple(
        name
        for name, value in rec.attrs.items()
        if isinstance(value, ParamRec) and _size(value) in (head_dim, None)
    )
    if len(lambdas) != 4:
        return None
    params = [p.name.value for p in init.params.params[1:]]
    for node in findall(init, m.Assign()):
        if len(node.targets) != 1 or not isinstance(node.targets[0].target, cst.Attribute):
            continue
        target = node.targets[0].target
        if not (isinstance(target.value, cst.Name) and target.value.value == "self"):
            continue
        value = rec.attrs.get(target.attr.value)
        if not isinstance(value, float):
            continue
        for param in params:
            expression = _in_layer(ctx, owner.sf, node.value, param)
            index = rec.attrs.get(param)
            if expression is None or not isinstance(index, int):
                continue
            if _evaluates_to(expression, index, value):
                return {
                    "lambda_init": expression,
                    "lambdas": lambdas,
                    "init_std": _init_std(init, lambdas),
                }
    return None


def _init_std(init: cst.FunctionDef, lambdas: tuple[str, ...]) -> str | None:
    """The one config field the lambda vectors' constructions read (`torch.normal(0,
    config.lambda_std_dev, ...)`): their init std; None when they read none or several."""
    fields = set()
    for node in findall(init, m.Assign()):
        target = node.targets[0].target if len(node.targets) == 1 else None
        if not (isinstance(target, cst.Attribute) and target.attr.value in lambdas):
            continue
        fields |= {
            a.attr.value
            for a in findall(node.value, m.Attribute(value=m.Name("config")))
            if isinstance(a, cst.Attribute)
        }
    return fields.pop() if len(fields) == 1 else None


def _size(param: ParamRec):
    shape = getattr(param, "shape", None)
    return shape[-1] if shape else None


def _in_layer(ctx: Ctx, sf, node: cst.BaseExpression, param: str) -> str | None:
    """`node` as source text in `layer_id`, if it reads the parameter `param`."""
    if (
        isinstance(node, cst.Call)
        and isinstance(node.func, cst.Name)
        and len(node.args) == 1
        and isinstance(node.args[0].value, cst.Name)
        and node.args[0].value.value == param
    ):
        kind, found = ctx.model.project.resolve_name(sf, node.func.value)
        if kind != "function":
            return None
        _, fn = found
        body = fn.body.body
        names = [p.name.value for p in fn.params.params]
        if len(body) != 1 or len(names) != 1:
            return None
        statement = body[0]
        if not (
            isinstance(statement, cst.SimpleStatementLine)
            and len(statement.body) == 1
            and isinstance(statement.body[0], cst.Return)
            and statement.body[0].value is not None
        ):
            return None
        return _renamed(statement.body[0].value, names[0])
    if not any(n.value == param for n in findall(node, m.Name())):
        return None
    return _renamed(node, param)


def _renamed(node: cst.BaseExpression, param: str) -> str | None:
    class Rename(cst.CSTTransformer):
        def leave_Name(self, original, updated):
            return updated.with_changes(value=LAYER) if original.value == param else updated

    renamed = node.visit(Rename())
    code = cst.Module([]).code_for_node(renamed)
    if _evaluate(ast.parse(code, mode="eval").body, 0) is None:
        return None  # reads something besides the layer index and math functions
    return code


def _evaluates_to(expression: str, index: int, value: float) -> bool:
    got = _evaluate(ast.parse(expression, mode="eval").body, index)
    return got is not None and math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-12)


_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}


def _evaluate(node: ast.AST, index: int) -> float | None:
    """Arithmetic on numbers, the layer index and public `math` functions; else None (the
    source is never run)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.Name) and node.id == LAYER:
        return index
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _evaluate(node.operand, index)
        return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left, index), _evaluate(node.right, index)
        if left is None or right is None:
            return None
        try:
            return _BINARY[type(node.op)](left, right)
        except (ArithmeticError, ValueError):
            return None
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "math"
        and node.func.attr in _MATH
        and len(node.args) == 1
        and not node.keywords
    ):
        inner = _evaluate(node.args[0], index)
        try:
            return None if inner is None else _MATH[node.func.attr](inner)
        except (ArithmeticError, ValueError):
            return None
    return None


_MATH = {"exp": math.exp, "log": math.log, "sqrt": math.sqrt, "log1p": math.log1p}
