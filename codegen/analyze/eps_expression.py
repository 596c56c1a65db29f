"""What an epsilon argument reads: a config field, a number, or the local it is bound to.

`Norm(dim, eps=config.rms_norm_eps)` reads a config field, `eps=1e-6` a number of the code's,
`eps=eps` whatever the name holds where the call is made (`local_binding`): the expression its
scope binds it to, or what every one of its bindings reads when they all agree. Read as well:
`getattr(config, "X", default)` (the field where the config declares it, else the default) and
`a if test else b` where both branches read the same. A parameter of the function making the
call is its caller's to say ("parameter"); one the function fills in when the caller gives none
(`eps = eps or 1e-6`, `eps = eps if eps is not None else 1e-6`, `if eps is None: eps = 1e-6`)
reads what the caller passes where the callers are known (the modules whose `__init__` built
the norm's owner, its owner first): the argument at the caller's call, read there, else the
number filled in. Anything else is "other"; where a local stood between (bound more than once
to different things, or to what none of this reads) `unread` says which and where: the norm's
epsilon may be the config's or the code's, and nothing here tells which.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from codegen.analyze.evaluate import Site
from codegen.analyze.local_binding import Binding, lookup

_DEPTH = 8  # locals bound to locals followed at most this far
_SHOWN = 60  # characters of a bound expression quoted in `unread`


@dataclass(frozen=True)
class Read:
    how: str  # config | literal | parameter | other
    field: str | None = None  # the config field, for "config"
    value: float | None = None  # the number, for "literal"
    unread: str | None = None  # a local between the argument and its source: which, why


def read(ctx, site: Site, node: cst.BaseExpression, callers: tuple = ()) -> Read:
    """What `node`, an argument of the call at `site`, reads (memoised per node and callers).
    `callers`: the module records up from the one whose `__init__` holds `site`, that one
    first (its construction call says what that `__init__`'s parameters hold)."""
    key = ("eps_expression", id(node), tuple(id(c) for c in callers))
    return ctx.memo(key, lambda: _read(ctx, site, node, node, 0, callers))


def names_config(node: cst.BaseExpression) -> bool:
    """`config` or `<anything>.config` (`self.config`)."""
    if isinstance(node, cst.Name):
        return node.value == "config"
    return isinstance(node, cst.Attribute) and node.attr.value == "config"


def _read(ctx, site: Site, node, use: cst.CSTNode, depth: int, callers=()) -> Read:
    """`use`: the node `node` is read at (the call, or the binding a local came from)."""
    if isinstance(node, cst.Integer | cst.Float):
        return Read("literal", value=float(node.evaluated_value))
    if isinstance(node, cst.Attribute) and names_config(node.value):
        return _field(ctx, node.attr.value)
    if isinstance(node, cst.Call):
        return _getattr(ctx, site, node, use, depth, callers)
    if isinstance(node, cst.IfExp):
        body, orelse = (_read(ctx, site, n, use, depth, callers) for n in (node.body, node.orelse))
        if body == orelse and body.how != "other":
            return body
        return Read("other", unread=body.unread or orelse.unread)
    if isinstance(node, cst.Name) and depth < _DEPTH:
        return _local(ctx, site, node.value, use, depth, callers)
    return Read("other")


def _field(ctx, name: str) -> Read:
    config = ctx.model.config
    if config is not None and config.key(name) in config.attrs:
        return Read("config", field=config.key(name))
    return Read("other")


def _getattr(ctx, site: Site, call: cst.Call, use, depth: int, callers=()) -> Read:
    """`getattr(config, "X"[, default])`: field X where the config declares it, else what
    the default reads."""
    args = [a.value for a in call.args if a.keyword is None and not a.star]
    if not (
        isinstance(call.func, cst.Name)
        and call.func.value == "getattr"
        and len(args) in (2, 3)
        and len(args) == len(call.args)
        and names_config(args[0])
        and isinstance(args[1], cst.SimpleString)
    ):
        return Read("other")
    found = _field(ctx, args[1].evaluated_value)
    if found.how == "config" or len(args) == 2:
        return found
    return _read(ctx, site, args[2], use, depth, callers)


def _local(ctx, site: Site, name: str, use: cst.CSTNode, depth: int, callers=()) -> Read:
    """What local `name` holds at `use`: what its bindings read, when they all read the
    same; a parameter (what its caller passes, where a default fills it in); else "other",
    `unread` saying which binding(s) decide nothing."""
    found = lookup(site.sf.module, use, name, within=site.scope)
    if found.kind == "parameter":
        return _parameter(ctx, site, name, found, depth, callers)
    if found.kind == "free":
        return Read("other")
    reads = [
        _read(ctx, site, b.value, b.statement, depth + 1, callers) if b.value is not None else None
        for b in found.bindings
    ]
    first = reads[0]
    if first is not None and first.how != "other" and all(r == first for r in reads):
        return first  # a parameter under another name stays its caller's to say
    return Read("other", unread=_unread(site, name, found.bindings, reads))


def _unread(site: Site, name: str, bindings: tuple[Binding, ...], reads) -> str:
    inner = next((r.unread for r in reads if r is not None and r.unread), None)
    if inner is not None:
        return inner  # the local further on, whose binding decides nothing
    lines = ", ".join(Site(site.sf, b.statement, site.scope, site.method).cite() for b in bindings)
    if len(bindings) > 1:
        return f"local `{name}` bound {len(bindings)} times ({lines})"
    (binding,) = bindings
    if binding.value is None:
        return f"local `{name}` bound by no one expression ({lines})"
    code = " ".join(site.sf.code(binding.value).split())
    code = code if len(code) <= _SHOWN else code[: _SHOWN - 3] + "..."
    return f"local `{name}` = `{code}` ({lines})"


def _parameter(ctx, site: Site, name: str, found, depth: int, callers) -> Read:
    """Parameter `name`, rebound once by a default filled in (`name = name or C`): what the
    caller of the `__init__` taking it passes, else C; any other parameter: "parameter"."""
    fallback = default_filled(found.bindings, name, found.function)
    if fallback is None or not callers or depth >= _DEPTH:
        return Read("parameter")
    owner = callers[0]
    init = ctx.model.project.find_method(owner.cls, "__init__") if owner.cls is not None else None
    if init is None or init[1] is not found.function or owner.site is None:
        return Read("parameter")  # a helper's parameter: its call is not the owner's
    passed, by_caller = caller_argument(owner.site.node, init[1], name)
    if passed is _UNKNOWN:
        return Read("parameter")
    form, default = fallback
    if passed is None or _empty(passed, form):
        return _read(ctx, site, default, found.bindings[0].statement, depth + 1, callers)
    if not by_caller:  # the parameter's own default, read where the function is
        return _read(ctx, site, passed, found.function, depth + 1, callers)
    return _read(ctx, owner.site, passed, owner.site.node, depth + 1, callers[1:])


_UNKNOWN = object()


def default_filled(bindings, name: str, function=None) -> tuple[str, cst.BaseExpression] | None:
    """("or", C) for the one rebinding `name = name or C` (or `if not name: name = C` in
    `function`'s body), ("none", C) for `name = name if name is not None else C` (or
    `C if name is None else name`, or `if name is None: name = C`); else None."""
    if len(bindings) != 1 or bindings[0].value is None:
        return None
    value = bindings[0].value
    is_none = m.Comparison(
        left=m.Name(name), comparisons=[m.ComparisonTarget(m.Is(), m.Name("None"))]
    )
    not_none = m.Comparison(
        left=m.Name(name), comparisons=[m.ComparisonTarget(m.IsNot(), m.Name("None"))]
    )
    if m.matches(value, m.BooleanOperation(left=m.Name(name), operator=m.Or())):
        return "or", value.right
    if m.matches(value, m.IfExp(test=not_none, body=m.Name(name))):
        return "none", value.orelse
    if m.matches(value, m.IfExp(test=is_none, orelse=m.Name(name))):
        return "none", value.body
    body = function.body.body if isinstance(function, cst.FunctionDef) else ()
    for statement in body:
        if (
            isinstance(statement, cst.If)
            and statement.orelse is None
            and len(statement.body.body) == 1
            and isinstance(statement.body.body[0], cst.SimpleStatementLine)
            and statement.body.body[0].body[0] is bindings[0].statement
        ):
            if m.matches(statement.test, is_none):
                return "none", value
            if m.matches(statement.test, m.UnaryOperation(m.Not(), m.Name(name))):
                return "or", value
    return None


def caller_argument(call, init: cst.FunctionDef, name: str):
    """(the argument `call` passes for `init`'s parameter `name`, True), else (the
    parameter's default, False): None where it has none; (_UNKNOWN, False) where the call is
    no plain call, or unpacks arguments."""
    if not isinstance(call, cst.Call) or any(a.star for a in call.args):
        return _UNKNOWN, False
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg.value, True
    params = [*init.params.posonly_params, *init.params.params][1:]  # past `self`
    positional = [a.value for a in call.args if a.keyword is None]
    for index, param in enumerate(params):
        if param.name.value == name:
            return (positional[index], True) if index < len(positional) else (param.default, False)
    kwonly = [p for p in init.params.kwonly_params if p.name.value == name]
    return (kwonly[0].default, False) if kwonly else (_UNKNOWN, False)


def _empty(passed: cst.BaseExpression, form: str) -> bool:
    """Whether the value passed gives way to the default: None, or (for `or`) a false one."""
    if m.matches(passed, m.Name("None")):
        return True
    if form != "or":
        return False
    if m.matches(passed, m.Name("False")):
        return True
    return isinstance(passed, cst.Integer | cst.Float) and float(passed.evaluated_value) == 0
