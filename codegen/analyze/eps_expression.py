"""What an epsilon argument reads: a config field, a number, or the local it is bound to.

`Norm(dim, eps=config.rms_norm_eps)` reads a config field, `eps=1e-6` a number of the code's,
`eps=eps` whatever the name holds where the call is made (`local_binding`): the expression its
scope binds it to, or what every one of its bindings reads when they all agree. Read as well:
`getattr(config, "X", default)` (the field where the config declares it, else the default)
and `a if test else b` where both branches read the same. A parameter of the function making
the call is its caller's to say ("parameter"). Anything else is "other"; where a local stood
between (bound more than once to different things, or to what none of this reads) `unread`
says which and where: the norm's epsilon may be the config's or the code's, and nothing here
tells which.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

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


def read(ctx, site: Site, node: cst.BaseExpression) -> Read:
    """What `node`, an argument of the call at `site`, reads (memoised per node)."""
    return ctx.memo(("eps_expression", id(node)), lambda: _read(ctx, site, node, node, 0))


def names_config(node: cst.BaseExpression) -> bool:
    """`config` or `<anything>.config` (`self.config`)."""
    if isinstance(node, cst.Name):
        return node.value == "config"
    return isinstance(node, cst.Attribute) and node.attr.value == "config"


def _read(ctx, site: Site, node, use: cst.CSTNode, depth: int) -> Read:
    """`use`: the node `node` is read at (the call, or the binding a local came from)."""
    if isinstance(node, cst.Integer | cst.Float):
        return Read("literal", value=float(node.evaluated_value))
    if isinstance(node, cst.Attribute) and names_config(node.value):
        return _field(ctx, node.attr.value)
    if isinstance(node, cst.Call):
        return _getattr(ctx, site, node, use, depth)
    if isinstance(node, cst.IfExp):
        body, orelse = (_read(ctx, site, n, use, depth) for n in (node.body, node.orelse))
        if body == orelse and body.how != "other":
            return body
        return Read("other", unread=body.unread or orelse.unread)
    if isinstance(node, cst.Name) and depth < _DEPTH:
        return _local(ctx, site, node.value, use, depth)
    return Read("other")


def _field(ctx, name: str) -> Read:
    config = ctx.model.config
    if config is not None and config.key(name) in config.attrs:
        return Read("config", field=config.key(name))
    return Read("other")


def _getattr(ctx, site: Site, call: cst.Call, use, depth: int) -> Read:
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
    return _read(ctx, site, args[2], use, depth)


def _local(ctx, site: Site, name: str, use: cst.CSTNode, depth: int) -> Read:
    """What local `name` holds at `use`: what its bindings read, when they all read the
    same; a parameter; else "other", `unread` saying which binding(s) decide nothing."""
    found = lookup(site.sf.module, use, name, within=site.scope)
    if found.kind == "parameter":
        return Read("parameter")
    if found.kind == "free":
        return Read("other")
    reads = [
        _read(ctx, site, b.value, b.statement, depth + 1) if b.value is not None else None
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
