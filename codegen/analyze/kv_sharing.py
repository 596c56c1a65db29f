"""Keys and values an attention does not compute: read from an input of its forward.

A layer that takes another layer's keys and values (gemma3n / gemma4 KV sharing: the last
layers reuse the states an earlier layer stored in `shared_kv_states`) has projections no
package built from a reference would skip. Where a traced attention's keys or values depend
on no projection at all, both on the same non-primary input of its forward, while its queries
are projected, the analysis names it.
"""

from __future__ import annotations

from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, strip, walk


def detect(ctx: Ctx, shared: dict) -> None:
    for layer in shared.get("per_layer", ()):
        info = layer.get("info")
        kernel = getattr(info, "kernel", None)
        if kernel is None:
            continue
        qkv = [strip(t) for t in kernel.args if isinstance(t, Term)][:3]
        if len(qkv) != 3 or not any(t.op == "call" for t in walk(qkv[0])):
            continue  # no query projected here: not a q/k/v kernel call
        keys, values = _borrowed(qkv[1]), _borrowed(qkv[2])
        if keys is None or values is None or keys[0] != values[0]:
            continue
        name, site = keys
        ctx.unsupported(
            "attention.kv_sharing",
            f"keys/values taken from an input of the attention's forward ({name!r}: another"
            " layer's states) instead of its own projections: no rule yet",
            site or (kernel.site.cite() if kernel.site else ctx.class_site(info.rec)),
        )
        return


def _borrowed(term: Term) -> tuple[str, str | None] | None:
    """(name, where read) of the non-primary input `term` comes from, when no call computes
    it."""
    terms = list(walk(term))
    if any(t.op == "call" for t in terms):
        return None
    inputs = [t for t in terms if t.op == "input" and not t.kwargs.get("primary")]
    if not inputs:
        return None
    read = next((t.site.cite() for t in terms if t.op == "index" and t.site), None)
    return inputs[0].name, read
