"""Wrapper modules that only hand their input to one inner Linear, read as that Linear.

A projection built as `self.q_proj = Wrapper(...)`, whose `__init__` builds one
`self.linear = nn.Linear(...)` (a config or constructor flag picking it over another kind)
and whose `forward` does nothing but `return self.linear(x)` (in every branch), computes
exactly what the inner Linear does. The owner's attribute is pointed at (a copy of) the inner
Linear record, so every reader sees a Linear named `q_proj` with its real shape and bias; the
record's `via` keeps the inner attribute, so its checkpoint keys stay `q_proj.linear.weight`.
"""

from __future__ import annotations

import copy

import libcst as cst

from codegen.analyze.evaluate import ModuleListRec, ModuleRec, ParamRec
from codegen.analyze.source import Project

_LINEAR = "Linear"


def read_delegates(project: Project, root: ModuleRec) -> None:
    """Replace, under `root`, every delegating wrapper by its inner Linear (see module doc)."""
    copies: dict[int, ModuleRec] = {}
    seen: set[int] = set()
    pending: list = [root]
    while pending:
        rec = pending.pop()
        if id(rec) in seen:
            continue
        seen.add(id(rec))
        if isinstance(rec, ModuleListRec):
            for i, item in enumerate(rec.items):
                if isinstance(item, ModuleRec):
                    rec.items[i] = _read(project, item, copies)
                    pending.append(rec.items[i])
            continue
        if not isinstance(rec, ModuleRec):
            continue
        for name, child in list(rec.attrs.items()):
            if isinstance(child, ModuleRec):
                rec.attrs[name] = _read(project, child, copies)
                pending.append(rec.attrs[name])
            elif isinstance(child, ModuleListRec):
                pending.append(child)


def _read(project: Project, rec: ModuleRec, copies: dict[int, ModuleRec]) -> ModuleRec:
    """The Linear `rec` delegates to (one copy per wrapper record), else `rec` itself."""
    if id(rec) in copies:
        return copies[id(rec)]
    inner = delegate_of(project, rec)
    if inner is None:
        return rec
    name, linear = inner
    found = copy.copy(linear)  # wrappers alike in shape share one inner record
    found.attrs = dict(linear.attrs)
    found.via = (*rec.via, name, *linear.via)
    found.site = linear.site
    copies[id(rec)] = found
    return found


def delegate_of(project: Project, rec: ModuleRec) -> tuple[str, ModuleRec] | None:
    """(attribute, inner Linear) when `rec` owns nothing but that Linear and its forward
    returns `self.<attribute>(<its input>, ...)` in every branch and computes nothing else."""
    if rec.cls is None or rec.ext_base is not None:
        return None
    modules = []
    for name, child in rec.children():
        if isinstance(child, ParamRec) and (child.kind == "parameter" or child.persistent):
            return None
        if isinstance(child, ModuleListRec):
            return None
        if isinstance(child, ModuleRec):
            modules.append((name, child))
    if len(modules) != 1:
        return None
    name, linear = modules[0]
    if linear.kind != _LINEAR or (linear.cls is not None and "forward" in _own_methods(linear)):
        return None
    found = project.find_method(rec.cls, "forward")
    if found is None:
        return None
    fn = found[1]
    params = [p.name.value for p in fn.params.params][1:]
    if not params or not _only_delegates(fn.body.body, name, params[0]):
        return None
    return name, linear


def _own_methods(rec: ModuleRec) -> set[str]:
    return set(rec.cls.methods) if rec.cls is not None else set()


def _only_delegates(body, attr: str, first: str) -> bool:
    """Every statement is a docstring, an `if` whose branches only delegate, or `return
    self.<attr>(<first>, ...)`; and some branch returns."""
    returns = 0
    for i, stmt in enumerate(body):
        if isinstance(stmt, cst.If):
            branches = [stmt.body.body]
            orelse = stmt.orelse
            while isinstance(orelse, cst.If):
                branches.append(orelse.body.body)
                orelse = orelse.orelse
            if orelse is not None:
                branches.append(orelse.body.body)
            if not all(_only_delegates(b, attr, first) for b in branches):
                return False
            returns += 1
            continue
        if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
            return False
        small = stmt.body[0]
        if i == 0 and isinstance(small, cst.Expr) and isinstance(small.value, cst.SimpleString):
            continue  # a docstring
        if not (isinstance(small, cst.Return) and _delegating_call(small.value, attr, first)):
            return False
        returns += 1
    return returns > 0


def _delegating_call(value, attr: str, first: str) -> bool:
    if not isinstance(value, cst.Call) or not value.args:
        return False
    func = value.func
    handed = value.args[0]
    return (
        isinstance(func, cst.Attribute)
        and isinstance(func.value, cst.Name)
        and func.value.value == "self"
        and func.attr.value == attr
        and handed.keyword is None
        and not handed.star
        and isinstance(handed.value, cst.Name)
        and handed.value.value == first
    )
