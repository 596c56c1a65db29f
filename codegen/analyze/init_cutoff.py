"""Whether HF's `_init_weights` draws its normals truncated, and at how many stds.

ModernBERT starts every matrix with `trunc_normal_(w, std=s, a=-c * s, b=c * s)`, where
`c` is `config.initializer_cutoff_factor` (3 when None): at the config's default of 2 the
weights' std is 12% below `s`, which the plain normal table does not give. Read from the
`_init_weights` of the modeling file: every draw there is such a `trunc_normal_` (no
`normal_` beside it), and `c` is restated over `hf_config` through the method's locals,
including `if c is None: c = <default>`.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.init_std import _restate
from codegen.analyze.walk import findall

_TRUNC = m.Call(func=m.Attribute(attr=m.Name("trunc_normal_")) | m.Name("trunc_normal_"))
_NORMAL = m.Call(func=m.Attribute(attr=m.Name("normal_")) | m.Name("normal_"))


def init_cutoff(ctx: Ctx) -> str | None:
    """The truncation bound in stds as an `hf_config` expression, or None (plain normals,
    or a bound that cannot be restated)."""
    sf = ctx.model.modeling
    for cls in sf.classes.values():
        method = cls.methods.get("_init_weights")
        if not isinstance(method, cst.FunctionDef):
            continue
        draws = findall(method, _TRUNC)
        if not draws or findall(method, _NORMAL):
            continue
        bounds = {_bound(call) for call in draws}
        if len(bounds) != 1 or None in bounds:
            return None
        restated = _restated(next(iter(bounds)), method)
        if restated is not None:
            ctx.cite("block.init_cutoff", f"{sf.cite(draws[0])} (truncated at {restated} std)")
        return restated
    return None


def _bound(call: cst.Call) -> str | None:
    """`c` of `a=-c * std, b=c * std` (source text), None for any other bounds."""
    kwargs = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
    std = kwargs.get("std")
    low, high = kwargs.get("a"), kwargs.get("b")
    if std is None or low is None or high is None:
        return None
    scaled = m.BinaryOperation(operator=m.Multiply(), right=m.DoNotCare())
    if not (m.matches(low, scaled) and m.matches(high, scaled)):
        return None
    if _code(low.right) != _code(std) or _code(high.right) != _code(std):
        return None
    negated = low.left
    if not m.matches(negated, m.UnaryOperation(operator=m.Minus())):
        return None
    if _code(negated.expression) != _code(high.left):
        return None
    return _code(high.left)


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


def _restated(bound: str, method: cst.FunctionDef) -> str | None:
    """`bound` over `hf_config`, through the method's locals; a local defaulted when None
    (`c = config.x` then `if c is None: c = 3`) as `(x if x is not None else 3)`."""
    names, defaults = _locals(method)
    if bound not in defaults:
        return _restate(cst.parse_expression(bound), names)
    value, default = (_restate(node, names) for node in defaults[bound])
    if value is None or default is None:
        return None
    return f"({value} if {value} is not None else {default})"


def _locals(method: cst.FunctionDef) -> tuple[dict, dict]:
    """Names assigned exactly once, to their values; and names assigned once and then
    defaulted (`if x is None: x = 3`), to (value, default)."""
    values: dict[str, list[cst.BaseExpression]] = {}
    for assign in findall(method, m.Assign(targets=[m.AssignTarget(target=m.Name())])):
        values.setdefault(assign.targets[0].target.value, []).append(assign.value)
    none_test = m.Comparison(
        left=m.Name(), comparisons=[m.ComparisonTarget(m.Is(), m.Name("None"))]
    )
    defaults = {}
    for branch in findall(method, m.If(test=none_test, orelse=None)):
        target = branch.test.left.value
        body = branch.body.body
        assign = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name(target))])])
        found = values.get(target, [])
        if len(body) == 1 and m.matches(body[0], assign) and len(found) == 2:
            if found[1] is body[0].body[0].value:
                defaults[target] = (found[0], found[1])
    names = {name: found[0] for name, found in values.items() if len(found) == 1}
    return names, defaults
