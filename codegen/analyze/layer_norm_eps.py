"""Layer norms at their class's own epsilon while the final norm reads the config's.

JetMoE builds its decoder layers' RMSNorms without an epsilon (`JetMoeRMSNorm(hidden_size)`:
the class default, 1e-6) and only the final norm with `eps=config.rms_norm_eps`; the two
agree in the default config, so the value alone does not tell them apart: a config with
another rms_norm_eps changes the final norm only. Read from the construction sites: the
layer norm's passes no epsilon (no `eps=`-like keyword, no second positional argument), the
final norm's passes a config field; the layer norms' value is the one the code evaluates.
"""

from __future__ import annotations

import libcst as cst

from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.final_norm import _outside
from codegen.analyze.norm_eps import _NAMES, eps_field, norm_eps
from codegen.analyze.roles import NORM


def detect(ctx: Ctx, layer_norm: ModuleRec | None) -> float | None:
    """The layer norms' epsilon when it is the code's constant and the final norm's is a
    config field; else None."""
    if layer_norm is None or not _passes_no_eps(layer_norm):
        return None
    final = _final_norm(ctx)
    if final is None or eps_field(ctx, final) is None:
        return None
    eps = norm_eps(ctx, layer_norm)
    if eps is not None:
        ctx.cite("norm.layer_eps", f"{ctx.site(layer_norm)} (no eps: the class's {eps})")
    return eps


def _passes_no_eps(rec: ModuleRec) -> bool:
    call = rec.site.node if rec.site is not None else None
    if not isinstance(call, cst.Call):
        return False
    keywords = {a.keyword.value for a in call.args if a.keyword is not None}
    positional = [a for a in call.args if a.keyword is None and not a.star]
    return not keywords & set(_NAMES) and len(positional) <= 1


def _final_norm(ctx: Ctx) -> ModuleRec | None:
    model = ctx.model
    layers = {id(layer) for layer in model.layers or ()}
    for _, rec in _outside(model.entry, "", layers, 0):
        if isinstance(rec, ModuleRec) and ctx.roles.role(rec) == NORM:
            return rec
    return None
