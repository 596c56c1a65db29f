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
- `rule`: the head size, query heads or kv heads computed in `__init__` from the config and
  the layer index (MiMo-V2-Flash: `num_key_value_heads * 2` on sliding layers; inkling:
  `swa_head_dim`, `swa_num_attention_heads`, `swa_num_key_value_heads` on sliding layers),
  restated over `hf_config` and `i` in `attention.layer_sizes` (`{"n_kv_heads": ...,
  "head_dim": ..., "n_heads": ...}`, the sizes that differ) and checked against every
  analysed layer's projections;
- `other`: sizes from anything else (latent layers sized apart beyond their overrides, a
  size `__init__` does not spell as heads x head size).

The projections' sizes are read as products, heads x head size (`q`: heads x head_dim,
`k`: kv heads x head_dim, `v`: kv heads x value head size, `o`'s input: heads x value head
size). Value heads of a size of their own (`v_head_dim`, MiMo's 128 beside 192) are
`attention.v_head_dim`, restated over the config. Sinks on some layers only (a parameter
`__init__` builds under a condition, `None` elsewhere) are `attention.sinks` with the
condition restated in `attention.sink_rule`. A value head size or sink condition that
cannot be restated is "other", which no rule realises, so the plan stops before writing.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.config import attr
from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term
from codegen.analyze.evaluate import ModuleRec, ParamRec
from codegen.analyze.layer_rule import init_rule, restate_init

# the config fields a per-layer override may set for a package to read them per layer
PER_LAYER_SIZES = frozenset({"head_dim", "num_key_value_heads", "num_attention_heads"})
# ... and under latent attention: its heads, latent ranks and q/k/v head parts (head_dim and
# the kv heads, which latent attention expands from its latent, may follow them)
LATENT_SIZES = PER_LAYER_SIZES | frozenset(
    {"q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"}
)


def check(ctx: Ctx, shared: dict) -> dict:
    """The attention fields read across layers: `layer_shapes` (see the module docstring),
    `layer_sizes`, `v_head_dim`, and `sinks` / `sink_rule` where only some layers have sinks;
    each cites its evidence ("other" where it could not be restated over the config)."""
    layers = [p for p in shared.get("per_layer", ()) if p["type"] in ("full", "sliding")]
    out: dict = {"layer_shapes": "same"}
    latent = [p for p in layers if p["info"].kernel is not None and p["info"].mla]
    if _latent_shapes(ctx, latent):
        out["layer_shapes"] = "latent" if _latent_overridden(ctx, latent) else "other"
    layers = [p for p in layers if p["info"].kernel is not None and not p["info"].mla]
    infos = [p["info"] for p in layers]
    if not infos:
        return out
    shapes = [_shapes(info) for info in infos]
    factors = _head_factors(ctx, layers, shapes) if None not in shapes else None
    if None not in shapes and len(set(shapes)) > 1:
        first, other = shapes[0], next(s for s in shapes if s != shapes[0])
        at = next(i for i, s in zip(layers, shapes, strict=False) if s != shapes[0])
        where = ctx.site(at["info"].rec) or ctx.class_site(at["info"].rec) or "?"
        ctx.cite(
            "attention.layer_shapes",
            f"{where} ((q, k, v, o) features {first} on layer {layers[0]['index']}, {other} on"
            f" layer {at['index']})",
        )
        if _overridden(ctx):
            out["layer_shapes"] = "per_layer_config"
        elif factors is not None and _rule_sizes(factors) and _rule_sizes(factors) <= RULE_SIZES:
            out["layer_shapes"] = "rule"
            out["layer_sizes"] = {k: factors[k] for k in sorted(_rule_sizes(factors))}
            ctx.cite(
                "attention.layer_sizes",
                f"{where} (" + "; ".join(f"{k} = {v}" for k, v in out["layer_sizes"].items()) + ")",
            )
        else:
            out["layer_shapes"] = "other"
    first = shapes[0]
    if first is not None and first[1] != first[2]:
        info = infos[0]
        where = ctx.site(info.v_lins[0].module) if info.v_lins else ctx.class_site(info.rec)
        if factors is not None and "v_head_dim" not in factors["varying"]:
            out["v_head_dim"] = factors["v_head_dim"]
            ctx.cite("attention.v_head_dim", f"{where} ({factors['v_head_dim']})")
        else:
            out["v_head_dim"] = "other"
            ctx.cite(
                "attention.v_head_dim",
                f"{where} (k {first[1]}, v {first[2]} features: no head size restated over the"
                " config)",
            )
    sinks = [_has_sinks(info) for info in infos]
    if len(set(sinks)) > 1:
        at = layers[sinks.index(True)]
        where = ctx.site(at["info"].rec) or ctx.class_site(at["info"].rec)
        rule = _sink_rule(ctx, layers, sinks)
        out["sinks"], out["sink_rule"] = True, rule or "other"
        ctx.cite(
            "attention.sinks",
            f"{where} (on layer {at['index']}, not on layer {layers[sinks.index(False)]['index']})",
        )
        ctx.cite("attention.sink_rule", f"{where} ({rule or 'no condition restated'})")
    return out


# the sizes a package computes per layer by a rule (layer_attention_sizes)
RULE_SIZES = frozenset({"head_dim", "n_kv_heads", "n_heads"})


def _rule_sizes(factors: dict) -> set[str]:
    """The sizes that differ by layer; a value head as large as the q/k head (spelt the same)
    follows the head size and is no size of its own."""
    varying = set(factors["varying"])
    if factors["v_head_dim"] == factors["head_dim"]:
        varying.discard("v_head_dim")
    return varying


def _init_assignments(ctx: Ctx, rec: ModuleRec) -> dict[str, cst.BaseExpression]:
    """`self.<name> = <value>` of the attention class's `__init__`, by name (assigned once)."""
    if rec.cls is None:
        return {}
    init = ctx.model.project.find_method(rec.cls, "__init__")
    if init is None:
        return {}
    found: dict[str, list] = {}
    for assign in m.findall(
        init[1], m.Assign(targets=[m.AssignTarget(m.Attribute(m.Name("self")))])
    ):
        found.setdefault(assign.targets[0].target.attr.value, []).append(assign.value)
    return {name: values[0] for name, values in found.items() if len(values) == 1}


def _linear_size(call: cst.BaseExpression, index: int, keyword: str):
    """Argument `index` (or `keyword`) of a `Linear(in, out, ...)` call."""
    if not isinstance(call, cst.Call):
        return None
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == keyword:
            return arg.value
    positional = [a for a in call.args if a.keyword is None and not a.star]
    return positional[index].value if index < len(positional) else None


def _factors(node) -> tuple | None:
    """The two operands of `a * b`, else None."""
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Multiply):
        return node.left, node.right
    return None


