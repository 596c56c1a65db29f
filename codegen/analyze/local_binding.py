"""What a name means where the code uses it: the bindings of the scope it resolves to.

`eps = config.layer_norm_eps` then `Norm(dim, eps=eps)`: the argument holds what the name
was bound to. Python's scopes say which bindings count: those of the innermost function (or
comprehension) that binds the name or takes it as a parameter, else of an enclosing one,
else the module's (a class body is no scope for the functions inside it). Read by structure
from the node using the name, without running the code:

    parameter  the name is a parameter of that function: its caller decides it; where the
               body also rebinds it (`eps = eps or 1e-6`) those bindings come with it, and
               the function, so a reader can tell a default filled in from a new value
    bound      the scope binds it: every binding, each with the expression it assigns (None
               where it assigns no one expression: a loop target, an augmented assignment,
               an unpacking, an import, a `global`)
    free       no scope in the file binds it (a builtin, a name defined elsewhere)
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from codegen.analyze.walk import children

_FUNCTIONS = (cst.FunctionDef, cst.Lambda)
_COMPREHENSIONS = (cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp)
_NESTED = (cst.FunctionDef, cst.ClassDef, cst.Lambda, *_COMPREHENSIONS)


@dataclass(frozen=True)
class Binding:
    statement: cst.CSTNode  # the node binding the name (its line is the binding's)
    value: cst.BaseExpression | None  # the one expression assigned, where there is one


@dataclass(frozen=True)
class Lookup:
    kind: str  # parameter | bound | free
    bindings: tuple[Binding, ...] = ()
    function: cst.CSTNode | None = None  # for "parameter": the function taking it


def lookup(module: cst.Module, use: cst.CSTNode, name: str, within=None) -> Lookup:
    """The bindings `name` resolves to at node `use` of `module` (`within`: a statement of
    the module holding `use`, to search first)."""
    path = _path(within, use) if within is not None else None
    if path is None:
        path = _path(module, use) or []
    for scope in reversed(path):
        if type(scope) in _FUNCTIONS:
            if name in _parameters(scope.params):
                body = scope.body if isinstance(scope, cst.FunctionDef) else None
                rebound = _bindings(body, name) if body is not None else ()
                return Lookup("parameter", rebound, scope)
            if isinstance(scope, cst.FunctionDef):
                found = _bindings(scope.body, name)
                if found:
                    return Lookup("bound", found)
        elif type(scope) in _COMPREHENSIONS:
            found = _comprehension_bindings(scope, name)
            if found:
                return Lookup("bound", found)
    found = _bindings(module, name)
    return Lookup("bound", found) if found else Lookup("free")


def _path(root: cst.CSTNode, node: cst.CSTNode) -> list[cst.CSTNode] | None:
    """The nodes from `root` down to `node` (both included), else None."""
    stack = [(root, 0)]
    path: list[cst.CSTNode] = []
    while stack:
        current, depth = stack.pop()
        del path[depth:]
        path.append(current)
        if current is node:
            return path
        stack.extend((child, depth + 1) for child in reversed(children(current)))
    return None


def _parameters(params: cst.Parameters) -> set[str]:
    every = [*params.posonly_params, *params.params, *params.kwonly_params]
    every += [p for p in (params.star_arg, params.star_kwarg) if isinstance(p, cst.Param)]
    return {p.name.value for p in every}


def _bindings(root: cst.CSTNode, name: str) -> tuple[Binding, ...]:
    """Every binding of `name` in the scope whose body is `root` (nested functions,
    classes and comprehensions are scopes of their own: only their names bind here), in
    source order."""
    found: list[Binding] = []
    stack = [root]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind in _NESTED:
            named = kind in (cst.FunctionDef, cst.ClassDef) and node.name.value == name
            found.extend([Binding(node, None)] if named else [])
            if node is not root:
                continue
        found.extend(_binds(node, name))
        stack.extend(reversed(children(node)))
    return tuple(found)


def _binds(node: cst.CSTNode, name: str) -> list[Binding]:
    """The bindings of `name` that `node` itself makes."""
    kind = type(node)
    if kind is cst.Assign:
        return [b for t in node.targets for b in _target(t.target, name, node, node.value)]
    if kind is cst.AnnAssign and node.value is not None:
        return _target(node.target, name, node, node.value)
    if kind is cst.NamedExpr:
        return _target(node.target, name, node, node.value)
    if kind in (cst.AugAssign, cst.For, cst.Del):
        return _target(node.target, name, node, None)
    if kind is cst.WithItem and node.asname is not None:
        return _target(node.asname.name, name, node, None)
    if kind is cst.ExceptHandler and node.name is not None:
        return _target(node.name.name, name, node, None)
    if kind in (cst.Import, cst.ImportFrom) and not isinstance(node.names, cst.ImportStar):
        bound = [_imported(alias) for alias in node.names]
        return [Binding(node, None)] if name in bound else []
    if kind in (cst.Global, cst.Nonlocal):
        return [Binding(node, None)] if any(n.name.value == name for n in node.names) else []
    return []


def _target(target, name: str, statement, value) -> list[Binding]:
    """A binding of `name` where `target` is the name itself (assigned `value`), or unpacks
    to it (no one expression)."""
    if isinstance(target, cst.Name):
        return [Binding(statement, value)] if target.value == name else []
    if isinstance(target, cst.Tuple | cst.List):
        inner = [e.value for e in target.elements]
        return (
            [Binding(statement, None)]
            if any(_target(t, name, statement, None) for t in inner)
            else []
        )
    if isinstance(target, cst.StarredElement):
        return _target(target.value, name, statement, None)
    return []


def _imported(alias: cst.ImportAlias) -> str:
    if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
        return alias.asname.name.value
    node = alias.name
    while isinstance(node, cst.Attribute):
        node = node.value
    return node.value if isinstance(node, cst.Name) else ""


def _comprehension_bindings(node, name: str) -> tuple[Binding, ...]:
    """The comprehension's own loop targets naming `name` (`[f(e) for e in eps]`)."""
    found = []
    loop = node.for_in
    while loop is not None:
        found.extend(_target(loop.target, name, loop, None))
        loop = loop.inner_for_in
    return tuple(found)
