"""A second attention forward on some layers, read against the first (`attention.layer_logn`).

Inkling-2's full-attention layers build an attention class of their own beside the sliding
layers' one. The attention facts are read from the first attention layer; this module reads
what the other layers' forward does differently, from the two traced forwards:

* the two traces are compared term by term (operation, module class and attribute, which
  earlier term each input is; constants and sizes aside, since the layers are sized apart);
* the products the second trace holds over the first, each a tensor of the attention times a
  factor the trace does not follow (a position-dependent scale), are the difference when the
  traces agree without them;
* each factor is the name a statement of the forward assigns: read as
  `c + alpha * log(((positions + offset) / floor).clamp(min=c))` (c = 1), alpha and floor
  config reads, positions the layer's position ids;
* what each product scales: the queries handed to the kernel (`q`) or the states of its
  relative position bias (`rel`).

The fact is `{"layers": "full" (the second forward runs on exactly the layers without a
window), "alpha": <hf_config expression>, "floor": ...,
"offset": int, "scaled": ("q", "rel")}`; None where the forwards differ otherwise (named
unsupported by `attention_forms` with what differs).

Inputs of the second forward's own (Inkling-2's full layers' `key_hidden_states`,
`value_hidden_states`) are read apart (`inputs`): the traces are compared with each such
input standing for the primary one, so the forwards agree where the second only hands some
projections another tensor; each input's readers must be projections (linears) feeding the
kernel's keys or its values, and the decoder layer must hand the forward, for its primary
input and each own one, the same tensor through a norm of its own (a call of a norm at
another attribute), or each another output of one depth module's call (block attention
residuals reading a query per input: `attention_residuals`' `reads`). That fact
(`attention.layer_inputs`) is `{"norms": {"q": <HF attribute of the queries' norm>, "k": ...,
"v": ...}, "reads": {"k": (<HF projection attributes>,), "v": (...)}}`."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze import dynamic_convs
from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, strip, walk
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.roles import DEPTH, LINEAR, NORM
from codegen.analyze.walk import findall

FEATURE = "attention.layer_logn"
INPUTS = "attention.layer_inputs"


def read(
    ctx: Ctx, first, other, layers: list[int], full: list[int], kv_convs: dict | None = None
) -> tuple[dict | None, dict | None, dict | None, str]:
    """(fact, inputs fact, filters fact, what differs) of the attention `other` (AttnInfo,
    on `layers`) against `first`; `full`: the layers without a window (the ones a second
    class may select); `kv_convs`: the first's residual key/value filters, which the
    second's input-dependent ones (`dynamic_convs`) stand in for when the traces are
    compared (each filter's own operations one step)."""
    if sorted(layers) != sorted(full):
        return None, None, None, "on other layers than the full-attention ones"
    convs = dynamic_convs.read(ctx, first, other, kv_convs, layers)
    ours, ran = _collapsed(first.trace.terms, _node(first.rec), _scopes(first.rec, convs))
    theirs, runs = _collapsed(other.trace.terms, _node(other.rec), _scopes(other.rec, convs))
    extra = [t for t in theirs if _scaled_product(t)]
    own = _own_inputs(first, other)
    skip = {id(t) for t in extra}
    if _signature(first.rec, ours, set(), through=ran) != _signature(
        other.rec, theirs, skip, own, through=runs
    ):
        return None, None, None, _differences(ctx, first, other, extra, own, layers)
    inputs = None
    if own:
        inputs, why = _inputs(ctx, other, own, layers, set(runs))
        if inputs is None:
            return None, None, None, why
    elif not extra:
        return None, None, None, "the same operations on modules of other classes"
    fact, differs = _scale(ctx, other, extra)
    found = fact is not None
    return fact, inputs if found else None, convs if found else None, differs


def _node(rec: ModuleRec) -> cst.CSTNode | None:
    return rec.cls.node if rec.cls is not None else None


def _scopes(rec: ModuleRec, convs: dict | None) -> set[int]:
    """ids of the class definitions of the attention's key/value filters `convs` names."""
    found = set()
    for name, _ in (convs or {}).get("convs", ()):
        child = rec.attrs.get(name)
        if isinstance(child, ModuleRec) and child.cls is not None:
            found.add(id(child.cls.node))
    return found


def _collapsed(
    terms: list[Term], own: cst.CSTNode | None, scopes: set[int]
) -> tuple[list[Term], dict[int, Term]]:
    """`terms` with each run of terms traced outside the attention's own class `own` (an
    inlined forward, and the functions it calls) that holds a term of a class `scopes` names
    (a key/value filter's) replaced by one `conv` term over the run's first outside tensor
    that is no input; each run term -> that term (what later terms read)."""
    out: list[Term] = []
    run: list[Term] = []
    alias: dict[int, Term] = {}

    def close():
        if run and any(t.site is not None and id(t.site.scope) in scopes for t in run):
            inside = {id(t) for t in run}
            outside = [
                a
                for t in run
                for a in t.args
                if isinstance(a, Term) and id(a) not in inside and a.op != "input"
            ]
            out.append(Term(op="conv", name="conv", args=tuple(outside[:1]), site=run[-1].site))
            alias.update({id(t): out[-1] for t in run})
        else:
            out.extend(run)
        run.clear()

    for t in terms:
        scope = t.site.scope if t.site is not None else None
        if scopes and (scope is not own if scope is not None else bool(run)):
            run.append(t)  # an unsited term (a parameter read) inside a run is the run's
            continue
        close()
        out.append(t)
    close()
    return out, alias


def _scale(ctx: Ctx, other, extra: list[Term], cite: bool = True) -> tuple[dict | None, str]:
    """The log-of-the-position scale the products `extra` apply (see the module's doc);
    `cite`: the evidence recorded."""
    kernel = other.kernel
    tensors = [strip(t) for t in kernel.args if isinstance(t, Term)] if kernel else []
    q = tensors[0] if tensors else None  # the kernel's first tensor: the queries
    bias = kernel.kwargs.get("position_bias") if kernel is not None else None
    scaled, factors = [], set()
    for t in extra:
        what = "q" if _feeds(t, q) else "rel" if _feeds(t, bias) else None
        if what is None or t.site is None:
            return None, "a product on a tensor other than the queries or relative states"
        scaled.append(what)
        factors.add(_factor_name(t.site))
    if len(factors) != 1 or None in factors:
        return None, "products by factors of several or unnamed expressions"
    form = _log_form(ctx, extra[0].site, factors.pop())
    if form is None:
        return None, "queries scaled by a factor of another form than a clamped log"
    where = extra[0].site.cite()
    if cite:
        ctx.cite(
            FEATURE,
            f"{where} (the full layers' queries times 1 + alpha * log(max((position + offset) /"
            " floor, 1)))",
        )
    return {"layers": "full", **form, "scaled": tuple(sorted(set(scaled)))}, ""


def _own_inputs(first, other) -> dict[int, Term]:
    """The second forward's inputs the first has none of: id -> the primary input, which
    each stands for when the traces are compared."""
    mine = {t.name for t in first.trace.terms if t.op == "input"}
    inputs = [t for t in other.trace.terms if t.op == "input"]
    primary = next((t for t in inputs if t.kwargs.get("primary")), None)
    if primary is None:
        return {}
    return {id(t): primary for t in inputs if t.name not in mine}


def _readers(terms: list[Term], term: Term) -> list[Term]:
    """The terms taking `term` as an argument."""
    return [
        t
        for t in terms
        if any(a is term for a in t.args) or any(v is term for v in t.kwargs.values())
    ]


def _attribute(t: Term) -> str | None:
    """The `self.<attribute>` a call term calls (modules built alike share a record)."""
    node = t.site.node if t.site is not None else None
    if m.matches(node, m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name()))):
        return node.func.attr.value
    return None