def _head_factors(ctx: Ctx, layers: list, shapes: list) -> dict | None:
    """Each projection's size as heads x head size, restated over the config and the layer
    index: {"n_heads", "n_kv_heads", "head_dim", "v_head_dim": text, "varying": the sizes
    whose value differs by layer}; None where the sizes are not spelt so, or a product does
    not give an analysed layer's features."""
    info = layers[0]["info"]
    rec = info.rec
    names = {id(child): name for name, child in rec.attrs.items()}
    mods = [info.q_lins[0].module, info.k_lins[0].module, info.v_lins[0].module, info.o_lin]
    attrs = [names.get(id(mod)) for mod in mods]
    if None in attrs:
        return None
    assigned = _init_assignments(ctx, rec)
    sizes = [_linear_size(assigned.get(a), 1, "out_features") for a in attrs[:3]]
    sizes.append(_linear_size(assigned.get(attrs[3]), 0, "in_features"))
    pairs = [_factors(size) for size in sizes]
    if None in pairs:
        return None
    built = [(p["index"], p["info"].rec) for p in layers]
    restated = []
    for pair in pairs:
        sides = [restate_init(ctx, rec, side, built) for side in pair]
        if None in sides:
            return None
        restated.append(sides)
    (q1, q2), (k1, k2), (v1, v2), (o1, o2) = restated

    def split(pair, known):
        """(the side spelt as `known`, the other side), or None."""
        if pair[0][0] == known[0]:
            return pair[0], pair[1]
        if pair[1][0] == known[0]:
            return pair[1], pair[0]
        return None

    for head_dim, heads in ((q2, q1), (q1, q2)):  # noqa: B007 - the pair that matched
        k = split((k1, k2), head_dim)
        if k is not None:
            break
    else:
        return None
    kv_heads = k[1]
    v = split((v1, v2), kv_heads)
    o = split((o1, o2), heads)
    if v is None or o is None or o[1][0] != v[1][0]:
        return None
    found = {
        "n_heads": heads,
        "n_kv_heads": kv_heads,
        "head_dim": head_dim,
        "v_head_dim": v[1],
    }
    for n, shape in enumerate(shapes):
        h, kv, d, vd = (
            found[key][1][n] for key in ("n_heads", "n_kv_heads", "head_dim", "v_head_dim")
        )
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (h, kv, d, vd)):
            return None
        if shape != (h * d, kv * d, kv * vd, h * vd):
            return None
    out: dict = {key: value[0] for key, value in found.items()}
    out["varying"] = {key for key, value in found.items() if len(set(value[1])) > 1}
    return out


def _sink_rule(ctx: Ctx, layers: list, sinks: list) -> str | None:
    """The condition under which `__init__` builds the sinks (`self.sinks = Parameter(...) if
    <test> else None`), restated over the config and the layer index and true exactly on the
    analysed layers that have them; None otherwise."""
    at = layers[sinks.index(True)]["info"]
    param = _sink_param(at)
    name = next((n for n, child in at.rec.attrs.items() if child is param), None)
    value = _init_assignments(ctx, at.rec).get(name) if name else None
    if not isinstance(value, cst.IfExp):
        return None
    if m.matches(value.orelse, m.Name("None")):
        test = value.test
    elif m.matches(value.body, m.Name("None")):
        test = cst.UnaryOperation(
            operator=cst.Not(),
            expression=value.test.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()]),
        )
    else:
        return None
    built = [(p["index"], p["info"].rec) for p in layers]
    has = dict(zip([p["index"] for p in layers], sinks, strict=True))
    return init_rule(ctx, at.rec, test, built, lambda i, v: bool(v) == has[i])


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
    own = {id(child) for _, child in info.rec.children()}
    for lins in (info.q_lins, info.k_lins, info.v_lins):
        # the attention's own projections: a linear inside a filter on the keys (per-token
        # taps) reaches them too
        lins = [lin for lin in lins or () if id(lin.module) in own] if lins else lins
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


def _sink_param(info):
    return info.kernel.kwargs.get("s_aux", info.kernel.kwargs.get("sinks"))


def _has_sinks(info) -> bool:
    s_aux = _sink_param(info)
    return isinstance(s_aux, ParamRec) or (isinstance(s_aux, Term) and s_aux.op == "param")
