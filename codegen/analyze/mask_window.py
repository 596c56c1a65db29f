"""Sliding windows built into a causal-mask buffer in `__init__` (GPT-Neo's local layers).

Some attentions keep their own boolean causal mask as a buffer and, on the layers a per-layer
setting marks, cut it to a window there: `bias = tril(ones(n, n))`, then under `if <test>:`
`bias = bitwise_xor(bias, tril(bias, -W))` (or `bias ^ tril(...)`, `bias & ~tril(...)`),
which keeps keys j with i - W < j <= i: a window of W keys, the query included, exactly what
masking_utils' `sliding_window` means. `windows` reads W and, per analysed instance, whether
the cut was taken; `layer_rule` restates the test over `hf_config` and the layer index `i`
(a parameter that received `config.<list>[i]` on every layer reads that list), so a package
decides the windowed layers from the config as HF does.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from codegen.analyze.evaluate import Frame, ModuleRec, ParamRec
from codegen.analyze.walk import findall

CONFIG = "hf_config"
LAYER = "i"
_BUFFER = m.Call(func=m.Name("Buffer") | m.Attribute(attr=m.Name("Buffer")))
_REGISTER = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("register_buffer")))
_TRIL = m.Call(func=m.Name("tril") | m.Attribute(attr=m.Name("tril")))
_XOR = m.Call(func=m.Attribute(attr=m.Name("bitwise_xor") | m.Name("logical_xor")))


@dataclass
class Cut:
    """The window cut of one attention class: its test, the window expression, the buffer."""

    owner: object  # ClassInfo holding __init__
    init: cst.FunctionDef
    test: cst.BaseExpression
    window: cst.BaseExpression
    buffer: str  # attribute the buffer is stored in


def find_cut(ctx, rec: ModuleRec) -> Cut | None:
    """The windowing cut of `rec`'s mask buffer, or None when its class builds none."""
    if rec.cls is None:
        return None
    found = ctx.model.project.find_method(rec.cls, "__init__")
    if found is None:
        return None
    owner, init = found
    for buffer, local in _buffers(init):
        if not isinstance(rec.attrs.get(buffer), ParamRec):
            continue
        for statement in init.body.body:
            if not isinstance(statement, cst.If) or statement.orelse is not None:
                continue
            window = _cut_window(statement.body, local)
            if window is not None:
                return Cut(owner, init, statement.test, window, buffer)
    return None


def _buffers(init: cst.FunctionDef) -> list[tuple[str, str]]:
    """(attribute, local) for each `self.<attribute> = Buffer(<local>, ...)` or
    `self.register_buffer("<attribute>", <local>, ...)` of `__init__`."""
    out = []
    for assign in findall(init.body, m.Assign(value=_BUFFER)):
        target = assign.targets[0].target
        first = assign.value.args[0].value if assign.value.args else None
        if m.matches(target, m.Attribute(value=m.Name("self"))) and isinstance(first, cst.Name):
            out.append((target.attr.value, first.value))
    for call in findall(init.body, _REGISTER):
        values = [a.value for a in call.args[:2]]
        if len(values) == 2 and isinstance(values[0], cst.SimpleString):
            if isinstance(values[1], cst.Name):
                out.append((values[0].evaluated_value, values[1].value))
    return out


def _cut_window(body, local: str) -> cst.BaseExpression | None:
    """W of the single `local = <local without tril(local, -W)>` statement of `body`."""
    statements = [s for s in body.body if isinstance(s, cst.SimpleStatementLine)]
    if len(statements) != len(body.body) or len(statements) != 1:
        return None
    assign = statements[0].body[0]
    if not m.matches(assign, m.Assign(targets=[m.AssignTarget(target=m.Name(local))])):
        return None
    value = assign.value
    if m.matches(value, _XOR) and len(value.args) == 2:
        parts = [a.value for a in value.args]
    elif m.matches(value, m.BinaryOperation(operator=m.BitXor())):
        parts = [value.left, value.right]
    elif m.matches(
        value,
        m.BinaryOperation(operator=m.BitAnd(), right=m.UnaryOperation(operator=m.BitInvert())),
    ):
        parts = [value.left, value.right.expression]
    else:
        return None
    if not m.matches(parts[0], m.Name(local)):
        return None
    cut = parts[1]
    if (
        not m.matches(cut, _TRIL)
        or len(cut.args) != 2
        or not m.matches(cut.args[0].value, m.Name(local))
    ):
        return None
    diagonal = cut.args[1].value
    if not m.matches(diagonal, m.UnaryOperation(operator=m.Minus())):
        return None
    return diagonal.expression


