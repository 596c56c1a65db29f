"""Attention over keys a learned module selects (sparse / indexed attention).

DeepSeek-V3.2-style attention scores the keys with a small learned scorer of its own (an
"indexer" with projections and a norm), keeps the top-k per query and masks the rest. On a
short input (fewer keys than k) it attends to every key, so a dense package would agree with
HF there and be wrong on long inputs. Found by structure: inside the attention forward, a
child module that is neither a projection, a norm nor the rotary table, that carries
parameters, and whose output reaches the attention kernel through its mask or its keyword
arguments (key indices), never through the queries, keys or values themselves.

A module of that kind whose output does reach the queries, keys or values (zaya's q/k
normalisation with a learned per-head key scale) selects no keys: it changes what the kernel
is given, which no rule realises; `attention.qkv_modules` names it (a module holding a
convolution is named by `attention.convolutions` instead, see layer_extras).

`read` names the scorer's parts where it has DeepSeek sparse attention's shape, told apart by
their sizes (never by their names): a LayerNorm of width D with a constant epsilon (the key
norm), a projection to D (the single key head), one to H (the per-head weights) and one to
H * D (the query heads, from the query latent); its forward rotates the leading or the
trailing dims of q and k (the first or the second part of a split; halves or interleaved pairs,
as its rotation function does), takes a relu and a top-k. The key norm's epsilon is a number
or a config field. Another scorer gives "other".
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.dataflow import Term, walk
from codegen.analyze.evaluate import ModuleRec, ParamRec
from codegen.analyze.roles import LINEAR, NORM, ROTARY

FEATURE = "attention.key_selection"
OTHER = "other"


def detect(ctx, shared: dict) -> dict | str | None:
    """The scorer's names (see `read`), "other" for a scorer `read` does not know, or None."""
    rep = shared.get("rep")
    kernel = getattr(rep, "kernel", None)
    if rep is None or kernel is None or rep.trace is None:
        return None
    children = {id(child): name for name, child in rep.rec.children()}
    tensors = [a for a in kernel.args if isinstance(a, Term)]
    qkv = {id(t) for a in tensors[:3] for t in walk(a)}
    reached = {id(t) for a in tensors[3:] for t in walk(a)}  # the mask
    for value in kernel.kwargs.values():  # a mask or key indices handed by keyword
        if isinstance(value, Term):
            reached |= {id(t) for t in walk(value)}
    owners = {  # a child's parameters, read where the trace inlines its forward
        id(value): child
        for _, child in rep.rec.children()
        if isinstance(child, ModuleRec)
        for value in child.attrs.values()
        if isinstance(value, ParamRec)
    }
    transforms = []
    for term in rep.trace.terms:
        module = term.module if term.op == "call" else None
        if term.op == "param":
            module = owners.get(id(term.module))
        if not isinstance(module, ModuleRec) or id(module) not in children:
            continue
        if ctx.roles.role(module) in (LINEAR, NORM, ROTARY) or not _learned(ctx, module):
            continue
        users = {id(term)} | {id(t) for t in _users(rep.trace, term)}
        if users & qkv:
            transforms.append((children[id(module)], module, term))
        elif users & reached and term.op == "call":
            name = children[id(module)]
            ctx.cite(FEATURE, ctx.attr_site(rep.rec, name))
            found = read(ctx, module, rep.rec.attrs.get("hidden_size"))
            return OTHER if found is None else {"module": name, **found}
    _name_qkv_modules(ctx, rep, transforms, shared)
    return None


def _name_qkv_modules(ctx, rep, found: list, shared: dict) -> None:
    """One unsupported line for the learned modules q, k or v pass through (not those holding
    a convolution, nor compressors whose entries extend the keys: layer_extras and
    attention_forms name them)."""
    from codegen.analyze.attention_forms import _compressors
    from codegen.analyze.layer_extras import _holds_conv

    attention = rep.rec
    named = {id(module) for _, module, _ in _compressors(ctx, rep)}
    found = [(n, m, t) for n, m, t in dict((n, (n, m, t)) for n, m, t in found).values()]
    realised = shared.get("realised_qkv_modules", set())  # l2_qk_norm's module
    found = [
        (n, m, t)
        for n, m, t in found
        if not _holds_conv(m) and id(m) not in named and n not in realised
    ]
    if not found:
        return
    name, module, term = found[0]
    ctx.unsupported(
        "attention.qkv_modules",
        "the queries, keys or values pass through "
        + ", ".join(f"{n} ({m.cls.name if m.cls else m.kind})" for n, m, _ in found)
        + ", learned modules that are neither projections nor norms: no rule yet",
        term.site.cite() if term.site else ctx.attr_site(attention, name),
    )


