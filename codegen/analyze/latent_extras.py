"""Latent attention (MLA) steps the deepseek_v3 reference does not have.

The reference's latent attention normalises the q and kv latents (eps 1e-6) and rotates the
shared rope key as projected. dots3 adds three steps, read from the representative layer's
modules and forward:

- `attention.latent_norm_eps`: the latent norms' epsilon, `default` (1e-6), `norm_eps` (the
  config's rms_norm_eps, dots3) or `other`;
- `attention.latent_scale`: a normed latent times sqrt(hidden / its width) before its
  up-projection: `none`, `q`, `kv`, `q_kv` (dots3), `other` (another constant: LongCat-Flash);
- `attention.latent_norms`: which latents are normed: `q_kv`, `kv` (no query latent), `q`
  or `none` (a latent up-projected as it is: no rule);
- `attention.k_rope_norm`: an RMSNorm on the shared rope key before its rotation (dots3's
  `k_rope_only_layernorm`): {"module": name, "eps": "default" | "norm_eps"}, or None.

Any other norm of the attention's own is an unsupported finding (`latent_extra_norm`).
"""

from __future__ import annotations

from codegen.analyze.config import attr
from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term
from codegen.analyze.evaluate import ModuleRec

LATENT_NORM_EPS = 1e-6  # the reference's q/kv latent norms


def check(ctx: Ctx, shared: dict) -> dict:
    """The facts above, as Attention fields (their defaults where not MLA)."""
    facts = {"latent_norm_eps": "default", "latent_scale": "none", "k_rope_norm": None}
    layers = [p for p in shared.get("per_layer", ()) if p["type"] in ("full", "sliding")]
    if not layers or not layers[0]["info"].mla:
        return facts
    info = layers[0]["info"]
    config = ctx.model.config
    norms = {name: c for name, c in info.rec.children() if _is_norm(ctx, c)}
    # a latent's width: what a projection makes (q_a_proj) or takes (q_b_proj, kv_b_proj)
    linears = [
        c
        for _, c in info.rec.children()
        if isinstance(c, ModuleRec) and c.kind == "Linear" and len(c.args) > 1
    ]
    ranks = {c.args[0] for c in linears} | {c.args[1] for c in linears}
    latent = {name: c for name, c in norms.items() if c.args and c.args[0] in ranks}
    site = ctx.class_site(info.rec) or "?"
    facts["latent_norms"] = _normed_sides(latent, config)
    ctx.cite(
        "attention.latent_norms",
        f"{site} ({', '.join(f'{n}, width {c.args[0]}' for n, c in latent.items()) or 'none'})",
    )
    kinds = {_eps_kind(norm, config) for norm in latent.values()}
    if kinds and kinds != {"default"}:
        facts["latent_norm_eps"] = kinds.pop() if len(kinds) == 1 else "other"
        ctx.cite(
            "attention.latent_norm_eps",
            f"{site} ({', '.join(f'{n} eps {_eps(c)}' for n, c in latent.items())})",
        )
    rope = attr(config, "qk_rope_head_dim")
    for name in norms.keys() - latent.keys():
        norm = norms[name]
        if norm.args and norm.args[0] == rope and _eps_kind(norm, config) != "other":
            facts["k_rope_norm"] = {"module": name, "eps": _eps_kind(norm, config)}
            ctx.cite("attention.k_rope_norm", f"{site} ({name}, width {rope})")
            continue
        ctx.unsupported(
            "attention.latent_extra_norm",
            f"a norm of latent attention's own beyond the q/kv latent norms ({name}, width"
            f" {norm.args[0] if norm.args else '?'}): no rule yet",
            site,
        )
    scaled = _scaled_latents(info.trace, {id(c): c for c in latent.values()})
    if scaled:
        facts["latent_scale"] = _scale_kind(scaled, config)
        names = [n for n, c in latent.items() if id(c) in scaled]
        ctx.cite("attention.latent_scale", f"{site} ({', '.join(names)} times a constant)")
    return facts


def _normed_sides(latent: dict, config) -> str:
    """q_kv | kv | q | none: the latents (`q_lora_rank`, `kv_lora_rank` wide) a norm of the
    attention's own is built over."""
    widths = {norm.args[0] for norm in latent.values()}
    q = attr(config, "q_lora_rank") in widths
    kv = attr(config, "kv_lora_rank") in widths
    return {(True, True): "q_kv", (False, True): "kv", (True, False): "q"}.get((q, kv), "none")


def _eps(norm: ModuleRec):
    return norm.kwargs.get("eps", norm.args[1] if len(norm.args) > 1 else None)


