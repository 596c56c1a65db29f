"""An output bias only the last layer's attention has.

GPT-NeoX-Japanese builds its attention with a bias parameter of the hidden width in the last
layer only; the attention returns it beside its output and the decoder layer adds it to that
output before the residual. Read from the data flow: the attention's forward returns one of
its own parameters, and the layer adds that returned value to the attention's output. A
package realises it as the last layer's output projection having a bias.
"""

from __future__ import annotations

from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import walk
from codegen.analyze.evaluate import ModuleRec, ParamRec


def last_layer_o_bias(ctx: Ctx, per_layer: list[dict]) -> str | None:
    """The attention attribute holding the bias (`dense_bias`) when exactly the last layer's
    attention returns one of its parameters that its layer adds to the attention output;
    None otherwise."""
    layers = ctx.model.layers or ()
    found = [_returned_bias(ctx, p, layers) for p in per_layer]
    if not found or found[-1] is None or any(name is not None for name in found[:-1]):
        if found and found[-1] is not None:
            ctx.notes.append("attention: a returned output bias in layers other than the last")
        return None
    rec = per_layer[-1]["info"].rec
    ctx.cite("attention.last_layer_o_bias", ctx.attr_site(rec, found[-1]) or ctx.site(rec))
    return found[-1]


def _returned_bias(ctx: Ctx, entry: dict, layers) -> str | None:
    rec, index = entry.get("info") and entry["info"].rec, entry.get("index")
    if not isinstance(rec, ModuleRec) or not isinstance(index, int) or index >= len(layers):
        return None
    result = ctx.trace(rec).result
    if not isinstance(result, tuple):
        return None
    names = {id(v): n for n, v in rec.attrs.items() if isinstance(v, ParamRec)}
    slots = [(i, names[id(v)]) for i, v in enumerate(result) if id(v) in names]
    if len(slots) != 1:
        return None
    slot, name = slots[0]
    layer = layers[index]
    if not isinstance(layer, ModuleRec):
        return None
    terms = ctx.trace(layer).terms
    calls = [t for t in terms if t.op == "call" and t.module is rec]
    for t in terms:
        if t.op != "add" or not calls:
            continue
        inside = list(walk(t))
        returned = any(
            x.op == "index" and x.name == str(slot) and x.args and x.args[0] in calls
            for x in inside
        )
        output = any(x in calls for x in inside)
        if returned and output:
            return name
    return None