def _frame(cut: Cut, rec: ModuleRec) -> Frame | None:
    """`__init__`'s parameters bound to what `rec` was built with."""
    params = [p.name.value for p in cut.init.params.params][1:]
    bound = {}
    for position, name in enumerate(params):
        if position < len(rec.args):
            bound[name] = rec.args[position]
        elif name in rec.kwargs:
            bound[name] = rec.kwargs[name]
    return Frame(cut.owner.sf, bound, owner=cut.owner)


def windows(ctx, cut: Cut, rec: ModuleRec) -> tuple[bool, int] | None:
    """(cut taken on this instance, W), or None when either is not evaluable."""
    interp = ctx.model.interp
    frame = _frame(cut, rec)
    try:
        taken = interp.eval(cut.test, frame)
        window = interp.eval(cut.window, frame)
    except Exception:  # noqa: BLE001 - Unknown, or an expression the evaluator does not take
        return None
    if not isinstance(taken, bool) or not isinstance(window, int) or isinstance(window, bool):
        return None
    return taken, window


def window_field(cut: Cut) -> str | None:
    """W as `hf_config.<field>` when it is a field of the config parameter, else None."""
    params = [p.name.value for p in cut.init.params.params][1:]
    if not params:
        return None
    node = cut.window
    if m.matches(node, m.Attribute(value=m.Name())) and node.value.value in params:
        config = node.value.value
        return f"{CONFIG}.{node.attr.value}" if config == _config_param(cut) else None
    return None


def _config_param(cut: Cut) -> str | None:
    for p in cut.init.params.params[1:]:
        if p.name.value == "config":
            return "config"
    names = [p.name.value for p in cut.init.params.params[1:]]
    return names[0] if names else None


def layer_rule(ctx, cut: Cut, layers: list[tuple[int, ModuleRec, bool]]) -> str | None:
    """The cut's test over `hf_config` and `i`, checked against every analysed layer
    ((index, instance, cut taken)); None when it cannot be restated or disagrees."""
    config_param = _config_param(cut)
    params = [p.name.value for p in cut.init.params.params][1:]
    used = {n.value for n in findall(cut.test, m.Name())} & set(params)
    config = ctx.model.config
    names: dict[str, str] = {}
    for name in used:
        if name == config_param:
            names[name] = CONFIG
            continue
        values = [_frame(cut, rec).locals.get(name, _MISSING) for _, rec, _ in layers]
        if all(v == index for v, (index, _, _) in zip(values, layers, strict=True)):
            names[name] = LAYER
            continue
        field = _per_layer_field(config, values, [index for index, _, _ in layers])
        if field is None:
            return None
        names[name] = f"{CONFIG}.{field}[{LAYER}]"
    restated = cut.test.visit(_Rename(names))
    code = " ".join(cst.Module([]).code_for_node(restated).split())
    free = {n.value for n in findall(restated, m.Name())} - {CONFIG, LAYER, "None", "True", "False"}
    if free - _attribute_names(restated):
        return None
    interp = ctx.model.interp
    for index, _rec, taken in layers:
        frame = Frame(cut.owner.sf, {CONFIG: config, LAYER: index}, owner=cut.owner)
        try:
            if interp.eval(cst.parse_expression(code), frame) is not taken:
                return None
        except Exception:  # noqa: BLE001 - as in `windows`
            return None
    return code


_MISSING = object()


def _per_layer_field(config, values: list, indices: list[int]) -> str | None:
    """A config list whose entry at each layer index is that layer's value."""
    for name, stored in sorted(config.attrs.items()):
        if not isinstance(stored, list | tuple) or len(stored) <= max(indices):
            continue
        if all(stored[i] == v for i, v in zip(indices, values, strict=True)):
            return name
    return None


def _attribute_names(node: cst.CSTNode) -> set[str]:
    return {a.attr.value for a in findall(node, m.Attribute())}


class _Rename(cst.CSTTransformer):
    def __init__(self, names: dict[str, str]):
        super().__init__()
        self.names = names
        self.attrs: set[int] = set()

    def visit_Attribute(self, node):
        self.attrs.add(id(node.attr))

    def leave_Name(self, original, updated):
        if id(original) in self.attrs or updated.value not in self.names:
            return updated
        return cst.parse_expression(self.names[updated.value])