def _inputs(
    ctx: Ctx, other, own: dict[int, Term], layers: list[int], inside: frozenset | set = frozenset()
) -> tuple[dict | None, str]:
    """The inputs fact (see the module's doc), or None and what is not read; `inside`: ids of
    terms of the key/value filters' own forwards (their taps read the inputs too)."""
    terms = other.trace.terms
    inputs = [t for t in terms if t.op == "input"]
    names = ", ".join(t.name for t in inputs if id(t) in own)
    reads = _projection_reads(ctx, other, own, inside)
    if reads is None:
        return None, f"inputs of its own ({names}) read by other than the key or value projections"
    norms = _layer_norms(ctx, other, [t.name for t in inputs], own, layers)
    if norms is None:
        return None, (
            f"inputs of its own ({names}) the decoder layer computes otherwise than through"
            " norms of their own of one tensor"
        )
    primary = next(iter(own.values())).name
    found = {"q": norms[primary], **{role: norms[name] for role, (name, _) in reads.items()}}
    if len(set(found.values())) != len(found):
        return None, f"inputs of its own ({names}) through one norm"
    site = norms.pop(None)
    if site is not None:
        ctx.cite(
            INPUTS, f"{site.cite()} (the full layers' keys and values read inputs of their own)"
        )
    return {"norms": found, "reads": {role: attrs for role, (_, attrs) in reads.items()}}, ""


