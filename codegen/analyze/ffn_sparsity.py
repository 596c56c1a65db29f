"""An FFN that thresholds a projection by the projection's own statistics before going on.

gemma3n's activation sparsity keeps only the gate activations above mean + k * std of each
row (`relu(x - (mean + std * k))`, a Gaussian top-k): a package built from a reference's
FFN would skip it and differ everywhere. Where the traced FFN subtracts from a projection's
output a statistic (mean, std, var, quantile, k-th value) of that same output, the analysis
names it.
"""

from __future__ import annotations

from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, walk
from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.roles import MLP

_STATISTICS = ("mean", "std", "var", "quantile", "kthvalue", "topk", "std_mean", "var_mean")


def detect(ctx: Ctx) -> None:
    layers = [rec for rec in ctx.model.layers or () if isinstance(rec, ModuleRec)]
    if not layers:
        return
    for _, child in layers[0].children():
        if not isinstance(child, ModuleRec) or ctx.roles.role(child) != MLP:
            continue
        for term in ctx.trace(child).terms:
            if term.op == "sub" and _thresholded(term):
                ctx.unsupported(
                    "ffn.activation_sparsity",
                    "a projection thresholded by its own statistics before the activation"
                    " (x - (mean + k * std): activation sparsity): no rule yet",
                    term.site.cite() if term.site else ctx.class_site(child),
                )
                return


def _thresholded(term: Term) -> bool:
    minuend, subtrahend = (list(term.args) + [None, None])[:2]
    if not (isinstance(minuend, Term) and isinstance(subtrahend, Term)):
        return False
    calls = {id(t) for t in walk(minuend) if t.op == "call"}
    return any(
        t.op == "fn"
        and t.name.rsplit(".", 1)[-1] in _STATISTICS
        and any(id(x) in calls for x in walk(t))
        for t in walk(subtrahend)
    )
