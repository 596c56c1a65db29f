"""Is a stack the layer reader could not read causal? Read from where its mask is built.

The layer reader decides causality from the attention it reads (`is_causal`). A model whose
layers it does not read (CPM-Ant's norm+attention wrappers, Reformer's reversible layers,
XLM's parallel module lists) still builds its mask in the source: a comparison of two index
vectors broadcast against each other (`arange(n) <= arange(n).view(-1, 1)`,
`ge(q_idx.unsqueeze(-1), k_idx.unsqueeze(-2))`), a `tril`/`triu`, or transformers'
`create_causal_mask`. Such a mask may sit under a flag (`if self.is_decoder is True:`,
`if causal:` of a helper called with `self.causal`): the flag's configured value decides,
and a flag the entry class's `__init__` asserts (`assert config.is_decoder`) is on whatever
the defaults say, as the class cannot be built without it.

`read(ctx)` returns `(causal, where, flag)`: True/False/None (no mask found), the mask's
site, and the flag's source text (None when unconditional).
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.model import walk_tree
from codegen.analyze.source import ClassInfo, SourceFile, dotted

_ORDER = (cst.LessThan, cst.LessThanEqual, cst.GreaterThan, cst.GreaterThanEqual)
_ORDER_CALLS = {"ge", "le", "gt", "lt"}
_TRIANGLES = {"tril", "triu"}
_CAUSAL_HELPERS = {"create_causal_mask", "create_sliding_window_causal_mask"}


def read(ctx: Ctx) -> tuple[bool | None, str | None, str | None]:
    model = ctx.model
    owners: list[tuple[ClassInfo, ModuleRec | None]] = [(model.entry_cls, model.entry)]
    seen = {id(model.entry_cls)}
    for _, rec in walk_tree(model.entry):
        if isinstance(rec, ModuleRec) and rec.cls is not None and id(rec.cls) not in seen:
            seen.add(id(rec.cls))
            owners.append((rec.cls, rec))
    found: list[tuple[bool | None, str, str | None]] = []
    for cls, rec in owners:
        for klass in model.project.mro(cls):
            for fn in klass.methods.values():
                for node, guard in _masks(fn):
                    where = klass.sf.cite(node, klass.node, fn)
                    found.append((_guard_value(ctx, cls, rec, guard), where, _text(klass, guard)))
                for sf, helper, arg_of in _helpers(model.project, klass.sf, fn):
                    for node, guard in _masks(helper):
                        where = sf.cite(node)
                        value = _guard_value(ctx, cls, rec, guard, arg_of)
                        found.append((value, where, _text_sf(sf, guard, klass.sf, arg_of)))
    if not found:
        return None, None, None
    for value, where, flag in found:
        if value is True:
            return True, where, flag
    for value, where, flag in found:
        if value is False:
            return False, where, flag
    return None, found[0][1], found[0][2]


def _masks(fn: cst.FunctionDef) -> list[tuple[cst.CSTNode, tuple[cst.BaseExpression, bool] | None]]:
    """(mask node, (innermost `if` test, True in its body / False in its else) or None)."""
    collector = _MaskCollector()
    fn.body.visit(collector)
    return collector.found


class _MaskCollector(cst.CSTVisitor):
    def __init__(self) -> None:
        self.found: list = []
        self.guards: list[tuple[cst.BaseExpression, bool]] = []

    def visit_If(self, node: cst.If) -> bool:
        self.guards.append((node.test, True))
        node.body.visit(self)
        self.guards.pop()
        if node.orelse is not None:
            self.guards.append((node.test, False))
            node.orelse.visit(self)
            self.guards.pop()
        return False

    def visit_Comparison(self, node: cst.Comparison) -> None:
        if len(node.comparisons) == 1 and isinstance(node.comparisons[0].operator, _ORDER):
            left, right = node.left, node.comparisons[0].comparator
            if _broadcast_index(left) and _broadcast_index(right) and _one_source(left, right):
                self.found.append((node, self.guards[-1] if self.guards else None))

    def visit_Call(self, node: cst.Call) -> None:
        name = (dotted(node.func) or "").rsplit(".", 1)[-1]
        if name in _TRIANGLES or name in _CAUSAL_HELPERS:
            self.found.append((node, self.guards[-1] if self.guards else None))
        elif name in _ORDER_CALLS and len(node.args) == 2:
            axes = {_unsqueezed_axis(arg.value) for arg in node.args}
            if axes == {"-1", "-2"}:
                self.found.append((node, self.guards[-1] if self.guards else None))


def _broadcast_index(node: cst.BaseExpression) -> bool:
    """An index vector put on an axis of its own: `arange(...)`, `x[None, :]`, `x.view(-1, 1)`."""
    return bool(
        m.findall(node, m.Call(func=m.Attribute(attr=m.Name("arange")) | m.Name("arange")))
        or m.findall(node, m.SubscriptElement(slice=m.Index(value=m.Name("None"))))
    )


def _one_source(left: cst.BaseExpression, right: cst.BaseExpression) -> bool:
    """Both sides index one range (not positions against lengths)."""
    return _root(left) == _root(right) is not None


def _root(node: cst.BaseExpression) -> str | None:
    while True:
        if isinstance(node, cst.Subscript):
            node = node.value
        elif isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
            if dotted(node.func) in ("torch.arange",):
                return "arange"
            node = node.func.value
        elif isinstance(node, cst.Call):
            return dotted(node.func)
        elif isinstance(node, cst.Name):
            return node.value
        else:
            return None


def _unsqueezed_axis(node: cst.BaseExpression) -> str | None:
    if (
        isinstance(node, cst.Call)
        and m.matches(node.func, m.Attribute(attr=m.Name("unsqueeze")))
        and len(node.args) == 1
    ):
        value = node.args[0].value
        if isinstance(value, cst.UnaryOperation) and isinstance(value.expression, cst.Integer):
            return "-" + value.expression.value
        if isinstance(value, cst.Integer):
            return value.value
    return None


def _helpers(project, sf: SourceFile, fn: cst.FunctionDef):
    """Module-level functions `fn` calls: (file, function, {param name: argument expression})."""
    for call in m.findall(fn.body, m.Call(func=m.Name())):
        kind, value = project.resolve_name(sf, call.func.value)
        if kind != "function":
            continue
        helper_sf, helper = value
        params = [p.name.value for p in helper.params.params]
        arg_of: dict[str, cst.BaseExpression] = {}
        for i, arg in enumerate(call.args):
            if arg.keyword is not None:
                arg_of[arg.keyword.value] = arg.value
            elif i < len(params):
                arg_of[params[i]] = arg.value
        yield helper_sf, helper, arg_of


def _guard_value(ctx: Ctx, cls: ClassInfo, rec, guard, arg_of=None) -> bool | None:
    """The mask is built: True, not built: False, unread: None."""
    if guard is None:
        return True
    test, in_body = guard
    value = _flag(ctx, cls, rec, test, arg_of or {})
    if value is None:
        return None
    return value if in_body else not value


def _flag(ctx: Ctx, cls: ClassInfo, rec, test: cst.BaseExpression, arg_of: dict) -> bool | None:
    if m.matches(test, m.Comparison(comparisons=[m.ComparisonTarget(m.Is(), m.Name("True"))])):
        test = test.left
    if isinstance(test, cst.Name) and test.value in arg_of:
        test = arg_of[test.value]
    name = dotted(test)
    if name is None or not name.startswith("self.") or name.count(".") != 1:
        return None
    attr = name.split(".", 1)[1]
    if _asserted(ctx, cls, attr):
        return True
    value = rec.attrs.get(attr) if isinstance(rec, ModuleRec) else None
    return value if isinstance(value, bool) else None


def _asserted(ctx: Ctx, cls: ClassInfo, attr: str) -> bool:
    """`self.<attr>` is set from a config field the entry class's `__init__` asserts true."""
    project = ctx.model.project
    found = project.find_method(ctx.model.entry_cls, "__init__")
    field = _config_field(project, cls, attr)
    if field is None or found is None:
        return False
    for node in m.findall(found[1].body, m.Assert()):
        tested = dotted(node.test)
        if tested is not None and tested.count(".") == 1 and tested.split(".")[1] == field:
            return True
    return False


def _config_field(project, cls: ClassInfo, attr: str) -> str | None:
    """Y of `self.<attr> = <config>.Y` in the class's `__init__`."""
    found = project.find_method(cls, "__init__")
    if found is None:
        return None
    target = m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name(attr)))
    for node in m.findall(found[1].body, m.Assign(targets=[target])):
        value = dotted(node.value)
        if value is not None and value.count(".") == 1:
            return value.split(".")[1]
    return None


def _text(klass: ClassInfo, guard) -> str | None:
    return klass.sf.code(guard[0]) if guard is not None else None


def _text_sf(sf: SourceFile, guard, caller: SourceFile, arg_of: dict) -> str | None:
    """The guard's text, a helper's parameter followed by what the caller passes for it."""
    if guard is None:
        return None
    text = sf.code(guard[0])
    if isinstance(guard[0], cst.Name) and guard[0].value in arg_of:
        text += f" (given {caller.code(arg_of[guard[0].value])})"
    return text