def _projection_reads(
    ctx: Ctx, other, own: dict[int, Term], inside: frozenset | set = frozenset()
) -> dict[str, tuple] | None:
    """{"k": (input name, (projection attributes...)), "v": ...}: the projections each own
    input feeds, all on the kernel's keys or all on its values; None where an input has
    another reader, or the two do not split into keys and values."""
    terms = other.trace.terms
    kernel = other.kernel
    tensors = [strip(t) for t in kernel.args if isinstance(t, Term)] if kernel else []
    if len(tensors) < 3:
        return None
    reads: dict[str, tuple] = {}
    for t in terms:
        if t.op != "input" or id(t) not in own:
            continue
        readers = [r for r in _readers(terms, t) if id(r) not in inside]
        attrs = tuple(_attribute(r) for r in readers)
        if not readers or None in attrs or not all(_linear(ctx, r) for r in readers):
            return None
        fed = {
            role
            for role, tensor in (("k", tensors[1]), ("v", tensors[2]))
            if all(_feeds(r, tensor) for r in readers)
        }
        if len(fed) != 1 or fed & set(reads):
            return None
        reads[fed.pop()] = (t.name, attrs)
    return reads if set(reads) == {"k", "v"} else None


def _layer_norms(
    ctx: Ctx, other, names: list[str], own: dict[int, Term], layers: list[int]
) -> dict | None:
    """Input name -> the attribute of the norm the decoder layer hands it through (and None ->
    the call's site), where the layer hands the forward's primary input (`names`: its inputs
    in order) and each of its own (`own`) a norm's output of one and the same tensor."""
    layer = (ctx.model.layers or [None] * (layers[0] + 1))[layers[0]]
    if not isinstance(layer, ModuleRec):
        return None
    terms = ctx.trace(layer, inline=False).terms
    calls = [t for t in terms if t.op == "call" and t.module is other.rec]
    if len(calls) != 1:
        return None
    call = calls[0]
    handed = dict(zip(names, call.args, strict=False))
    handed.update({k: v for k, v in call.kwargs.items() if k in names})
    primary = {t.name for t in own.values()}
    wanted = primary | {t.name for t in other.trace.terms if id(t) in own}
    found, sources = {}, []
    for name in wanted:
        value = strip(handed.get(name))
        if not isinstance(value, Term) or value.op != "call" or not value.args:
            continue
        if ctx.roles.role(value.module) != NORM or _attribute(value) is None:
            continue
        found[name] = _attribute(value)
        sources.append(value.args[0])
    if set(found) != wanted or not _one_source(ctx, sources):
        return None
    return {**found, None: call.site}  # None: where the layer calls the forward


