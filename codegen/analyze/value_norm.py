"""A norm on the attention's values (gemma4's weightless `v_norm`): no reference norms v,
so a package built from one would pass v on as projected. Where the last module call before
the kernel's value argument is a norm, the analysis reports it: `per_head` when it norms each
head's vector (its width the head size, applied after the view to heads), else `other`, and
whether it learns a scale."""

from __future__ import annotations

import dataclasses

from codegen.analyze import qk_norm_scope
from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, strip
from codegen.analyze.detect_attention import _norm_dim
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.features import Attention
from codegen.analyze.roles import NORM


def detect(ctx: Ctx, shared: dict, attention: Attention) -> Attention:
    """`attention` with `v_norm` / `v_norm_weight` set from the representative layer."""
    info = shared.get("rep")
    kernel = getattr(info, "kernel", None)
    if kernel is None:
        return attention
    qkv = [strip(t) for t in kernel.args if isinstance(t, Term)][:3]
    if len(qkv) != 3:
        return attention
    if qkv[2] is qkv[1]:
        # the values are the keys (attention.kv_same): a norm on them is the keys'
        # (attention.qk_norm_on), which the values get by being the keys
        ctx.cite("attention.v_norm", kernel.site.cite() if kernel.site else None)
        return attention
    for term in _nearest_calls(qkv[2]):
        module = term.module
        if isinstance(module, ModuleRec) and ctx.roles.role(module) == NORM:
            dim, weight = _norm_dim(module), qk_norm_scope.has_weight(module)
            # a weightless norm built without a size norms the last axis it is given
            sized = dim == attention.head_dim or (dim is None and not weight)
            per_head = sized and _viewed_per_head(info, attention.head_dim, term)
            ctx.cite("attention.v_norm", term.site.cite() if term.site else ctx.site(module))
            ctx.cite("attention.v_norm_weight", ctx.class_site(module) or ctx.site(module))
            return dataclasses.replace(
                attention,
                v_norm="per_head" if per_head else "other",
                v_norm_weight=weight,
            )
    ctx.cite("attention.v_norm", kernel.site.cite() if kernel.site else None)
    return attention


def _viewed_per_head(info, head_dim: int, norm: Term) -> bool:
    """The value projection's output, or the tensor the norm reads after the last module call
    before it (a convolution over the projection's rows), is viewed with the head size as its
    last axis: the norm then takes each head's vector, not the flat projection output."""
    views = info.trace.tracer.views if info.trace is not None else {}
    read = [t for a in norm.args if isinstance(a, Term) for t in _up_to_calls(a)]
    return any(
        shape and shape[-1] == head_dim
        for t in [*(info.v_lins or []), *read]
        for shape in views.get(id(t), [])
    )


def _up_to_calls(term: Term) -> list[Term]:
    """`term` and what it reads back to the nearest module calls (those included)."""
    found, stack, seen = [], [term], set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        found.append(t)
        if t.op != "call":
            stack.extend(a for a in t.args if isinstance(a, Term))
    return found


def _nearest_calls(term: Term) -> list[Term]:
    """The module calls `term` reads with no other call between (the last step before the
    kernel): a norm there norms v itself, one behind a projection (MLA's latent norm before
    kv_b_proj) does not."""
    found, stack, seen = [], [term], set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t.op == "call":
            found.append(t)
            continue
        stack.extend(a for a in t.args if isinstance(a, Term))
    return found
