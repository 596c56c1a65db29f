"""Latent attention (MLA) steps the deepseek_v3 reference does not have, as findings.

The reference's latent attention normalises the q and kv latents (eps 1e-6) and rotates the
shared rope key as projected. dots3 adds three steps no rule realises yet; read from the
representative layer's modules and forward, each is an unsupported finding, so the plan stops
before writing a package that would diverge at the first attention:

- `attention.latent_norm_eps`: a latent norm built with another epsilon (dots3: the
  config's rms_norm_eps);
- `attention.latent_scale`: a normed latent times a constant before its up-projection
  (dots3: sqrt(hidden / rank) on the q and kv latents);
- `attention.latent_extra_norm`: a norm of the attention's own beyond the latent norms
  (dots3's `k_rope_only_layernorm` on the shared rope key before its rotation).
"""

from __future__ import annotations

from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term
from codegen.analyze.evaluate import ModuleRec

LATENT_NORM_EPS = 1e-6  # the reference's q/kv latent norms


def check(ctx: Ctx, shared: dict) -> None:
    layers = [p for p in shared.get("per_layer", ()) if p["type"] in ("full", "sliding")]
    if not layers or not layers[0]["info"].mla:
        return
    info = layers[0]["info"]
    norms = {name: c for name, c in info.rec.children() if _is_norm(ctx, c)}
    # a latent's width: what a projection makes (q_a_proj) or takes (q_b_proj, kv_b_proj)
    linears = [
        c
        for _, c in info.rec.children()
        if isinstance(c, ModuleRec) and c.kind == "Linear" and len(c.args) > 1
    ]
    ranks = {c.args[0] for c in linears} | {c.args[1] for c in linears}
    latent = {name: c for name, c in norms.items() if c.args and c.args[0] in ranks}
    site = ctx.class_site(info.rec)
    for name, norm in latent.items():
        eps = norm.kwargs.get("eps", norm.args[1] if len(norm.args) > 1 else None)
        if isinstance(eps, int | float) and abs(eps - LATENT_NORM_EPS) > 1e-12:
            ctx.unsupported(
                "attention.latent_norm_eps",
                f"the latent norm {name} uses eps {eps:g} (the reference's latent norms 1e-6):"
                " no rule yet",
                site,
            )
            break
    for name in norms.keys() - latent.keys():
        ctx.unsupported(
            "attention.latent_extra_norm",
            f"a norm of latent attention's own beyond the q/kv latent norms ({name}, width"
            f" {norms[name].args[0] if norms[name].args else '?'}): no rule yet",
            site,
        )
        break
    scaled = _scaled_latents(info.trace, set(map(id, latent.values())))
    if scaled:
        names = [n for n, c in latent.items() if id(c) in scaled]
        ctx.unsupported(
            "attention.latent_scale",
            f"the normed latent(s) {', '.join(names)} times a constant before the"
            " up-projection: no rule yet",
            site,
        )


def _is_norm(ctx: Ctx, child) -> bool:
    return isinstance(child, ModuleRec) and ctx.roles.role(child) == "norm"


def _scaled_latents(trace, latent_ids: set[int]) -> set[int]:
    """ids of the latent norms whose output the forward multiplies by a number."""
    found: set[int] = set()
    for term in getattr(trace, "terms", None) or ():
        if term.op != "mul" or len(term.args) != 2:
            continue
        calls = [
            a
            for a in map(_unshaped, term.args)
            if isinstance(a, Term) and a.op == "call" and id(a.module) in latent_ids
        ]
        numbers = [a for a in term.args if isinstance(a, int | float) and not isinstance(a, bool)]
        if calls and numbers:
            found.add(id(calls[0].module))
    return found


def _unshaped(value):
    """`value` through views and copies that keep its numbers (`norm(x).view(...)`)."""
    while isinstance(value, Term) and value.op == "fn" and value.name in _SHAPING and value.args:
        value = value.args[0]
    return value


_SHAPING = frozenset({"view", "reshape", "contiguous", "transpose", "unsqueeze"})
