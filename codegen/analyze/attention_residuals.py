"""Block attention residuals: each sublayer's input an attention over earlier states.

Read from structure, never from names. A module of role `depth` (roles.depth_attention: an
attention whose only parameter is a learned query, one vector or a row per query, beside at
most a weightless norm) is called with a stack of states and the current one; the layer
appends its input to that stack on the layers a config field marks as block boundaries
(`self.<flag> = layer_idx % config.<field> == 0`), the backbone does the same after each such
layer, and one more such module of the backbone reads the stack before the final norm
(inkling2). The fact is a dict:

* `layer`: the layer's depth modules by attribute, each with its query counts (inkling2's
  full layers read queries, keys and values apart: 3) and the layers that hold it
  (`attention_input` on layers 1.., `mlp_input` on all);
* `final`: the backbone's depth module before the final norm, or None;
* `boundary`: the config field whose multiples start a block, with the layer's flag
  attribute; `site`: the first depth module's class.

* `eps`: the epsilon of the weightless RMS norm over the stacked states.

A module reading several queries also records the layers holding that form (`wide`) and
where each of its outputs goes (`reads`, in query order): the attribute of the norm reading
it and the argument of the call taking the normed state (inkling2's full layers: query 0
through `q_input_layernorm` into the attention's `hidden_states`, 1 through
`k_input_layernorm` into `key_hidden_states`, 2 into `value_hidden_states`); `reads` is
None unless one module's call takes the normed outputs and the layers holding that module's
class (from the second on) are exactly the ones whose depth module reads several queries
(the full-attention layers: their attention class is what the rules build apart; where
they differ, `taken` holds that class and its layers for the unsupported line).

The rule realises one module per sublayer (the attention's from the second layer on, with
one query, or on some layers three whose outputs each reach the attention through a norm of
their own: the full layers' `attention.layer_inputs`) and one before the final norm; another
form is named unsupported with what differs and, for a multi-query module, where each
output goes, in place of layer_extras' generic line for these modules.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.attention_forms import span
from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleRec, ParamRec
from codegen.analyze.roles import DEPTH, NORM
from codegen.analyze.walk import findall


def detect(ctx: Ctx) -> dict | None:
    """The block attention residual fact (see the module docstring), else None."""
    layers = [rec for rec in ctx.model.layers or () if isinstance(rec, ModuleRec)]
    held: dict[str, dict] = {}
    for index, layer in enumerate(layers):
        for name, child in layer.children():
            if isinstance(child, ModuleRec) and ctx.roles.role(child) == DEPTH:
                entry = held.setdefault(name, {"queries": [], "layers": []})
                entry["layers"].append(index)
                if _queries(child) not in entry["queries"]:
                    entry["queries"].append(_queries(child))
                entry.setdefault("site", ctx.class_site(child))
    if not held:
        return None
    for index, layer in enumerate(layers):
        for name, child in layer.children():
            if name in held and isinstance(child, ModuleRec) and _queries(child) != 1:
                entry = held[name]
                entry.setdefault("wide", []).append(index)
                if "reads" not in entry:
                    entry["reads"], entry["taker"] = _outputs(ctx, layer, child) or (None, None)
    for entry in held.values():
        taker = entry.pop("taker", None)
        taken = _taken_on(layers, taker)
        if entry.get("reads") and taken != entry["wide"]:
            # the attention's class and the queries' count apart
            entry["reads"], entry["taken"] = None, (taker[1], taken)
    owner = ctx.model.stack_owner
    final = None
    if isinstance(owner, ModuleRec):
        final = next(
            (
                n
                for n, c in owner.children()
                if isinstance(c, ModuleRec) and ctx.roles.role(c) == DEPTH
            ),
            None,
        )
    boundary = _boundary(ctx, layers[0])
    site = next(iter(held.values()))["site"]
    eps = _eps(next(c for _, c in layers[0].children() if ctx.roles.role(c) == DEPTH))
    for entry in held.values():
        entry.pop("site")
    fact = {"layer": held, "final": final, "boundary": boundary, "eps": eps}
    ctx.cite("block.attention_residuals", site)
    why = _unrealised(held, final, boundary, eps)
    if why:
        names = ", ".join(f"{n} ({_counted(e['queries'])})" for n, e in held.items())
        ctx.unsupported(
            "block.layer_modules",  # layer_extras leaves these modules to this line
            f"block attention residuals ({names}) of another form: {why}"
            + "".join(_described(n, e) for n, e in held.items() if e.get("wide"))
            + ": no rule yet (the rule realises one module per sublayer, the attention's from"
            " the second layer on, of one query or three each read through a norm of its own,"
            " one before the final norm, blocks started by a config field)",
            site,
        )
        return None
    return fact


def _described(name: str, entry: dict) -> str:
    """`; <name> on layers ...: query 0 through <norm> into <argument>, 1 ...`: where each
    output of a multi-query module goes."""
    reads = entry.get("reads")
    where = f"; {name} on layers {span(entry['wide'])}"
    if entry.get("taken"):
        kind, taken = entry["taken"]
        return f"{where}: its outputs taken by {kind}, which layers {span(taken)} hold"
    if not reads:
        return f"{where}: its outputs read otherwise than each through a norm into one call"
    parts = [f"{i} through {norm} into {target}" for i, (norm, target) in enumerate(reads)]
    return f"{where}: query {', '.join(parts)}"


def _taken_on(layers: list[ModuleRec], taker) -> list[int] | None:
    """The layers from the second on whose attribute `taker` (attribute, class) holds a
    module of that class: the layers whose depth module must read several queries."""
    if taker is None:
        return None
    attribute, kind = taker
    return [
        index
        for index, layer in enumerate(layers)
        if index > 0
        and isinstance(layer.attrs.get(attribute), ModuleRec)
        and layer.attrs[attribute].kind == kind
    ]


def _outputs(ctx: Ctx, layer: ModuleRec, module: ModuleRec) -> tuple | None:
    """(reads, taker) of the multi-query `module` in `layer`'s forward. reads: per output, in
    query order, (the attribute of the norm reading it, the argument of the sublayer call
    taking the normed state: a keyword's name, else its position); taker: (attribute,
    class) of the one module whose call takes them all. None where an output is read
    otherwise (several readers, no norm, the norm's output not one argument of one module
    call, outputs taken by several modules)."""
    terms = ctx.trace(layer, inline=False).terms
    calls = [t for t in terms if t.op == "call" and t.module is module]
    if len(calls) != 1:
        return None
    call = calls[0]
    # `q, k, v = module(...)`: the first output is the call itself, the others indexed
    outputs = {0: call}
    for t in terms:
        if t.op == "index" and t.args and t.args[0] is call and t.name.isdigit():
            outputs.setdefault(int(t.name), t)
    if sorted(outputs) != list(range(_queries(module))):
        return None
    reads, taken = [], set()
    for _, term in sorted(outputs.items()):
        norms = [t for t in _readers(terms, term) if t.op == "call"]
        if len(norms) != 1 or ctx.roles.role(norms[0].module) != NORM:
            return None
        norm = _attribute(norms[0])
        takers = [t for t in _readers(terms, norms[0]) if t.op == "call"]
        if norm is None or len(takers) != 1:
            return None
        taker = takers[0]
        taken.add(id(taker.module))
        keyword = next((k for k, v in taker.kwargs.items() if v is norms[0]), None)
        position = next((i for i, a in enumerate(taker.args) if a is norms[0]), None)
        reads.append((norm, keyword if keyword is not None else position))
    attribute = _attribute(taker)
    if len(taken) != 1 or attribute is None or not isinstance(taker.module, ModuleRec):
        return None
    return tuple(reads), (attribute, taker.module.kind)


def _readers(terms: list, term) -> list:
    """The terms taking `term` as an argument (positional or keyword)."""
    return [
        t
        for t in terms
        if any(a is term for a in t.args) or any(v is term for v in t.kwargs.values())
    ]


def _attribute(term) -> str | None:
    """The `self.<attribute>` a call term calls."""
    node = term.site.node if term.site is not None else None
    if m.matches(node, m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name()))):
        return node.func.attr.value
    return None


def _unrealised(held: dict, final, boundary, eps) -> str | None:
    """What differs from the form the rule realises, else None."""
    for entry in held.values():
        if entry["queries"] == [1]:
            continue
        reads = entry.get("reads")
        wide = {q for q in entry["queries"] if q != 1}
        if not reads or wide != {len(reads)} or entry["layers"][:1] != [1]:
            return "a module reads several queries (a sublayer's inputs read apart)"
    starts = sorted(e["layers"][0] for e in held.values())
    if starts != [0, 1]:
        return "not one module per sublayer, the attention's from the second layer on"
    if final is None or boundary is None or eps is None:
        return "no module before the final norm, boundary field or norm epsilon read"
    return None


def _eps(rec: ModuleRec) -> float | None:
    """The epsilon of the depth module's weightless norm (its child's `eps`)."""
    for _, child in rec.children():
        value = child.attrs.get("eps") if isinstance(child, ModuleRec) else None
        if isinstance(value, float):
            return value
    return None


def _counted(counts: list) -> str:
    return f"{' or '.join(map(str, counts))} {'query' if counts == [1] else 'queries'}"


def _queries(rec: ModuleRec) -> int | str:
    params = [p for _, p in rec.children() if isinstance(p, ParamRec)]
    shape = params[0].shape if params else ()
    return 1 if len(shape) == 1 else shape[0]


_FLAG = m.Assign(
    targets=[m.AssignTarget(target=m.Attribute(value=m.Name("self")))],
    value=m.Comparison(
        left=m.BinaryOperation(
            operator=m.Modulo(), right=m.Attribute(value=m.Name("config"), attr=m.Name())
        ),
        comparisons=[m.ComparisonTarget(operator=m.Equal(), comparator=m.Integer("0"))],
    ),
)


def _boundary(ctx: Ctx, layer: ModuleRec) -> dict | None:
    """{"field", "flag"} of `self.<flag> = <index> % config.<field> == 0` in the layer's
    `__init__`, else None."""
    if layer.cls is None:
        return None
    found = ctx.model.project.find_method(layer.cls, "__init__")
    if found is None:
        return None
    for node in findall(found[1], _FLAG):
        target = node.targets[0].target
        modulo = node.value.left
        assert isinstance(target, cst.Attribute) and isinstance(modulo, cst.BinaryOperation)
        return {"field": modulo.right.attr.value, "flag": target.attr.value}
    return None
