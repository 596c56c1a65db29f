"""Queries and keys filtered by convolutions over the sequence, values half delayed (zaya's
compressed convolutional attention projection).

Found by structure in a child of the attention that holds two `Conv1d`s and four `Linear`s
and hands the attention its queries, keys and values:

- two projections of the input are concatenated (queries first) and run through the two
  convolutions in turn, the first depthwise (one filter per channel), the second grouped
  (one group per head); the filtered channels are split back into queries and keys;
- each filtered part gets a mix of the two projections added: the queries half the sum of
  each query head and its key head, the keys that mix averaged over the query heads of the
  group (a `mean` of the same product);
- the values are two projections concatenated, the second read one position late: its
  output is sliced `[:, :-1]` behind a state for the first position.

The kernels are read from `kernel_size=` in the convolutions' constructor calls (a config
field directly or through an attribute set from one). The padding, the zero state before the
first position and the order of the parts are HF's in this form; verify checks them.
Anything else gives None, and the convolution stays named by `attention.convolutions`'
unsupported line (layer_extras).
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.dataflow import Term, walk
from codegen.analyze.evaluate import ModuleRec

FEATURE = "attention.conv_projection"


def detect(ctx, shared: dict) -> dict | None:
    """{"module": the child's attribute, "q", "k", "value", "delayed": its projections,
    "depthwise", "grouped": its convolutions, "kernels": (depthwise, grouped) kernel sizes,
    "kernel_fields": the config fields giving them (None where a literal), "conv_bias": the
    convolutions' bias flag, "bias": the projections' bias flag} or None."""
    rep = shared.get("rep")
    if rep is None:
        return None
    for name, child in rep.rec.children():
        if not isinstance(child, ModuleRec) or child.cls is None:
            continue
        found = read(ctx, child)
        if found is not None:
            ctx.cite(FEATURE, ctx.attr_site(rep.rec, name))
            return {"module": name, **found}
    return None


def read(ctx, rec: ModuleRec) -> dict | None:
    children = dict(rec.children())
    linears = {n: c for n, c in children.items() if isinstance(c, ModuleRec) and c.kind == "Linear"}
    convs = {n: c for n, c in children.items() if isinstance(c, ModuleRec) and c.kind == "Conv1d"}
    if len(convs) != 2 or len(linears) != 4 or len(children) != 6:
        return None
    names = {id(c): n for n, c in children.items()}
    terms = ctx.trace(rec).terms
    primary = [t for t in terms if t.op == "input" and t.kwargs.get("primary")]
    if len(primary) != 1:
        return None
    applied = [
        t for t in terms if t.op == "call" and id(t.module) in {id(c) for c in convs.values()}
    ]
    if len(applied) != 2 or not applied[1].args or applied[1].args[0] is not applied[0]:
        return None
    first, second = (names[id(t.module)] for t in applied)
    projected = {id(t): names[id(t.module)] for t in terms if _projects(t, primary[0], linears)}
    qk = _concatenated(applied[0], projected)
    if qk is None or not _mixed(terms, applied[1], qk, projected):
        return None
    delayed = _delayed(terms, projected)
    if delayed is None:
        return None
    current = [n for n in linears if n not in (*qk, delayed)]
    if len(current) != 1 or not _values_in_order(terms, current[0], delayed, projected):
        return None
    shapes = [_conv_shape(convs[first]), _conv_shape(convs[second])]
    if None in shapes or not shapes[0][2] or shapes[1][2]:
        return None  # a depthwise filter, then a grouped one
    biases = {_flag(c, "bias") for c in convs.values()}
    linear_biases = {_flag(c, "bias") for c in linears.values()}
    if len(biases) != 1 or len(linear_biases) != 1:
        return None
    kernels = (shapes[0][0], shapes[1][0])
    return {
        "q": qk[0],
        "k": qk[1],
        "value": current[0],
        "delayed": delayed,
        "depthwise": first,
        "grouped": second,
        "kernels": kernels,
        "kernel_fields": tuple(
            _kernel_field(ctx, rec, convs[name], kernel)
            for name, kernel in zip((first, second), kernels, strict=True)
        ),
        "conv_bias": biases.pop(),
        "bias": linear_biases.pop(),
    }


def _projects(term: Term, source: Term, linears: dict) -> bool:
    return (
        term.op == "call"
        and any(term.module is c for c in linears.values())
        and bool(term.args)
        and term.args[0] is source
    )


def _concatenated(conv: Term, projected: dict) -> tuple[str, str] | None:
    """The two projections (in order) whose concatenation reaches the convolution's input."""
    for term in walk(conv.args[0]) if conv.args else ():
        if term.op == "fn" and term.name.rsplit(".", 1)[-1] == "cat" and term.args:
            parts = term.args[0] if isinstance(term.args[0], list | tuple) else ()
            found = [projected.get(id(p)) for p in parts]
            if len(found) == 2 and None not in found:
                return found[0], found[1]
    return None


