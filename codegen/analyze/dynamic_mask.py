"""A per-key score bias the attention computes from its own values (Doge's dynamic mask).

A projection of the values (one output per kv head) becomes `exp(A * softplus(dt))`, A a
learned vector of one value per kv head; that bias, masked by the causal mask, is the
attention kernel's additive mask, so every query of a head adds the same bias to a key's
score. Where the key length exceeds a config window, only that many keys per query row
(the largest biases) stay; the rest are masked. A dense package agrees with HF on inputs
shorter than the window and differs beyond it, so the window is read with the rest.

Found by structure: a projection that none of q, k, v and the output uses, fed by the
value projection, reaching the kernel's mask. `read` names the parts (the projection and
the parameter by the attention's attributes, the window by the config field its attribute
is assigned from); any other shape is "other".
"""

from __future__ import annotations

import libcst.matchers as m

from codegen.analyze.dataflow import Term, walk
from codegen.analyze.evaluate import ModuleRec, ParamRec
from codegen.analyze.roles import LINEAR
from codegen.analyze.walk import findall

FEATURE = "attention.dynamic_mask"
OTHER = "other"


def detect(ctx, rep) -> dict | str | None:
    """{"proj", "scale", "window"} (see `read`), "other", or None without such a bias."""
    kernel = getattr(rep, "kernel", None)
    if kernel is None or rep.trace is None or not rep.v_lins:
        return None
    masks = [v for key, v in kernel.kwargs.items() if isinstance(v, Term) and key != "_anchor"]
    values = {id(t.module) for t in rep.v_lins}
    used = {id(t.module) for t in (rep.q_lins or []) + (rep.k_lins or []) + rep.v_lins}
    if rep.o_lin is not None:
        used.add(id(rep.o_lin))
    for mask in masks:
        for term in walk(mask):
            if not (
                term.op == "call"
                and isinstance(term.module, ModuleRec)
                and ctx.roles.role(term.module) == LINEAR
                and id(term.module) not in used
                and any(
                    t.op == "call" and id(t.module) in values for t in walk(term) if t is not term
                )
            ):
                continue
            name = _attribute(rep.rec, term.module)
            ctx.cite(FEATURE, ctx.attr_site(rep.rec, name) if name else None)
            found = read(ctx, rep, term, mask)
            return OTHER if found is None or name is None else {"proj": name, **found}
    return None


def read(ctx, rep, proj: Term, mask: Term) -> dict | None:
    """{"scale": the parameter A, "window": the config field of the top-k window (None
    without a top-k)} where the bias is `exp(A * softplus(proj(v)))`, else None."""
    bias = _bias(mask, proj)
    if bias is None:
        return None
    scale = _attribute(rep.rec, bias)
    if scale is None:
        return None
    window = None
    tops = [
        t
        for t in rep.trace.terms
        if t.op == "fn"
        and t.name.rsplit(".", 1)[-1] == "topk"
        and any(any(x is proj for x in walk(a)) for a in t.args if isinstance(a, Term))
    ]
    if len(tops) > 1:
        return None
    if tops:
        window = _window_field(ctx, rep.rec, tops[0])
        if window is None:
            return None
    return {"scale": scale, "window": window}


def _bias(mask: Term, proj: Term) -> ParamRec | None:
    """The parameter A of `exp(A * softplus(proj))` inside `mask`."""
    for term in walk(mask):
        if not (term.op == "fn" and term.name.rsplit(".", 1)[-1] == "exp" and term.args):
            continue
        product = term.args[0]
        if not (isinstance(product, Term) and product.op == "mul" and len(product.args) == 2):
            continue
        params = [a for a in product.args if isinstance(a, Term) and a.op == "param"]
        soft = [
            a
            for a in product.args
            if isinstance(a, Term) and a.op == "fn" and a.name.rsplit(".", 1)[-1] == "softplus"
        ]
        if len(params) == 1 and len(soft) == 1 and soft[0].args and soft[0].args[0] is proj:
            param = params[0].module
            if isinstance(param, ParamRec) and len(param.shape) == 1:
                return param
    return None


def _window_field(ctx, rec: ModuleRec, top: Term) -> str | None:
    """The config field the top-k's count comes from: the attention attribute holding that
    number (only one does), assigned `self.<attr> = config.<field>` in `__init__`."""
    count = top.args[1] if len(top.args) > 1 else top.kwargs.get("k")
    if not isinstance(count, int) or isinstance(count, bool):
        return None
    held = [n for n, v in rec.attrs.items() if v == count and not isinstance(v, bool)]
    if len(held) != 1 or rec.cls is None:
        return None
    found = ctx.model.project.find_method(rec.cls, "__init__")
    if found is None:
        return None
    target = m.Attribute(value=m.Name("self"), attr=m.Name(held[0]))
    reads = [
        a.value.attr.value
        for a in findall(found[1], m.Assign(targets=[m.AssignTarget(target=target)]))
        if m.matches(a.value, _CONFIG_READ)
    ]
    return reads[0] if len(reads) == 1 else None


# `config.<field>`, `self.config.<field>`
_CONFIG_READ = m.Attribute(value=m.Name("config") | m.Attribute(attr=m.Name("config")))


def _attribute(rec: ModuleRec, value) -> str | None:
    found = [name for name, held in rec.attrs.items() if held is value]
    return found[0] if len(found) == 1 else None
