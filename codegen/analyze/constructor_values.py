"""What the model's calls give each constructor parameter, and the tests those values decide.

Why: a config field tested only under a constructor parameter the model never sets selects
nothing. moshi's MLP builds `num_layers = config.num_codebooks if use_flexible_linear else 1`,
and no call reachable from its causal LM passes `use_flexible_linear=True` (only the depth
decoder, which it does not build, does): `num_codebooks` is no switch there. The values of each
`__init__` parameter are read from the reachable direct calls (literals, defaults, a caller's
own parameter passed on), statically; a test on those alone is decided (`decide`).
"""

from __future__ import annotations

from collections.abc import Callable

import libcst as cst

from codegen.analyze.source import ClassInfo, Project, SourceFile, constant, dotted, parameters
from codegen.analyze.walk import DEFS, bare_children, nested_def, walk


def constructor_values(
    project: Project,
    classes: list[ClassInfo],
    functions: list,
    starts: list[ClassInfo],
    names: Callable[[cst.CSTNode], set[str]],
) -> dict[int, dict[str, frozenset]]:
    """id(class) -> each `__init__` parameter to the values every reachable call of the class
    gives it (a literal, its default, or a parameter of the caller's own `__init__` passed
    on: `Layer(config, flexible=False)` then `MLP(config, flexible)`). Only parameters whose
    values are all known, of classes built by direct calls alone: a class named anywhere
    else (a table, a type test), subclassed, or an entry (built from outside) has none.
    `names(node)`: every name `node` mentions (the caller's, cached per function)."""
    inits = {
        id(c): c.methods["__init__"]
        for c in classes
        if isinstance(c.methods.get("__init__"), cst.FunctionDef)
    }
    by_name: dict[str, list[ClassInfo]] = {}
    for c in classes:
        if id(c) in inits:
            by_name.setdefault(c.name, []).append(c)
    if not by_name:
        return {}
    blocked = {id(c) for c in starts}
    for c in classes:  # a subclass's `super().__init__(...)` passes what it likes
        blocked |= {id(base) for base in project.mro(c)[1:]}
    sites: dict[int, list] = {}  # id(class) -> [(call, caller's class or None)]
    # names the methods and functions mention: a class attribute none of them names is read
    # by the library only (`_can_record_outputs = {"attentions": Attention}`: output hooks)
    used: set[str] = set()
    for c in classes:
        for fn in c.methods.values():
            if isinstance(fn, cst.FunctionDef):
                used |= names(fn)
    for _, fn in functions:
        used |= names(fn)
    tables: set[int] = set()  # module-level values already looked through

    def block(sf: SourceFile, name: str) -> None:
        found = _resolved(project, sf, name)
        if found is not None:
            blocked.add(id(found))

    def scan(sf: SourceFile, node: cst.CSTNode, owner: ClassInfo | None) -> None:
        direct: set[int] | None = None  # the nodes of `__init__`'s own body, when needed
        stack: list[tuple[cst.CSTNode, bool]] = [(node, False)]
        while stack:
            sub, inert = stack.pop()  # inert: a mention that builds nothing
            kind = type(sub)
            children = bare_children(sub)
            if kind is cst.ClassDef or kind is cst.FunctionDef:
                children = [c for c in children if c is not sub.name]
            if kind is cst.ClassDef:
                stack.extend((c, inert or _library_attr(c, used)) for c in sub.body.body)
                children = [c for c in children if c is not sub.body]
            elif kind is cst.Annotation:
                inert = True
            elif kind is cst.Call and dotted(sub.func) in ("isinstance", "issubclass"):
                inert = True  # a type test
            elif kind is cst.Call and type(sub.func) is cst.Name and sub.func.value in by_name:
                built = _resolved(project, sf, sub.func.value)
                if built is not None:
                    if direct is None:  # calls in `__init__`'s own body see its parameters
                        init = inits.get(id(owner)) if owner is not None else None
                        direct = {id(n) for n in walk(init, nested_def)} if init else set()
                    caller = owner if id(sub) in direct else None
                    sites.setdefault(id(built), []).append((sub, caller))
                    children = [c for c in children if c is not sub.func]
            elif kind is cst.Name and not inert:
                if sub.value in by_name:  # named other than by a direct call: built anyhow
                    block(sf, sub.value)
                elif sub.value in sf.assigns and id(sf.assigns[sub.value]) not in tables:
                    tables.add(id(sf.assigns[sub.value]))  # a module table of classes
                    for name in names(sf.assigns[sub.value]) & set(by_name):
                        block(sf, name)
            stack.extend((c, inert) for c in children)

    for c in classes:
        scan(c.sf, c.node, c)
    for sf, fn in functions:
        scan(sf, fn, None)

    rebound: dict[int, set[str]] = {}  # id(class) -> names its `__init__` rebinds

    def rebinds(caller: ClassInfo) -> set[str]:
        if id(caller) not in rebound:
            rebound[id(caller)] = _rebound(inits[id(caller)])
        return rebound[id(caller)]

    built = [c for c in classes if id(c) in inits and id(c) not in blocked and id(c) in sites]
    # a caller's parameters start with no values (grown each round), not as unknown
    values: dict[int, dict[str, frozenset | None]] = {
        id(c): {p.name.value: frozenset() for p in _init_params(inits[id(c)])} for c in built
    }
    for _ in range(32):  # passed-on parameters: until nothing changes
        new: dict[int, dict[str, frozenset | None]] = {}
        for c in built:
            key = id(c)
            params = _init_params(inits[key])
            out: dict[str, frozenset | None] = {p.name.value: frozenset() for p in params}
            for call, caller in sites[key]:
                given = _bind(call, params)
                for param in params:
                    name = param.name.value
                    if given is None:
                        got = None
                    elif name in given:
                        got = _arg_values(given[name], caller, values, rebinds)
                    elif param.default is not None:
                        ok, default = constant(param.default)
                        got = frozenset((default,)) if ok else None
                    else:
                        got = None
                    old = out[name]
                    out[name] = None if old is None or got is None else old | got
            new[key] = out
        if new == values:
            break
        values = new
    return {
        key: {name: found for name, found in params.items() if found}
        for key, params in values.items()
        if any(params.values())
    }