def _mixed(terms, conv: Term, qk: tuple[str, str], projected: dict) -> bool:
    """Both parts of the filtered output get a mix of the two projections added: the
    queries a product over both, the keys a `mean` of that product."""
    both = {n for n in qk}
    adds = [
        t
        for t in terms
        if t.op == "add"
        and any(
            isinstance(a, Term) and a.op == "index" and a.args and a.args[0] is conv for a in t.args
        )
    ]
    if len(adds) != 2:
        return False
    others = [next(a for a in t.args if not (a.op == "index" and a.args[0] is conv)) for t in adds]
    product, mean = others
    reads = {projected.get(id(t)) for t in walk(product)}
    return (
        product.op == "mul"
        and both <= reads
        and mean.op == "fn"
        and mean.name == "mean"
        and bool(mean.args)
        and mean.args[0] is product
    )


def _delayed(terms, projected: dict) -> str | None:
    """The projection whose output is read one position late (`[:, :-1]`)."""
    late = [
        projected[id(t.args[0])]
        for t in terms
        if t.op == "index" and t.args and id(t.args[0]) in projected and _drops_last(t.name)
    ]
    return late[0] if len(late) == 1 else None


def _drops_last(text: str) -> bool:
    parts = (text or "").split(",")
    return len(parts) >= 2 and parts[0] == "::" and parts[1] == ":-1:"


def _values_in_order(terms, current: str, delayed: str, projected: dict) -> bool:
    """The values concatenate the current projection first, the delayed one second."""
    for term in terms:
        if term.op != "fn" or term.name.rsplit(".", 1)[-1] != "cat" or not term.args:
            continue
        parts = term.args[0] if isinstance(term.args[0], list | tuple) else ()
        if len(parts) == 2 and projected.get(id(parts[0])) == current:
            return delayed in {projected.get(id(t)) for t in walk(parts[1])}
    return False


def _conv_shape(conv: ModuleRec) -> tuple[int, int, bool] | None:
    """(kernel, groups, depthwise) of an unpadded Conv1d keeping its channel count."""
    values = [_flag(conv, k) for k in ("in_channels", "out_channels", "kernel_size", "groups")]
    channels, out, kernel, groups = values
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    if channels != out or _flag(conv, "padding") not in (0, None) or channels % groups:
        return None
    if _flag(conv, "stride") not in (1, None):
        return None
    return kernel, groups, groups == channels


def _flag(rec: ModuleRec, name: str):
    """A constructor argument of a torch module by keyword or position (`bias` defaults to
    True, as torch's)."""
    positions = {
        "Linear": ("in_features", "out_features", "bias"),
        "Conv1d": ("in_channels", "out_channels", "kernel_size", "stride", "padding"),
    }.get(rec.kind, ())
    if name in rec.kwargs:
        return rec.kwargs[name]
    if name in positions and positions.index(name) < len(rec.args):
        return rec.args[positions.index(name)]
    return True if name == "bias" else None


def _kernel_field(ctx, owner: ModuleRec, conv: ModuleRec, kernel: int) -> str | None:
    """The config field giving the kernel: `kernel_size=config.X`, or `kernel_size=self.Y`
    with `self.Y = config.X` in the owner's `__init__`."""
    call = conv.site.node if conv.site is not None else None
    if not isinstance(call, cst.Call):
        return None
    value = next(
        (a.value for a in call.args if a.keyword is not None and a.keyword.value == "kernel_size"),
        None,
    )
    if m.matches(value, m.Attribute(value=m.Name("self"), attr=m.Name())):
        found = ctx.model.project.find_method(owner.cls, "__init__") if owner.cls else None
        pattern = m.Assign(
            targets=[
                m.AssignTarget(
                    target=m.Attribute(value=m.Name("self"), attr=m.Name(value.attr.value))
                )
            ]
        )
        assigned = m.findall(found[1], pattern) if found else []
        value = assigned[0].value if len(assigned) == 1 else None
    if not m.matches(value, m.Attribute(value=m.Name(), attr=m.Name())):
        return None
    config = owner.attrs.get("config")
    field = config.key(value.attr.value) if hasattr(config, "key") else value.attr.value
    values = getattr(config, "attrs", {})
    return field if values.get(field, kernel) == kernel else None
