"""Drop the constructor parameters a model.py class never reads, with the arguments its
builders pass for them.

A parameter goes dead when an edit removes its only reader: the block's `layer_id` once
`every_layer_moe` (or a rule that rebuilt the block) settles the per-layer choice that read
it, and a norm's `dim` once the norm is the weightless `PlainRMSNorm`, which takes it only
to stand in for `RMSNorm(dim, eps)`. A hand-written package takes neither.

Before::

    class PlainRMSNorm(nn.Module):
        def __init__(self, dim: int, eps: float = 1e-6):
            super().__init__()
            self.eps = eps
    ...
        self.norm = PlainRMSNorm(args.dim, args.norm_eps)
        self.layers = nn.ModuleList(TransformerBlock(args, i) for i in range(args.n_layers))

After::

        def __init__(self, eps: float = 1e-6):
    ...
        self.norm = PlainRMSNorm(args.norm_eps)
        self.layers = nn.ModuleList(TransformerBlock(args) for _ in range(args.n_layers))
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.walk import visit
from codegen.transforms.base import Transform
from codegen.transforms.edits import findall

# a name a constructor may read its own arguments through, unseen by name
_INTROSPECTION = frozenset({"locals", "vars"})
# an argument whose evaluation may do something besides giving a value: kept, with its class
_EFFECTFUL = m.Call() | m.Await() | m.Yield() | m.NamedExpr()
_UNUSED = "_"


class DropUnreadParameters(Transform):
    """A model.py class that the package builds itself (`Cls(...)`, and by no other route)
    loses each `__init__` parameter its body never reads, and each of its builders the
    argument passed for it; a comprehension variable that argument alone read becomes `_`.
    Repeats until nothing changes (a dropped argument may have been the caller's only read
    of its own parameter). Classes nothing in the package builds (the model) are API and
    are left as they are."""

    name = "drop_unread_parameters"

    def apply(self, package, features=None) -> None:
        if "model.py" not in package.files:
            return
        dropped: set[tuple[str, str]] = set()
        while unread := unread_parameters(package.files):
            found = {(cls, name) for cls, params in unread.items() for _, name in params}
            if found <= dropped:  # an `__init__` this could not edit: stop, not loop
                return
            dropped |= found
            for filename in list(package.files):
                package.edit(filename, _DropArguments(unread))
            package.edit("model.py", _DropParameters(unread))


def unread_parameters(files: dict[str, cst.Module]) -> dict[str, list[tuple[int | None, str]]]:
    """{class: [(position among the call's arguments, or None for keyword-only, name)]}: the
    parameters of model.py classes that can go, every builder dropping its argument safely."""
    builds = _Builds()
    for module in files.values():
        visit(module, builds)
    found = {}
    for statement in files["model.py"].body:
        if not isinstance(statement, cst.ClassDef):
            continue
        name = statement.name.value
        calls = builds.calls.get(name)
        if not calls or name in builds.other_uses:
            continue
        init = _init(statement)
        unread = _unread(init) if init is not None else []
        if unread and all(_droppable(call, unread) for call in calls):
            found[name] = unread
    return found


class _Builds(cst.CSTVisitor):
    """Calls of a bare name (`Cls(...)`), and names read any other way (a base class, a
    table of classes, `isinstance`): a class read so may be built where its arguments
    cannot be seen."""

    def __init__(self):
        super().__init__()
        self.calls: dict[str, list[cst.Call]] = {}
        self.other_uses: set[str] = set()

    def visit_Import(self, node):
        return False

    def visit_ImportFrom(self, node):
        return False

    def visit_ClassDef(self, node):
        for base in node.bases:  # the class's own name is no use of it
            visit(base, self)
        visit(node.body, self)
        return False

    def visit_Call(self, node):
        if isinstance(node.func, cst.Name):
            self.calls.setdefault(node.func.value, []).append(node)
            for arg in node.args:
                visit(arg, self)
            return False
        return True

    def visit_Attribute(self, node):
        visit(node.value, self)  # `x.Cls` names an attribute, not the class
        return False

    def visit_Arg(self, node):
        visit(node.value, self)  # `f(Cls=...)` names a keyword, not the class
        return False

    def visit_Name(self, node):
        self.other_uses.add(node.value)


def _init(cls: cst.ClassDef) -> cst.FunctionDef | None:
    return next(
        (
            s
            for s in cls.body.body
            if isinstance(s, cst.FunctionDef) and s.name.value == "__init__" and not s.decorators
        ),
        None,
    )


def _unread(init: cst.FunctionDef) -> list[tuple[int | None, str]]:
    """The parameters after `self` the body never reads, none when arguments may be read
    without their names (`*args`, `**kwargs`, `locals()`)."""
    params = init.params
    if params.posonly_params or isinstance(params.star_arg, cst.Param) or params.star_kwarg:
        return []
    reads = _reads(init.body)
    if reads & _INTROSPECTION:
        return []
    positional = [(i, p.name.value) for i, p in enumerate(params.params[1:])]
    keyword_only = [(None, p.name.value) for p in params.kwonly_params]
    return [(at, name) for at, name in [*positional, *keyword_only] if name not in reads]


def _reads(node: cst.CSTNode) -> set[str]:
    reads = _Reads()
    visit(node, reads)
    return reads.names


class _Reads(cst.CSTVisitor):
    """The names an expression or body mentions as names (not attributes or keywords)."""

    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def visit_Attribute(self, node):
        visit(node.value, self)
        return False

    def visit_Arg(self, node):
        visit(node.value, self)
        return False

    def visit_Name(self, node):
        self.names.add(node.value)


def _passed(call: cst.Call, at: int | None, name: str) -> cst.Arg | None:
    """The argument `call` passes for the parameter: at its position, or by keyword."""
    positional = [a for a in call.args if a.keyword is None]
    if at is not None and at < len(positional):
        return positional[at]
    return next((a for a in call.args if a.keyword and a.keyword.value == name), None)


def _droppable(call: cst.Call, unread: list[tuple[int | None, str]]) -> bool:
    """Every argument `call` passes for an unread parameter can go: none is unpacked
    (`*xs`, `**kw` may fill any parameter) and none does anything but give its value."""
    if any(arg.star for arg in call.args):
        return False
    passed = [_passed(call, at, name) for at, name in unread]
    return not any(arg is not None and findall(arg.value, _EFFECTFUL) for arg in passed)


def _without(items: list, dropped: list) -> list:
    """`items` (arguments or parameters) without `dropped`, the last kept one ending as the
    last of all did (no comma, or a trailing one)."""
    kept = [item for item in items if not any(item is d for d in dropped)]
    if kept and items and kept[-1] is not items[-1]:
        kept[-1] = kept[-1].with_changes(comma=items[-1].comma)
    return kept


class _DropArguments(cst.CSTTransformer):
    def __init__(self, unread: dict[str, list[tuple[int | None, str]]]):
        super().__init__()
        self.unread = unread

    def leave_Call(self, original, updated):
        func = updated.func
        if not (isinstance(func, cst.Name) and func.value in self.unread):
            return updated
        unread = self.unread[func.value]
        dropped = [_passed(updated, at, name) for at, name in unread]
        args = _without(list(updated.args), [a for a in dropped if a is not None])
        return updated.with_changes(args=args)

    def leave_GeneratorExp(self, original, updated):
        return _free_variable(original, updated)

    def leave_ListComp(self, original, updated):
        return _free_variable(original, updated)

    def leave_SetComp(self, original, updated):
        return _free_variable(original, updated)


def _free_variable(original, updated):
    """`(f(i) for i in xs)` whose `f(i)` lost its `i`: `(f() for _ in xs)`."""
    target = updated.for_in.target
    if not isinstance(target, cst.Name) or target.value == _UNUSED:
        return updated

    def others(node):  # the names the comprehension reads, its own variable aside
        bare = node.with_changes(for_in=node.for_in.with_changes(target=cst.Name(_UNUSED)))
        return _reads(bare)

    if target.value in others(original) and target.value not in others(updated):
        return updated.with_changes(for_in=updated.for_in.with_changes(target=cst.Name(_UNUSED)))
    return updated


class _DropParameters(cst.CSTTransformer):
    def __init__(self, unread: dict[str, list[tuple[int | None, str]]]):
        super().__init__()
        self.unread = unread
        self._classes: list[str] = []

    def visit_ClassDef(self, node):
        self._classes.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self._classes.pop()
        return updated

    def leave_FunctionDef(self, original, updated):
        if original.name.value != "__init__" or not self._classes:
            return updated
        names = {name for _, name in self.unread.get(self._classes[-1], [])}
        if not names:
            return updated
        params = updated.params

        def kept(group):
            return _without(list(group), [p for p in group if p.name.value in names])

        positional, keyword_only = kept(params.params), kept(params.kwonly_params)
        star = params.star_arg
        if not keyword_only and isinstance(star, cst.ParamStar):
            # no keyword-only parameter left: the bare `*` goes, and the comma before it
            positional[-1] = positional[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            star = cst.MaybeSentinel.DEFAULT
        params = params.with_changes(params=positional, star_arg=star, kwonly_params=keyword_only)
        return updated.with_changes(params=params)
