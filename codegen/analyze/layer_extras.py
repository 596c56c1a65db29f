"""Parts of a decoder layer that no rule realises, each named with its evidence.

A layer is its attention (or mixer), its FFN or MoE, and its norms. Anything else its forward
computes with would be dropped silently by a package built from a reference, so the analysis
names it instead of letting the gap show only as a failed verify:

* block.layer_modules: weights of the layer that its forward uses and that belong to none of
  those parts: no record of a known role holds them and the FFN's linears (`ffn.block_names`,
  BERT's `intermediate.dense`, OPT's `fc1`) are not among them (gemma3n's Laurel block,
  the projections of a per-layer input), named by attribute and class; also a
  feed-forward of its own (an MLP or MoE record) nested inside a sublayer that is not a part,
  besides the layer's FFN (bottleneck adapters, one per language in a ModuleDict, applied
  after the FFN's output projection);
* block.layer_input: an input of the layer's forward, besides the hidden states, that is
  multiplied into the computation (per-layer embeddings: a slice of a second embedding
  table handed to every layer).

Modules the residual adds are made of (`block.residual_affine`: ZAYA's residual scaling)
and the AltUp module read whole (`block.altup`: gemma3n's predict/correct around the layer)
are realised by their rules, so neither finding names them; nor a low-rank branch beside the
attention read whole (`block.low_rank_branch`: gemma3n's Laurel block).

Per-layer inputs the analysis reads whole (`block.per_layer_input`: the gate, up projection
and norm, fed from the backbone's second table, added to the layer's output as gemma4's or
into AltUp's corrected streams as gemma3n's) are a part a rule realises, so neither finding
names them; a layer that does anything else with them keeps both. Likewise language
adapters read whole (`block.language_adapters`: X-MOD's ModuleDict of bottleneck FFNs) are
not named.
"""

from __future__ import annotations

import libcst.matchers as m

from codegen.analyze.context import Ctx, site_of
from codegen.analyze.dataflow import Term
from codegen.analyze.detect_ffn import ffn_modules
from codegen.analyze.detect_norm import gated_norm
from codegen.analyze.evaluate import ModuleListRec, ModuleRec, ParamRec
from codegen.analyze.features import Ffn
from codegen.analyze.language_adapters import bank_path
from codegen.analyze.roles import (
    ACT,
    ATTENTION,
    DEPTH,
    EXPERTS,
    MIXER,
    MLP,
    MOE,
    NORM,
    PASSTHROUGH,
    ROTARY,
    ROUTER,
)

# records of these roles are the layer's known parts, whatever they hold
_KNOWN = (ATTENTION, MIXER, MLP, MOE, EXPERTS, ROUTER, NORM, ROTARY, ACT, PASSTHROUGH)
_PARTS = (ATTENTION, MIXER, MLP, MOE, EXPERTS)
_PRODUCTS = ("mul", "matmul")
_PRODUCT_FNS = ("mul", "multiply", "matmul", "einsum", "bmm")
_WEIGHTED = ("Linear", "Embedding", "Conv1d", "Conv2d")


