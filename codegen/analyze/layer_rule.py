"""A per-layer condition of a module's forward, restated over the config and the layer index.

Some attention layers skip RoPE, and which ones is decided in the source by a guard around the
rotation (`if self.use_rope:`, `if self.sliding_window is not None:`, `if self.sliding_window
is None or self.is_sliding:`) whose attributes `__init__` computed from the config and the
layer index. A generated package needs the same decision as a config expression, whatever
fields the config stores it in (`no_rope_layers`, `layer_types`, `sliding_window`...). The
guard is restated by substituting each `self.<attr>` and each local of `__init__` with the
expression assigned to it (assigned once, unconditionally), until only the config parameter,
the layer-index parameter and literals remain; the result is then checked against the
analysed layers (it must give the same answer for every one), else there is no rule.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.evaluate import FuncRef, ModuleRec, Unknown
from codegen.analyze.walk import findall

CONFIG = "hf_config"  # the names the rule is written with
LAYER = "i"
_BUILTINS = {"None", "True", "False", "hasattr", "getattr", "len", "isinstance", "int", "bool"}
_DEPTH = 8  # substitutions deep: a chain of attributes is short in practice


def guard_rule(ctx, rec: ModuleRec, called, layers: list[tuple[int, ModuleRec, bool]]):
    """The condition under which `rec`'s forward calls `called` (a FuncRef or a child module),
    as `hf_config` / `i` source, or None when it cannot be restated or does not match the
    analysed `layers` ((index, instance, called?) per layer)."""
    project = ctx.model.project
    if rec.cls is None:
        return None
    forward = project.find_method(rec.cls, "forward")
    init = project.find_method(rec.cls, "__init__")
    if forward is None or init is None:
        return None
    names = _called_names(rec, called)
    if not names:
        return None
    test = _guard(forward[1], names)
    if test is None:
        return None
    params = _params(init[1], layers)
    if params is None:
        return None
    config_param, layer_param = params
    inliner = _Inliner(project, rec.cls, init[1])
    try:
        restated = inliner.restate(test)
    except _NotExpressible:
        return None
    free = _variables(restated)
    if not free <= {config_param, layer_param} | _BUILTINS:
        return None
    positional = [p.name.value for p in init[1].params.params][1:]
    if not _agrees(ctx, forward[0], restated, params, positional, layers):
        return None
    renamed = restated.visit(_Rename({config_param: CONFIG, layer_param: LAYER}))
    return " ".join(cst.Module([]).code_for_node(renamed).split())


class _NotExpressible(Exception):
    pass


def _called_names(rec: ModuleRec, called) -> set[str]:
    """Names a call of `called` goes by in the forward: a function's name, or the attribute
    holding a child module."""
    if isinstance(called, FuncRef):
        return {called.node.name.value}
    if isinstance(called, ModuleRec) and called is not rec:
        return {name for name, child in rec.attrs.items() if child is called}
    return set()


def _guard(fn: cst.FunctionDef, names: set[str]) -> cst.BaseExpression | None:
    """The `if` tests enclosing the first call of `names` (negated on the else side), joined
    with `and`; None when the call is unconditional or absent."""
    found: list[list[cst.BaseExpression]] = []

    class V(cst.CSTVisitor):
        def __init__(self):
            self.tests: list[cst.BaseExpression] = []

        def visit_If(self, node: cst.If) -> bool:
            self.tests.append(node.test)
            node.body.visit(self)
            self.tests.pop()
            if node.orelse is not None:
                self.tests.append(_not(node.test))
                node.orelse.visit(self)
                self.tests.pop()
            return False

        def visit_Call(self, node: cst.Call) -> None:
            func = node.func
            name = func.value if isinstance(func, cst.Name) else None
            if isinstance(func, cst.Attribute):
                name = func.attr.value
            if name in names and not found:
                found.append(list(self.tests))

    fn.body.visit(V())
    if not found or not found[0]:
        return None
    tests = found[0]
    joined = _paren(tests[0])
    for test in tests[1:]:
        joined = cst.BooleanOperation(left=joined, operator=cst.And(), right=_paren(test))
    return joined


def _not(test: cst.BaseExpression) -> cst.BaseExpression:
    return cst.UnaryOperation(operator=cst.Not(), expression=_paren(test))


def _paren(node: cst.BaseExpression) -> cst.BaseExpression:
    if isinstance(node, cst.Name | cst.Attribute | cst.Call | cst.Subscript) or node.lpar:
        return node
    return node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def _params(init: cst.FunctionDef, layers) -> tuple[str, str] | None:
    """(config parameter, layer-index parameter) of `__init__`: the parameter each analysed
    instance received its layer index in, and the one that received the config."""
    positional = [p.name.value for p in init.params.params][1:]
    layer_param = config_param = None
    for name in positional:
        values = [(index, _argument(rec, positional, name)) for index, rec, _ in layers]
        if all(isinstance(v, int) and not isinstance(v, bool) and v == i for i, v in values):
            layer_param = layer_param or name
        elif name == "config" or type(values[0][1]).__name__ == "ConfigObj":
            config_param = config_param or name
    if layer_param is None or config_param is None:
        return None
    return config_param, layer_param


class _Inliner:
    """Substitutes `self.<attr>` and `__init__` locals with what `__init__` assigned them."""

    def __init__(self, project, cls, init: cst.FunctionDef):
        self.attrs: dict[str, list[cst.BaseExpression]] = {}
        self.locals: dict[str, list[cst.BaseExpression]] = {}
        self.top: set[int] = {id(s) for s in init.body.body}
        for owner in project.mro(cls):
            method = owner.methods.get("__init__")
            if method is None:
                continue
            self._collect(method)
            break  # a super().__init__ that sets attributes is not followed

    def _collect(self, init: cst.FunctionDef) -> None:
        for statement in findall(init.body, m.Assign()):
            for target in statement.targets:
                node = target.target
                if m.matches(node, m.Attribute(value=m.Name("self"))):
                    self.attrs.setdefault(node.attr.value, []).append(statement.value)
                elif isinstance(node, cst.Name):
                    self.locals.setdefault(node.value, []).append(statement.value)
        for statement in findall(init.body, m.AnnAssign() | m.AugAssign()):
            node = statement.target
            if m.matches(node, m.Attribute(value=m.Name("self"))):
                self.attrs.setdefault(node.attr.value, []).extend([None, None])
            elif isinstance(node, cst.Name):
                self.locals.setdefault(node.value, []).extend([None, None])

    def restate(self, node: cst.BaseExpression, depth: int = 0) -> cst.BaseExpression:
        if depth > _DEPTH:
            raise _NotExpressible
        return node.visit(_Substitute(self, depth))

    def value_of(self, table: dict, name: str, depth: int):
        assigned = table.get(name)
        if assigned is None:
            return None
        if len(assigned) != 1 or assigned[0] is None:
            raise _NotExpressible  # reassigned: its value depends on the path taken
        return _paren(self.restate(assigned[0], depth + 1))


class _Substitute(cst.CSTTransformer):
    def __init__(self, inliner: _Inliner, depth: int):
        super().__init__()
        self.inliner, self.depth = inliner, depth
        self.skip: set[int] = set()  # attribute names and keywords: not variables

    def leave_Attribute(self, original, updated):
        if m.matches(updated, m.Attribute(value=m.Name("self"))):
            value = self.inliner.value_of(self.inliner.attrs, updated.attr.value, self.depth)
            if value is None:
                raise _NotExpressible  # set outside __init__ (or by a base class)
            return value
        return updated

    def visit_Attribute(self, node):
        self.skip.add(id(node.attr))

    def visit_Arg(self, node):
        if node.keyword is not None:
            self.skip.add(id(node.keyword))

    def leave_Name(self, original, updated):
        if id(original) in self.skip or updated.value == "self":
            return updated
        value = self.inliner.value_of(self.inliner.locals, updated.value, self.depth)
        return updated if value is None else value


def _variables(node: cst.CSTNode) -> set[str]:
    """Names used as variables (not the `<name>` of `x.<name>`, nor a keyword)."""
    skip = {id(a.attr) for a in findall(node, m.Attribute())}
    skip |= {id(a.keyword) for a in findall(node, m.Arg()) if a.keyword is not None}
    return {n.value for n in findall(node, m.Name()) if id(n) not in skip}


class _Rename(cst.CSTTransformer):
    def __init__(self, names: dict[str, str]):
        super().__init__()
        self.names = names
        self.skip: set[int] = set()

    def visit_Attribute(self, node):
        self.skip.add(id(node.attr))

    def visit_Arg(self, node):
        if node.keyword is not None:
            self.skip.add(id(node.keyword))

    def leave_Name(self, original, updated):
        if id(original) in self.skip or updated.value not in self.names:
            return updated
        return updated.with_changes(value=self.names[updated.value])


def _argument(rec: ModuleRec, positional: list[str], name: str):
    """The value `rec` was built with for `__init__` parameter `name`."""
    position = positional.index(name)
    return rec.args[position] if position < len(rec.args) else rec.kwargs.get(name)


def _agrees(ctx, owner, restated, params, positional, layers) -> bool:
    """The restated condition gives every analysed layer the answer its trace found."""
    from codegen.analyze.evaluate import Frame

    interp = ctx.model.interp
    config_param, layer_param = params
    for index, rec, called in layers:
        config = _argument(rec, positional, config_param)
        frame = Frame(owner.sf, {config_param: config, layer_param: index}, owner=owner)
        try:
            value = interp.eval(restated, frame)
        except Unknown:
            return False
        except Exception:  # noqa: BLE001 - an expression the evaluator does not take
            return False
        if not isinstance(value, bool | int | type(None)) or bool(value) != called:
            return False
    return True


def init_rule(ctx, rec: ModuleRec, expression: cst.BaseExpression, layers, agrees) -> str | None:
    """`expression`, a node of `rec`'s class `__init__` (a projection's size, the test that
    gives a layer a parameter), restated over `hf_config` and the layer index `i`; None when
    it cannot be, or when `agrees(index, value)` rejects the value it gives any of `layers`
    ((index, instance) per analysed layer: the instances are built with the index)."""
    found = restate_init(ctx, rec, expression, layers)
    if found is None:
        return None
    text, values = found
    if not all(agrees(i, v) for (i, _), v in zip(layers, values, strict=True)):
        return None
    return text


def restate_init(ctx, rec: ModuleRec, expression: cst.BaseExpression, layers):
    """(`expression` of `rec`'s `__init__` restated over `hf_config` and `i`, its value for
    each of `layers`), or None where it cannot be restated or a value is not known."""
    project = ctx.model.project
    if rec.cls is None:
        return None
    init = project.find_method(rec.cls, "__init__")
    if init is None:
        return None
    triples = [(index, layer, None) for index, layer in layers]
    params = _params(init[1], triples)
    if params is None:
        return None
    config_param, layer_param = params
    try:
        restated = _Inliner(project, rec.cls, init[1]).restate(expression)
    except _NotExpressible:
        return None
    if not _variables(restated) <= {config_param, layer_param} | _BUILTINS:
        return None
    positional = [p.name.value for p in init[1].params.params][1:]
    values = _values(ctx, init[0], restated, params, positional, triples)
    if values is None:
        return None
    renamed = restated.visit(_Rename({config_param: CONFIG, layer_param: LAYER}))
    renamed = renamed.with_changes(lpar=[], rpar=[])  # a whole expression, not an operand
    return " ".join(cst.Module([]).code_for_node(renamed).split()), values


def _values(ctx, owner, restated, params, positional, layers) -> list | None:
    """The restated expression's value for each analysed layer (None: one is not known)."""
    from codegen.analyze.evaluate import Frame

    interp = ctx.model.interp
    config_param, layer_param = params
    out = []
    for index, rec, _ in layers:
        config = _argument(rec, positional, config_param)
        frame = Frame(owner.sf, {config_param: config, layer_param: index}, owner=owner)
        try:
            out.append(interp.eval(restated, frame))
        except Unknown:
            return None
        except Exception:  # noqa: BLE001 - an expression the evaluator does not take
            return None
    return out