def _eps_kind(norm: ModuleRec, config) -> str:
    """default (the class default, or 1e-6) | norm_eps (the config's rms_norm_eps) | other."""
    eps = _eps(norm)
    if eps is None:
        return "default"
    if not isinstance(eps, int | float):
        return "other"
    if eps == attr(config, "rms_norm_eps"):
        return "norm_eps"
    return "default" if abs(eps - LATENT_NORM_EPS) < 1e-12 else "other"


def _scale_kind(scaled: dict, config) -> str:
    """Which latents are scaled by sqrt(hidden / width): q | kv | q_kv; other for another
    constant or a latent of neither rank."""
    hidden = attr(config, "hidden_size")
    widths = {"q": attr(config, "q_lora_rank"), "kv": attr(config, "kv_lora_rank")}
    which = set()
    for norm, factor in scaled.values():
        width = norm.args[0] if norm.args else None
        side = next((k for k, w in widths.items() if w == width), None)
        if side is None or not isinstance(hidden, int) or not width:
            return "other"
        if abs(factor - (hidden / width) ** 0.5) > 1e-6 * max(1.0, factor):
            return "other"
        which.add(side)
    return "q_kv" if which == {"q", "kv"} else which.pop()


def _is_norm(ctx: Ctx, child) -> bool:
    return isinstance(child, ModuleRec) and ctx.roles.role(child) == "norm"


def _scaled_latents(trace, latent: dict) -> dict:
    """id -> (latent norm, factor) of the norms whose output the forward multiplies by a
    number: the normed latent itself (dots3), or every part of its bias-free up-projection
    split into heads' parts (LongCat-Flash's q_pass and q_rot times mla_scale_q_lora), the
    same product since the projection is linear."""
    found: dict = {}
    parts: dict = {}  # id(split) -> (norm, {part index: factor}, number of parts)
    for term in getattr(trace, "terms", None) or ():
        if term.op != "mul" or len(term.args) != 2:
            continue
        numbers = [a for a in term.args if isinstance(a, int | float) and not isinstance(a, bool)]
        if not numbers:
            continue
        calls = [
            a
            for a in map(_unshaped, term.args)
            if isinstance(a, Term) and a.op == "call" and id(a.module) in latent
        ]
        if calls:
            found[id(calls[0].module)] = (calls[0].module, float(numbers[0]))
            continue
        for arg in term.args:
            part = up_projected_part(arg, latent)
            if part is not None:
                split, index, norm, count = part
                entry = parts.setdefault(id(split), (norm, {}, count))
                entry[1][index] = float(numbers[0])
    for norm, factors, count in parts.values():
        values = set(factors.values())
        if len(values) == 1 and sorted(factors) == list(range(count)):
            found[id(norm)] = (norm, values.pop())
    return found


def up_projected_part(value, latent: dict):
    """(split term, part index, latent norm, number of parts) when `value` is one part of a
    split of a bias-free Linear applied to a latent norm's output, else None."""
    value = _unshaped(value)
    if not (isinstance(value, Term) and value.op == "index" and value.name.isdigit()):
        return None
    split = value.args[0] if value.args else None
    if not (isinstance(split, Term) and split.op == "fn" and split.name.endswith("split")):
        return None
    sizes = split.args[1] if len(split.args) > 1 else split.kwargs.get("split_size_or_sections")
    if not isinstance(sizes, list | tuple):
        return None
    projected = _unshaped(split.args[0]) if split.args else None
    if not (isinstance(projected, Term) and projected.op == "call"):
        return None
    linear = projected.module
    if not (isinstance(linear, ModuleRec) and linear.kind == "Linear"):
        return None
    if linear.kwargs.get("bias", True) is not False:
        return None
    inner = next((_unshaped(a) for a in projected.args if isinstance(a, Term)), None)
    if not (isinstance(inner, Term) and inner.op == "call" and id(inner.module) in latent):
        return None
    return split, int(value.name), inner.module, len(sizes)


def latent_norms(ctx: Ctx, attention: ModuleRec) -> dict:
    """id -> record of an MLA attention's latent norms (a width one of its projections
    makes or takes)."""
    norms = [c for _, c in attention.children() if _is_norm(ctx, c)]
    linears = [
        c
        for _, c in attention.children()
        if isinstance(c, ModuleRec) and c.kind == "Linear" and len(c.args) > 1
    ]
    ranks = {c.args[0] for c in linears} | {c.args[1] for c in linears}
    return {id(c): c for c in norms if c.args and c.args[0] in ranks}


def _unshaped(value):
    """`value` through views and copies that keep its numbers (`norm(x).view(...)`)."""
    while isinstance(value, Term) and value.op == "fn" and value.name in _SHAPING and value.args:
        value = value.args[0]
    return value


_SHAPING = frozenset({"view", "reshape", "contiguous", "transpose", "unsqueeze"})