def _library_attr(stmt: cst.CSTNode, used: set[str]) -> bool:
    """A class-body assignment to names no method or function of the model mentions."""
    if not isinstance(stmt, cst.SimpleStatementLine):
        return False
    targets = []
    for small in stmt.body:
        if isinstance(small, cst.Assign):
            targets += [t.target for t in small.targets]
        elif isinstance(small, cst.AnnAssign):
            targets.append(small.target)
        else:
            return False
    return all(isinstance(t, cst.Name) and t.value not in used for t in targets)


def _resolved(project: Project, sf: SourceFile, name: str) -> ClassInfo | None:
    kind, value = project.resolve_name(sf, name)
    return value if kind == "class" else None


def _init_params(fn: cst.FunctionDef) -> list[cst.Param]:
    """`__init__`'s named parameters after `self`, positional ones first."""
    positional = [*fn.params.posonly_params, *fn.params.params][1:]
    return positional + list(fn.params.kwonly_params)


def _bind(call: cst.Call, params: list[cst.Param]) -> dict[str, cst.BaseExpression] | None:
    """Parameter -> the argument a call gives it; None for a call spreading `*`/`**`."""
    if any(arg.star for arg in call.args):
        return None
    positional = [p.name.value for p in params]
    out: dict[str, cst.BaseExpression] = {}
    index = 0
    for arg in call.args:
        if arg.keyword is not None:
            out[arg.keyword.value] = arg.value
        elif index < len(positional):
            out[positional[index]] = arg.value
            index += 1
    return out


def _arg_values(node, caller: ClassInfo | None, values: dict, rebinds) -> frozenset | None:
    """The values an argument can hold: a literal, or a parameter of the caller's
    `__init__` (the call being in its body and the name never rebound there)."""
    ok, value = constant(node)
    if ok:
        return frozenset((value,))
    if type(node) is cst.Name and caller is not None:
        params = values.get(id(caller))
        if params is not None and node.value in params and node.value not in rebinds(caller):
            return params[node.value]
    return None


_TARGETED = frozenset((cst.AugAssign, cst.AnnAssign, cst.For, cst.CompFor, cst.NamedExpr))


def _rebound(fn: cst.FunctionDef) -> set[str]:
    """Names `fn` binds other than as parameters (assignments, loop and comprehension
    targets, `with ... as`, `:=`, nested definitions' parameters)."""
    out: set[str] = set()
    for node in walk(fn):
        kind = type(node)
        targets = []
        if kind is cst.Assign:
            targets = [t.target for t in node.targets]
        elif kind in _TARGETED:
            targets = [node.target]
        elif kind is cst.AsName:
            targets = [node.name]
        elif kind in DEFS and kind is not cst.ClassDef and node is not fn:
            out |= {p.name.value for p in parameters(node)}
        while targets:  # names, unpacked or not (not `self.x`, `d[k]`)
            target = targets.pop()
            if isinstance(target, cst.Name):
                out.add(target.value)
            elif isinstance(target, cst.Tuple | cst.List):
                targets += [el.value for el in target.elements]
            elif isinstance(target, cst.StarredElement):
                targets.append(target.value)
    return out


def decide(test: cst.BaseExpression, fixed: dict[str, frozenset] | None) -> bool | None:
    """The truth of `test` when the constructor parameters in `fixed` (each with every value
    the reachable calls give it) decide it alike for all of them; None when they do not, or
    when it reads anything else (a config field, an attribute)."""
    if not fixed:
        return None
    if isinstance(test, cst.BooleanOperation):
        left, right = decide(test.left, fixed), decide(test.right, fixed)
        stop = isinstance(test.operator, cst.Or)  # `or`: one true side; `and`: one false
        if stop in (left, right):
            return stop
        return left if left is not None and left == right else None
    values = _possible(test, fixed)
    if values is None:
        return None
    truths = {bool(v) for v in values}
    return truths.pop() if len(truths) == 1 else None


def _possible(node: cst.BaseExpression, fixed: dict[str, frozenset]) -> frozenset | None:
    """Every value `node` can take given `fixed`, or None when that is not known."""
    ok, value = constant(node)
    if ok:
        return frozenset((value,))
    if isinstance(node, cst.Name):
        return fixed.get(node.value)
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Not):
        inner = _possible(node.expression, fixed)
        return None if inner is None else frozenset(not v for v in inner)
    if isinstance(node, cst.Comparison) and len(node.comparisons) == 1:
        comp = node.comparisons[0]
        test = _COMPARE.get(type(comp.operator))
        left, right = _possible(node.left, fixed), _possible(comp.comparator, fixed)
        if test is None or left is None or right is None:
            return None
        try:
            return frozenset(test(a, b) for a in left for b in right)
        except TypeError:  # `None < 1`: an error at run time, not a value
            return None
    return None


_COMPARE = {
    cst.Is: lambda a, b: a is b,
    cst.IsNot: lambda a, b: a is not b,
    cst.Equal: lambda a, b: a == b,
    cst.NotEqual: lambda a, b: a != b,
    cst.LessThan: lambda a, b: a < b,
    cst.LessThanEqual: lambda a, b: a <= b,
    cst.GreaterThan: lambda a, b: a > b,
    cst.GreaterThanEqual: lambda a, b: a >= b,
}