def _one_source(ctx: Ctx, sources: list) -> bool:
    """The norms read one tensor, or each another output of one call of a depth module (a
    block attention residual with a query per input: see `attention_residuals`)."""
    if len({id(t) for t in sources}) == 1:
        return True
    if len({id(t) for t in sources}) != len(sources):
        return False
    calls = {id(_output_of(t)): _output_of(t) for t in sources}
    call = next(iter(calls.values()))
    return (
        len(calls) == 1
        and isinstance(call, Term)
        and call.op == "call"
        and ctx.roles.role(call.module) == DEPTH
    )


def _output_of(t):
    """The call whose output `t` is: the term an `index` term takes apart, else `t`."""
    if isinstance(t, Term) and t.op == "index" and t.args and isinstance(t.args[0], Term):
        return t.args[0]
    return t


def _differences(ctx: Ctx, first, other, extra: list[Term], own: dict, layers: list[int]) -> str:
    """What the second forward does otherwise, in words: inputs of its own (unless each is
    read apart: `_inputs`), modules of other classes under the same attribute (with the own
    inputs they read), position-dependent products."""
    terms = other.trace.terms
    inputs = [t for t in terms if t.op == "input" and id(t) in own]
    readers = {id(r.module) for t in inputs for r in _readers(terms, t)}
    swapped = []
    for name, child in other.rec.attrs.items():
        before = first.rec.attrs.get(name)
        if isinstance(child, ModuleRec) and isinstance(before, ModuleRec):
            if child.kind != before.kind:
                reads = readers & {id(child), *(id(c) for _, c in _descendants(child))}
                also = ", reading the forward's own inputs too" if reads else ""
                swapped.append(f"{name}: {child.kind} in place of {before.kind}{also}")
    parts = []
    if (
        inputs
        and _layer_norms(ctx, other, [t.name for t in terms if t.op == "input"], own, layers)
        is None
    ):
        parts.append(
            f"inputs of its own ({', '.join(t.name for t in inputs)}) the decoder layer computes"
            " otherwise than through norms of their own of one tensor"
        )
    parts += swapped
    if extra and _scale(ctx, other, extra, cite=False)[0] is None:  # else the rule's scale
        parts.append("tensors times a factor the trace does not follow (a position scale)")
    return "; ".join(parts) or "other operations"


def _linear(ctx: Ctx, t: Term) -> bool:
    """A call of a linear layer (a projection)."""
    module = t.module if t.op == "call" else None
    return isinstance(module, ModuleRec) and (
        ctx.roles.role(module) == LINEAR or module.kind == "Linear"
    )


def _descendants(rec: ModuleRec):
    """(name, record) of every module inside `rec`."""
    for name, child in rec.children():
        if isinstance(child, ModuleRec):
            yield name, child
            yield from _descendants(child)


def _scaled_product(t: Term) -> bool:
    """A product of a tensor by a factor the trace does not follow (UNKNOWN)."""
    if t.op != "mul" or len(t.args) != 2:
        return False
    terms = [a for a in t.args if isinstance(a, Term)]
    return len(terms) == 1 and not any(isinstance(a, int | float) for a in t.args)


def _feeds(t: Term, target) -> bool:
    return isinstance(target, Term) and any(x is t for x in walk(target))


def _signature(
    rec: ModuleRec,
    terms: list[Term],
    skip: set[int],
    alias: dict[int, Term] | None = None,
    through: dict[int, Term] | None = None,
) -> list:
    """Each term's operation, module (class and attribute) and inputs (earlier terms by
    position); a skipped product stands for its tensor, an aliased input for its alias, a
    term left out of `terms` for the one `through` names (`_collapsed`)."""
    names = {id(child): name for name, child in rec.attrs.items()}
    index: dict[int, object] = {}
    out = []
    for t in terms:
        if alias and id(t) in alias:
            index[id(t)] = index.get(id(alias[id(t)]), "?")
            continue
        if id(t) in skip:
            tensor = next(a for a in t.args if isinstance(a, Term))
            index[id(t)] = index.get(id(tensor), "?")
            continue
        index[id(t)] = len(out)
        module = t.module
        kind = (names.get(id(module)), module.kind) if isinstance(module, ModuleRec) else None
        if module is rec:
            kind = "self"

        def ref(value):
            if isinstance(value, Term):
                value = (through or {}).get(id(value), value)
                return index.get(id(value), "?")
            return "self" if value is rec else "c"

        name = t.name if t.op in ("fn", "call", "input", "index", "attn") else ""
        out.append(
            (
                t.op,
                name,
                kind,
                tuple(ref(a) for a in t.args),
                tuple(sorted((k, ref(v)) for k, v in t.kwargs.items() if k != "_default")),
            )
        )
    return out