def detect(
    ctx: Ctx,
    ffn: Ffn,
    per_layer_input: dict | None = None,
    *,
    hyper: dict | None = None,
    adapters: dict | None = None,
    convs: tuple = (None, None),
    affine: dict | None = None,
    altup: dict | None = None,
    conv_projection: dict | None = None,
    branch: dict | None = None,
) -> None:
    layers = [rec for rec in ctx.model.layers or () if isinstance(rec, ModuleRec)]
    if not layers or layers[0].cls is None:
        return
    layer = layers[0]
    trace = ctx.trace(layer)
    used = _used_records(trace.terms)
    ffn_paths = {path for _, path in ffn.block_names or ()}
    if per_layer_input is not None:  # realised by the per_layer_input rule
        ffn_paths |= {per_layer_input[key] for key in ("gate", "up", "norm")}
    if hyper is not None:  # realised by the hyper_connections rule
        ffn_paths |= set(hyper["layer"])
    output_convs, kv_convs = convs  # realised by the residual-convolution rules
    if output_convs is not None:
        ffn_paths |= {name for name, _ in output_convs["convs"]}
    if affine is not None:  # realised by the residual_affine rule
        ffn_paths |= {part["module"] for part in affine.values()}
    if altup is not None:  # realised by the altup rule
        ffn_paths.add(altup["module"])
    if branch is not None:  # realised by the low_rank_branch rule
        ffn_paths.add(branch["module"])
    called = _called_attributes(ctx, layer)
    reached = [
        (name, child)
        for name, child in layer.children()
        if isinstance(child, ModuleRec) and (_reaches(child, used) or name in called)
    ]
    extras = [
        (name, _describe(child), ctx.site(child))
        for name, child in reached
        if _unaccounted(ctx, child, name, ffn_paths)
        and ctx.roles.role(child) != DEPTH  # attention_residuals names these
    ]
    own = {id(rec) for _, rec, _ in ffn_modules(ctx).values()}  # the layers' FFN or MoE
    for name, child in reached:
        # a gated norm's feed-forward computes its gate (norm.gated names it), no extra
        if ctx.roles.role(child) not in _PARTS and gated_norm(ctx, child) is None:
            extras += [
                e[1:]
                for e in _nested_ffns(ctx, child, name)
                if e[0] not in own and (adapters is None or e[1] != bank_path(adapters))
            ]
    if extras:
        ctx.unsupported(
            "block.layer_modules",
            "the layer computes with weights outside its attention, FFN and norms: "
            + ", ".join(f"{n} ({what})" for n, what, _ in extras)
            + ": no rule yet",
            extras[0][2] or ctx.class_site(layer),
        )
    realised = {n for n, _ in (kv_convs or {}).get("convs", ())}
    if conv_projection is not None:  # realised by the conv_qkv_projection rule
        realised.add(conv_projection["module"])
    _attention_convolutions(ctx, reached, realised)
    product = _extra_input_product(trace.terms)
    if product is not None and per_layer_input is None:
        term, name = product
        ctx.unsupported(
            "block.layer_input",
            f"each layer multiplies an input of its own ({name!r}, besides the hidden states)"
            " into its computation (per-layer embeddings): no rule yet",
            term.site.cite() if term.site else ctx.class_site(layer),
        )


def _called_attributes(ctx: Ctx, rec: ModuleRec) -> set[str]:
    """Attributes the record's forward calls (`self.<name>(...)`), read from its source: a
    module whose call the trace inlines into functions it cannot read the weights of
    (inkling's short convolutions: `F.conv1d(x, self.conv1d.weight.squeeze(1))` behind a
    kernel hub wrapper) is still one the layer computes with."""
    found = ctx.model.project.find_method(rec.cls, "forward") if rec.cls else None
    if found is None:
        return set()
    pattern = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name()))
    return {call.func.attr.value for call in m.findall(found[1], pattern)}


def _attention_convolutions(ctx: Ctx, reached: list, realised: set[str]) -> None:
    """A convolution module inside the layer's attention that its forward calls, other than
    the residual ones `attention.kv_convs` reads (`realised`): no rule realises it."""
    for name, child in reached:
        if ctx.roles.role(child) != ATTENTION:
            continue
        called = _called_attributes(ctx, child)
        convs = [
            (own, sub)
            for own, sub in child.children()
            if own in called
            and own not in realised
            and isinstance(sub, ModuleRec)
            and _holds_conv(sub)
        ]
        if convs:
            ctx.unsupported(
                "attention.convolutions",
                "the attention runs convolutions over its projections: "
                + ", ".join(f"{name}.{own} ({_describe(sub)})" for own, sub in convs)
                + ": no rule yet",
                ctx.site(convs[0][1]) or ctx.class_site(child),
            )