def read(ctx, scorer: ModuleRec, hidden) -> dict | None:
    """{"q_proj", "k_proj", "k_norm", "weights_proj": child names, "interleaved": bool,
    "rope_dims": "leading" or "trailing" (the rotated dims of the q/k heads), "k_norm_eps":
    the key norm's epsilon, a number or the config field it reads, "k_norm_in_weight_dtype",
    "scale_on_weights": the q.k scale applied to the per-head weights, not the scores} of a
    DeepSeek-sparse-attention indexer, or None."""
    from codegen.analyze.detect_attention import _is_rope_function
    from codegen.analyze.detect_rope import _interleaved

    linears, norms = {}, {}
    for name, child in scorer.children():
        if not isinstance(child, ModuleRec):
            return None
        role = ctx.roles.role(child)
        if role == LINEAR and len(child.args) >= 2:
            linears[name] = tuple(child.args[:2])
        elif role == NORM and child.kind == "LayerNorm" and child.args:
            norms[name] = child.args[0]
        else:
            return None
    if len(linears) != 3 or len(norms) != 1:
        return None
    ((k_norm, width),) = norms.items()
    keys = [n for n, (i, o) in linears.items() if o == width and i == hidden]
    heads = [
        (w, q)
        for w, (_, count) in linears.items()
        for q, (_, out) in linears.items()
        if w != q and isinstance(count, int) and out == count * width and linears[w][0] == hidden
    ]
    if len(keys) != 1 or len(heads) != 1 or keys[0] in heads[0]:
        return None
    ops = ctx.roles.method_signals(scorer.cls).ops if scorer.cls is not None else set()
    if not {"relu", "topk"} <= ops:
        return None
    trace = ctx.trace(scorer)
    rotations = [(f, a) for f, a in trace.tracer.func_calls if _is_rope_function(ctx, f)]
    part = _rotated_part(rotations[0][1][:2]) if len(rotations) == 1 else None
    if part is None:
        return None  # one rotation, of the heads' leading or trailing dims
    norm = scorer.attrs[k_norm]
    eps = _eps(norm)
    if eps is None:
        return None
    weights, queries = heads[0]
    forward = ctx.model.project.find_method(scorer.cls, "forward") if scorer.cls else None
    in_weight_dtype = m.Attribute(
        value=m.Attribute(value=m.Attribute(value=m.Name("self"), attr=m.Name(k_norm))),
        attr=m.Name("dtype"),
    )
    return {
        "q_proj": queries,
        "k_proj": keys[0],
        "k_norm": k_norm,
        "weights_proj": weights,
        "interleaved": _interleaved(ctx, rotations[0][0]),
        "rope_dims": ("leading", "trailing")[part],
        "k_norm_eps": eps,
        # the key norm run on its input cast to the norm's weight dtype (HY-V4: fp32)
        "k_norm_in_weight_dtype": bool(forward and m.findall(forward[1], in_weight_dtype)),
        # the q.k scale on the per-head weights, the product left unscaled (HY-V4): no
        # product of the forward is a factor of a multiplication
        "scale_on_weights": bool(forward and not m.findall(forward[1], _SCALED_PRODUCT)),
    }


# `torch.matmul(...) * scale` (the q.k scores scaled where they are made)
_SCALED_PRODUCT = m.BinaryOperation(
    left=m.Call(func=m.Attribute(attr=m.Name("matmul")) | m.Name("matmul")),
    operator=m.Multiply(),
)


def _rotated_part(args) -> int | None:
    """0 or 1: q and k handed to the rotation are both that part of a two-way split."""
    if len(args) != 2:
        return None
    parts = set()
    for a in args:
        if not (isinstance(a, Term) and a.op == "index" and a.name in ("0", "1")):
            return None
        split = [b for b in a.args if isinstance(b, Term) and b.op == "fn"]
        if not any(b.name.endswith("split") for b in split):
            return None
        parts.add(int(a.name))
    return parts.pop() if len(parts) == 1 else None


def _eps(norm: ModuleRec) -> float | str | None:
    """The norm's epsilon: the number its constructor gives (torch's 1e-5 for none), or the
    config field it reads (`eps=config.rms_norm_eps`); None for anything else."""
    call = getattr(norm.site, "node", None)
    if not isinstance(call, cst.Call):
        return None
    given = [
        a.value
        for i, a in enumerate(call.args)
        if (a.keyword is not None and a.keyword.value == "eps") or (a.keyword is None and i == 1)
    ]
    if not given:
        return 1e-5
    (value,) = given
    if isinstance(value, cst.Float | cst.Integer):
        return norm.args[1] if len(norm.args) > 1 else norm.kwargs.get("eps")
    if m.matches(value, m.Attribute(value=m.Name("config"))):
        return value.attr.value
    return None


def _learned(ctx, module: ModuleRec) -> bool:
    """The module or one of its children holds a parameter (a projection counts)."""
    for _, child in module.children():
        if isinstance(child, ParamRec):
            return True
        if isinstance(child, ModuleRec) and (
            ctx.roles.role(child) == LINEAR or _learned(ctx, child)
        ):
            return True
    return any(isinstance(v, ParamRec) for v in module.attrs.values())


def _users(trace, source: Term) -> list[Term]:
    """Terms computed from `source`."""
    return [t for t in trace.terms if t is not source and any(x is source for x in walk(t))]