def _factor_name(site) -> str | None:
    """The name the product's statement multiplies by (`x.float() * tau`)."""
    node = site.node
    products = [node] if isinstance(node, cst.BinaryOperation) else []
    products += findall(node, m.BinaryOperation(operator=m.Multiply()))
    for product in products:
        for side in (product.right, product.left):
            if isinstance(side, cst.Name):
                return side.value
    return None


_CONST = m.Float() | m.Integer()


def _log_form(ctx: Ctx, site, name: str) -> dict | None:
    """`name`'s assignment in the forward read as `1 + alpha * log(((positions + offset) /
    floor).clamp(min=1))`: {"alpha", "floor", "offset"}; None for another form."""
    method = site.method or site.scope
    if method is None:
        return None
    for assign in findall(method, m.Assign(targets=[m.AssignTarget(target=m.Name(name))])):
        value = assign.value
        if not m.matches(value, m.BinaryOperation(operator=m.Add(), left=_CONST)):
            continue
        if _number(value.left) != 1:
            return None
        product = value.right
        if not m.matches(product, m.BinaryOperation(operator=m.Multiply())):
            return None
        alpha, log = product.left, product.right
        if not m.matches(log, m.Call(func=m.Attribute(attr=m.Name("log")))):
            return None
        clamp = log.args[0].value if len(log.args) == 1 else None
        if not m.matches(clamp, m.Call(func=m.Attribute(attr=m.Name("clamp")))):
            return None
        lower = [a for a in clamp.args if a.keyword is not None and a.keyword.value == "min"]
        if len(clamp.args) != 1 or not lower or _number(lower[0].value) != 1:
            return None
        ratio = clamp.func.value
        if not m.matches(ratio, m.BinaryOperation(operator=m.Divide())):
            return None
        shifted = _uncast(ratio.left)
        if not m.matches(shifted, m.BinaryOperation(operator=m.Add(), right=m.Integer())):
            return None
        if not _positions(_uncast(shifted.left)):
            return None
        fields = [_config_read(ctx, node) for node in (alpha, ratio.right)]
        if None in fields:
            return None
        return {"alpha": fields[0], "floor": fields[1], "offset": int(shifted.right.value)}
    return None


def _uncast(node):
    """Through `.float()` and parentheses."""
    while m.matches(node, m.Call(func=m.Attribute(attr=m.Name("float")), args=[])):
        node = node.func.value
    return node


def _positions(node) -> bool:
    """The layer's position ids: a `position_ids` argument, or that entry of its kwargs."""
    if m.matches(node, m.Name("position_ids")):
        return True
    key = m.SubscriptElement(slice=m.Index(value=m.SimpleString()))
    if m.matches(node, m.Subscript(slice=[key])):
        return node.slice[0].slice.value.evaluated_value == "position_ids"
    return False


def _config_read(ctx: Ctx, node) -> str | None:
    """`config.<field>` / `self.config.<field>` of a field the config has."""
    config = m.Name("config") | m.Attribute(attr=m.Name("config"))
    if not m.matches(node, m.Attribute(value=config)):
        return None
    field = node.attr.value
    attrs = getattr(ctx.model.config, "attrs", {})
    return f"hf_config.{field}" if field in attrs else None


def _number(node):
    if isinstance(node, cst.Integer | cst.Float):
        return float(node.value)
    return None
