"""Attention facts the representative layer cannot speak for: shapes that differ by layer.

The attention features are read from one attention instance (the first layer's). Where the
layers' projections differ in size, `attention.layer_shapes` says how:

- `per_layer_config`: the sizes are the config's per-layer overrides (PreTrainedConfig's
  `per_layer_config`: gemma4's full-attention layers with a head_dim and kv heads of their
  own), which a package reads per layer;
- `latent`: latent attention (MLA) projections sized per layer by the config's per-layer
  overrides of the latent sizes (dots3's sliding-window layers take other head counts, kv
  latent rank and q/k/v head dims from `per_layer_config`): layers with the same overrides
  are built alike, and nothing but those sizes is overridden;
- `other`: sizes from anything else (MiMo-V2-Flash builds its sliding-window layers with twice
  the kv heads from fields of their own; latent layers sized apart beyond their overrides).

The evidence names the layers and their sizes. MiMo-V2-Flash's sinks on some layers only and
its value heads sized apart from the query/key heads (`v_head_dim`) are unsupported findings,
so the plan stops before writing instead of failing on a size mismatch.
"""

from __future__ import annotations

from codegen.analyze.config import attr
from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term
from codegen.analyze.evaluate import ModuleRec, ParamRec

# the config fields a per-layer override may set for a package to read them per layer
PER_LAYER_SIZES = frozenset({"head_dim", "num_key_value_heads", "num_attention_heads"})
# ... and under latent attention: its heads, latent ranks and q/k/v head parts (head_dim and
# the kv heads, which latent attention expands from its latent, may follow them)
LATENT_SIZES = PER_LAYER_SIZES | frozenset(
    {"q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"}
)


def check(ctx: Ctx, shared: dict) -> str:
    """`attention.layer_shapes` (see the module docstring), citing its evidence; the other
    differences as unsupported findings."""
    layers = [p for p in shared.get("per_layer", ()) if p["type"] in ("full", "sliding")]
    shapes_of = "same"
    latent = [p for p in layers if p["info"].kernel is not None and p["info"].mla]
    if _latent_shapes(ctx, latent):
        shapes_of = "latent" if _latent_overridden(ctx, latent) else "other"
    layers = [p for p in layers if p["info"].kernel is not None and not p["info"].mla]
    infos = [p["info"] for p in layers]
    if not infos:
        return shapes_of
    shapes = [_shapes(info) for info in infos]
    if None not in shapes and len(set(shapes)) > 1:
        first, other = shapes[0], next(s for s in shapes if s != shapes[0])
        at = next(i for i, s in zip(layers, shapes, strict=False) if s != shapes[0])
        where = ctx.site(at["info"].rec) or ctx.class_site(at["info"].rec) or "?"
        ctx.cite(
            "attention.layer_shapes",
            f"{where} ((q, k, v, o) features {first} on layer {layers[0]['index']}, {other} on"
            f" layer {at['index']})",
        )
        shapes_of = "per_layer_config" if _overridden(ctx) else "other"
    sinks = [_has_sinks(info) for info in infos]
    if len(set(sinks)) > 1:
        at = layers[sinks.index(True)]
        ctx.unsupported(
            "attention.layer_sinks",
            f"attention sinks on some layers only (layer {at['index']} has them, "
            f"layer {layers[sinks.index(False)]['index']} not)",
            ctx.site(at["info"].rec) or ctx.class_site(at["info"].rec),
        )
    first = shapes[0]
    if first is not None and first[1] != first[2]:
        info = infos[0]
        ctx.unsupported(
            "attention.v_head_dim",
            f"value heads sized apart from the key heads (k {first[1]}, v {first[2]} features)",
            ctx.site(info.v_lins[0].module) if info.v_lins else ctx.class_site(info.rec),
        )
    return shapes_of


def _overridden(ctx: Ctx) -> bool:
    """The config's per-layer overrides (`per_layer_config`) override only the attention's
    head size and head counts, which a package reads per layer."""
    overrides = attr(ctx.model.config, "per_layer_config")
    if not isinstance(overrides, dict) or not overrides:
        return False
    return all(set(v) <= PER_LAYER_SIZES for v in overrides.values())


def _latent_overridden(ctx: Ctx, layers: list) -> bool:
    """Latent layers sized by the config's per-layer overrides: only latent sizes are
    overridden, and layers with the same overrides build projections of the same sizes."""
    overrides = attr(ctx.model.config, "per_layer_config")
    if not isinstance(overrides, dict) or not overrides:
        return False
    if not all(isinstance(v, dict) and set(v) <= LATENT_SIZES for v in overrides.values()):
        return False
    built: dict[str, dict] = {}
    for layer in layers:
        own = overrides.get(layer["index"], overrides.get(str(layer["index"]), {}))
        key = repr(sorted(own.items()))
        if built.setdefault(key, _linears(layer["info"].rec)) != _linears(layer["info"].rec):
            return False
    return True


def _latent_shapes(ctx: Ctx, layers: list) -> bool:
    """Latent attention (MLA) layers whose projections differ in size: True, citing the
    first projection (by attribute name) the layers size apart."""
    if len(layers) < 2:
        return False
    first = _linears(layers[0]["info"].rec)
    for layer in layers[1:]:
        other = _linears(layer["info"].rec)
        for name in (n for n in first if n in other):  # in the order the layer builds them
            if first[name] != other[name]:
                ctx.cite(
                    "attention.layer_shapes",
                    f"{ctx.class_site(layer['info'].rec) or '?'} (latent attention projections"
                    f" sized per layer: {name} (in, out) features {first[name]} on layer"
                    f" {layers[0]['index']}, {other[name]} on layer {layer['index']})",
                )
                return True
    return False


def _linears(rec: ModuleRec) -> dict[str, tuple]:
    """(in, out) features of the attention's own linear projections, by attribute name."""
    out = {}
    for name, child in rec.children():
        if isinstance(child, ModuleRec):
            sizes = (_size(child, 0), _size(child, 1))
            if all(isinstance(v, int) for v in sizes):
                out[name] = sizes
    return out


def _shapes(info) -> tuple | None:
    """(q, k, v, o) feature counts of separate q/k/v projections; None when fused or unread."""
    mods = []
    for lins in (info.q_lins, info.k_lins, info.v_lins):
        if not lins or len(lins) != 1 or not isinstance(lins[0].module, ModuleRec):
            return None
        mods.append(lins[0].module)
    if len({id(m) for m in mods}) != 3 or info.o_lin is None:
        return None
    outs = [_size(m, 1) for m in mods] + [_size(info.o_lin, 0)]
    return tuple(outs) if all(isinstance(v, int) for v in outs) else None


def _size(rec: ModuleRec, index: int):
    """in (0) or out (1) features of a linear record."""
    if rec.kind != "Linear" or len(rec.args) < 2:
        return None
    value = rec.args[index]
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _has_sinks(info) -> bool:
    s_aux = info.kernel.kwargs.get("s_aux", info.kernel.kwargs.get("sinks"))
    return isinstance(s_aux, ParamRec) or (isinstance(s_aux, Term) and s_aux.op == "param")