def _holds_conv(rec: ModuleRec) -> bool:
    if rec.kind in ("Conv1d", "Conv2d"):
        return True
    return any(isinstance(c, ModuleRec) and _holds_conv(c) for _, c in rec.children())


def _unaccounted(ctx: Ctx, rec: ModuleRec, path: str, ffn_paths: set[str]) -> bool:
    """`rec` (at `path` in the layer) holds a weight of no known part."""
    if ctx.roles.role(rec) in _KNOWN or path in ffn_paths or _wraps_a_part(ctx, rec):
        return False
    if rec.cls is None and rec.kind in _WEIGHTED:
        return True
    if any(isinstance(v, ParamRec) and v.kind == "parameter" for v in rec.attrs.values()):
        return True
    return any(
        isinstance(child, ModuleRec) and _unaccounted(ctx, child, f"{path}.{name}", ffn_paths)
        for name, child in rec.children()
    )


def _describe(rec: ModuleRec) -> str:
    return rec.cls.name if rec.cls else rec.kind


def _nested_ffns(ctx: Ctx, rec: ModuleRec, path: str) -> list[tuple[int, str, str, str | None]]:
    """(id, path, what, site) of the feed-forwards (MLP or MoE records) below `rec`, a
    sublayer that is not itself a part: a feed-forward besides the layer's FFN when it is not
    that FFN (the caller checks). A module list or dict of them is named once, by its
    attribute and site."""
    out = []
    for name, child in rec.children():
        sub = f"{path}.{name}"
        if isinstance(child, ModuleListRec):
            ffns = [x for x in child.items if isinstance(x, ModuleRec) and _is_ffn(ctx, x)]
            if ffns:
                kind = "ModuleDict" if child.keys is not None else "ModuleList"
                what = f"{kind} of {len(child.items)} {_describe(ffns[0])}"
                out.append((id(ffns[0]), sub, what, site_of(child.site)))
        elif isinstance(child, ModuleRec):
            if _is_ffn(ctx, child):
                out.append((id(child), sub, _describe(child), ctx.site(child)))
            elif ctx.roles.role(child) not in _KNOWN:
                out += _nested_ffns(ctx, child, sub)
    return out


def _is_ffn(ctx: Ctx, rec: ModuleRec) -> bool:
    return ctx.roles.role(rec) in (MLP, MOE)


def _used_records(terms: list[Term]) -> set[int]:
    """ids of the module / parameter records the traced forward calls or reads."""
    return {id(t.module) for t in terms if t.op in ("call", "param") and t.module is not None}


def _reaches(rec: ModuleRec, used: set[int]) -> bool:
    """`rec` or a record below it is used."""
    if id(rec) in used:
        return True
    for value in rec.attrs.values():
        if id(value) in used:
            return True
    return any(isinstance(c, ModuleRec) and _reaches(c, used) for _, c in rec.children())


def _wraps_a_part(ctx: Ctx, rec: ModuleRec) -> bool:
    """A wrapper of an attention, mixer, FFN or MoE (BERT's `attention` holding the
    self-attention and its output projection; DBRX's `norm_attn_norm`) is that part."""
    return any(
        isinstance(child, ModuleRec)
        and (ctx.roles.role(child) in _PARTS or _wraps_a_part(ctx, child))
        for _, child in rec.children()
    )


def _extra_input_product(terms: list[Term]) -> tuple[Term, str] | None:
    """The first product of a computed tensor with a non-primary input of the forward."""
    for t in terms:
        is_product = t.op in _PRODUCTS or (
            t.op == "fn" and t.name.rsplit(".", 1)[-1] in _PRODUCT_FNS
        )
        if not is_product:
            continue
        inputs = [
            a
            for a in t.args
            if isinstance(a, Term) and a.op == "input" and not a.kwargs.get("primary")
        ]
        computed = [a for a in t.args if isinstance(a, Term) and a.op != "input"]
        if inputs and computed:
            return t, inputs[0].name
    return None
