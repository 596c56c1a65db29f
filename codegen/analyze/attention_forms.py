"""Attention forms outside the attention facts, each named with its evidence.

The attention facts describe projections q, k and v (or MLA's latents) feeding one kernel
and one output projection. DeepSeek-V4's attention reads as plain multi-query attention
under them, while it differs in five places; each is read from the traced forward of every
layer's attention (never from names) and named unsupported in one line, or read as a fact
where a rule builds it:

* `attention.low_rank_q` (a fact: the Attention field): the query up-projected from a normed
  latent (linear -> norm -> linear) while the keys and values are not latent (not MLA,
  whose rule builds both), read as DeepSeek-V4's form (a weighted norm on the latent, a
  weightless one on each head after) or "other";
* `attention.kv_same` (a fact: the Attention field): one tensor handed to the kernel as both
  the keys and the values;
* `attention.output_rotation` (a fact, not named: the Attention field): the kernel's output
  multiplied by the factors that rotate the query before the output projection, "inverse"
  where a factor is negated (the rotary slice turned back);
* `attention.o_low_rank` (a fact: the Attention field): the kernel's output projected twice
  in a row, read as a grouped first stage (a projection class with a forward of its own and
  a group count from the config) or "other";
* `attention.compressed_kv` (a fact: the Attention field): keys concatenated with the output
  of a module of the attention's own other than a projection, norm or rotary (a compressor
  of past tokens): read where it pools windows of tokens as DeepSeek-V4's heavily
  compressed layers do (`_pooled`), with, beside it on the layers of another type, one
  pooling two windows per entry whose entries an indexer picks by top-k (`_overlapping`,
  its compressed sparse layers: the fact's `sparse`); else described with the layers it is
  on and any part of it that picks entries by top-k (an indexer), a form no rule builds;
* `attention.layer_forwards`: attention layers whose module runs another `forward` than
  the first attention layer's (whose facts the others are read as), named with what it does
  otherwise; a second forward on exactly the layers without a window that is the first with
  its queries (and relative states) times a log-of-the-position scale, with key/value inputs
  of its own each the layer's input through a norm of its own, is no such line but the facts
  `attention.layer_logn` and `attention.layer_inputs` (`layer_attention.read`);
* `attention.unprojected`: attention modules of a layer or of the backbone holding no
  linear layer of their own (learned queries over stored layer outputs), beside the
  layer's token attention.
"""

from __future__ import annotations

import libcst as cst

from codegen.analyze import layer_attention, norm_cast
from codegen.analyze.context import Ctx, Trace
from codegen.analyze.dataflow import Term, Tracer, strip, terms_in, walk
from codegen.analyze.detect_attention import (
    _kernel,
    _linears,
    _low_rank_chain,
    _norm_calls,
    _token_attention,
)
from codegen.analyze.evaluate import ModuleListRec, ModuleRec, ParamRec
from codegen.analyze.model import layer_slots
from codegen.analyze.roles import ATTENTION, LINEAR, NORM, ROTARY

_SKIP = (LINEAR, NORM, ROTARY)
_CATS = ("cat", "concat", "concatenate")


def detect(ctx: Ctx, shared: dict) -> dict:
    """Names the forms no rule builds; returns the Attention facts read here
    (`low_rank_q`, `output_rotation`, `kv_same`, `o_low_rank`, and `layer_logn` where the second
    attention forward is the first log-scaled: see `layer_attention`)."""
    facts: dict = {}
    layer_logn, layer_inputs, layer_convs = _layer_forwards(ctx, shared)
    if layer_convs is not None:
        facts["layer_kv_convs"] = layer_convs
    if layer_logn is not None:
        facts["layer_logn"] = layer_logn
    if layer_inputs is not None:
        facts["layer_inputs"] = layer_inputs
    _unprojected_attentions(ctx)
    seen: set[int] = set()
    shapes: dict[tuple, list] = {}  # the attention's classes -> its compressors
    # class -> {"name", "site", "layers", "indexer", "module"}
    compressors: dict[str, dict] = {}
    for entry in shared.get("per_layer", ()):
        info = entry.get("info")
        if info is None or info.kernel is None:
            continue
        if id(info) not in seen:
            seen.add(id(info))
            _projections(ctx, info, facts)
        shape = build_shape(info.rec)
        if shape not in shapes:  # layers built alike compute alike: traced once
            shapes[shape] = _compressors(ctx, info)
        for name, module, site in shapes[shape]:
            found = compressors.setdefault(
                module.cls.name if module.cls else module.kind,
                {
                    "name": name,
                    "site": site,
                    "layers": [],
                    "indexer": _indexer(ctx, module),
                    "module": module,
                    "owner": info.rec,
                },
            )
            found["layers"].append(entry["index"])
    pooled = _pooled_facts(ctx, compressors)
    if pooled is not None:
        facts["compressed_kv"] = pooled
        compressors = {}
    if compressors:
        parts = []
        for cls, found in compressors.items():
            indexer = (
                f", with an indexer picking entries by top-k ({found['name']}.{found['indexer']})"
            )
            parts.append(
                f"{found['name']} ({cls}{indexer if found['indexer'] else ''}) on layers"
                f" {span(found['layers'])}"
            )
        # the form the rule builds is a dict; any other is this description, unsupported
        facts["compressed_kv"] = (
            "the keys and values are extended by entries a module of the attention computes"
            f" from the hidden states: {'; '.join(parts)}"
        )
        site = next(iter(compressors.values()))["site"]
        ctx.cite("attention.compressed_kv", f"{site} ({'; '.join(parts)})")
    return facts


def _pooled_facts(ctx: Ctx, compressors: dict[str, dict]) -> dict | None:
    """`attention.compressed_kv` where one compressor without an indexer pools windows of
    tokens as DeepSeek-V4's heavily compressed layers do (`_pooled`), built on the layers of
    one config layer type, every layer of that type; with, at most, a second one (under
    `sparse`) on the layers of another type pooling two windows per entry, of which an
    indexer picks entries per query (`_overlapping`, DeepSeek-V4's compressed sparse
    layers), held by the same attention attribute; None otherwise (the form is then named
    unsupported)."""
    plain = [found for found in compressors.values() if not found["indexer"]]
    indexed = [found for found in compressors.values() if found["indexer"]]
    if len(plain) != 1 or len(indexed) > 1:
        return None
    (found,) = plain
    pooled = _pooled(ctx, found["module"], found["owner"])
    kind = _one_kind(ctx, found["layers"])
    if pooled is None or kind is None:
        return None
    pooled.update(module=found["name"], kind=kind, layers=sorted(found["layers"]))
    where = pooled.pop("where")
    if indexed:
        (other,) = indexed
        sparse = _overlapping(ctx, other["module"], other["owner"], other["indexer"])
        other_kind = _one_kind(ctx, other["layers"])
        if sparse is None or other_kind is None or other["name"] != found["name"]:
            return None
        if sparse["eps"] != pooled["eps"] or sparse["group"] != pooled["group"]:
            return None  # both kinds' entries are normed and turned alike
        sparse.update(kind=other_kind, layers=sorted(other["layers"]))
        where = f"{where}; {other['site']}, {sparse.pop('where')}"
        pooled["sparse"] = sparse
    ctx.cite("attention.compressed_kv", f"{found['site']}, {where}")
    return pooled


def _one_kind(ctx: Ctx, layers: list[int]) -> str | None:
    """The config layer type of exactly `layers`, where they are every layer of one type."""
    types = ctx.model.config.attrs.get("layer_types")
    if not isinstance(types, list | tuple):
        return None
    kinds = {types[i] for i in layers if i < len(types)}
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    if [i for i, t in enumerate(types) if t == kind] != sorted(layers):
        return None
    return kind


def _overlapping(ctx: Ctx, module: ModuleRec, owner: ModuleRec, indexer: str) -> dict | None:
    """{"kv", "gate", "bias", "norm", "rate", "eps", "group", "indexer", "where"} of a
    compressor built as DeepSeek-V4's compressed sparse one: its pooling parts as `_pooled`
    reads them, but projecting to twice the attention's head size (a half for the window's
    own entry, a half for the next one's), beside an indexer (`indexer`, read by
    `_indexer_parts`) whose own pooling parts are alike at its head size; None otherwise."""
    if "." in indexer:
        return None
    pooled = _pooled(ctx, module, owner, width=2, beside=indexer)
    part = module.attrs.get(indexer)
    parts = _indexer_parts(ctx, part, owner) if isinstance(part, ModuleRec) else None
    if pooled is None or parts is None:
        return None
    # the indexer pools the same windows, normed and turned as the entries are
    if any(parts.pop(key) != pooled[key] for key in ("eps", "group")):
        return None
    if parts["rate"] != pooled["rate"]:
        return None
    pooled["indexer"] = dict(parts, module=indexer)
    return pooled


def _indexer_parts(ctx: Ctx, module: ModuleRec, owner: ModuleRec) -> dict | None:
    """The parts of an indexer built as DeepSeek-V4's: its own pooling parts (as
    `_overlapping` reads them, at the head size its bias is twice of; with their norm's eps
    and rotary group, which the caller compares and drops), a projection of its
    queries from the attention's query latent (a Linear reading the width the attention's
    first query projection writes), and, in a part of its own, a Linear from the hidden
    size to one weight per indexer head; its head count and head size read from the config
    where it keeps them, its top-k the one other config read it keeps. None otherwise."""
    if module.cls is None:
        return None
    params = [c for _, c in module.children() if isinstance(c, ParamRec) and c.kind == "parameter"]
    if len(params) != 1 or len(params[0].shape) != 2 or params[0].shape[1] % 2:
        return None
    head_dim = params[0].shape[1] // 2
    # the hidden size: what the indexer's own pooling projections read
    hidden = {rec.args[0] for _, rec in _owned_linears(module) if rec.args[1:] == (2 * head_dim,)}
    latent = {
        rec.args[1]
        for _, rec in _owned_linears(owner)
        if len(rec.args) > 1 and rec.args[0] in hidden
    }
    queries = [
        (n, rec)
        for n, rec in _owned_linears(module)
        if rec.args and rec.args[0] in latent and rec.args[0] not in hidden
    ]
    if len(queries) != 1:
        return None
    (q, q_rec) = queries[0]
    weights = [
        (f"{name}.{n}", rec)
        for name, child in module.children()
        if isinstance(child, ModuleRec)
        and child.cls is not None
        and ctx.roles.role(child) not in _SKIP
        for n, rec in _owned_linears(child)
    ]
    if len(weights) != 1 or len(q_rec.args) < 2:
        return None
    (w, w_rec) = weights[0]
    heads = w_rec.args[1] if len(w_rec.args) > 1 else None
    if heads is None or q_rec.args[1] != heads * head_dim:
        return None
    pooled = _pooled(ctx, module, {"head_dim": head_dim}, width=2, beside=(q, w.split(".")[0]))
    ints = {
        name: (value, _rate_read(module, name))
        for name, value in module.attrs.items()
        if isinstance(value, int) and not isinstance(value, bool)
    }
    reads = {value: read for value, read in ints.values()}
    if pooled is None or None in (reads.get(heads), reads.get(head_dim)):
        return None
    # the top-k: the one config read kept besides the rate, the head count and head size
    known = {pooled["rate"], reads[heads], reads[head_dim]}
    topk = [read for _, read in ints.values() if read is not None and read not in known]
    if len(topk) != 1:
        return None
    return {
        "kv": pooled["kv"],
        "gate": pooled["gate"],
        "bias": pooled["bias"],
        "norm": pooled["norm"],
        "rate": pooled["rate"],
        "q": q,
        "weights": w,
        "heads": reads[heads],
        "head_dim": reads[head_dim],
        "topk": topk[0],
        "eps": pooled["eps"],
        "group": pooled["group"],
    }


def _owned_linears(module: ModuleRec) -> list[tuple[str, ModuleRec]]:
    """The module's own plain Linears."""
    return [
        (name, child)
        for name, child in module.children()
        if isinstance(child, ModuleRec) and child.cls is None and child.kind == "Linear"
    ]


def _pooled(
    ctx: Ctx, module: ModuleRec, owner, width: int = 1, beside: str | tuple[str, ...] = ()
) -> dict | None:
    """{"kv", "gate", "bias", "norm", "rate", "eps", "group", "where"} of a compressor built
    as DeepSeek-V4's heavily compressed one: two plain Linears without a bias from the
    hidden size to the attention's head size (the entries and their gate: the gate's is the
    one the softmax, taken in fp32, reads), a learned bias of (rate, head size) added to the
    gate per slot of the window, the rate `config.<field>[<key>]` it keeps as an attribute, a
    norm with a weight over the head size built with `eps=config.<eps>`, and a rotary of the
    rope_parameters group a string of its class names; None otherwise."""
    if module.cls is None:
        return None
    head_dim = owner.attrs.get("head_dim") if isinstance(owner, ModuleRec) else owner["head_dim"]
    beside = (beside,) if isinstance(beside, str) else beside
    linears, params, norms, rotary = [], [], [], []
    for name, child in module.children():
        if name in beside:
            continue
        if isinstance(child, ParamRec) and child.kind == "parameter":
            params.append((name, child))
        elif isinstance(child, ModuleRec) and child.cls is None and child.kind == "Linear":
            linears.append((name, child))
        elif isinstance(child, ModuleRec) and ctx.roles.role(child) == NORM:
            norms.append((name, child))
        elif isinstance(child, ModuleRec) and ctx.roles.role(child) == ROTARY:
            rotary.append(name)
        else:
            return None
    if len(linears) != 2 or len(params) != 1 or len(norms) != 1 or len(rotary) > 1:
        return None
    (bias, param), (norm, norm_rec) = params[0], norms[0]
    if any(rec.kwargs.get("bias", True) is not False for _, rec in linears):
        return None
    if not isinstance(head_dim, int) or any(
        len(rec.args) < 2 or rec.args[1] != width * head_dim for _, rec in linears
    ):
        return None
    if not any(isinstance(v, ParamRec) for v in norm_rec.attrs.values()):
        return None  # the entries' norm learns a scale
    rates = [
        (name, v)
        for name, v in module.attrs.items()
        if isinstance(v, int)
        and not isinstance(v, bool)
        and v > 1
        and tuple(param.shape) == (v, width * head_dim)
    ]
    # the rate and the head size may be the same number: the rate is read per layer kind
    keyed = [name for name, _ in rates if "[" in (_rate_read(module, name) or "")]
    if len(rates) != 1 and len(keyed) != 1:
        return None
    rate = _rate_read(module, keyed[0] if len(rates) != 1 else rates[0][0])
    eps = _eps_field(norm_rec)
    group = _group_label(ctx, module)
    gate, softmax = _softmax_input(ctx, module)
    if None in (rate, eps, gate) or (rotary and group is None):
        return None
    names = {id(rec): name for name, rec in linears}
    if id(gate.module) not in names:
        return None
    kv = next(name for name, rec in linears if rec is not gate.module)
    where = softmax.site.cite() if softmax.site else ctx.site(module)
    return {
        "kv": kv,
        "gate": names[id(gate.module)],
        "bias": bias,
        "norm": norm,
        "rate": rate,
        "eps": eps,
        "group": group,
        "where": f"{where} (windows pooled by a softmax in fp32 over the gate)",
    }


def _params(found) -> set[str]:
    """The parameter names of a `find_method` result's function."""
    function = found[1] if isinstance(found, tuple) else found
    return {p.name.value for p in function.params.params}


def _rate_read(module: ModuleRec, attr: str) -> str | None:
    """`self.<attr> = config.<field>[<key>]` -> 'hf_config.<field>["<key>"]'."""
    site = module.assign_sites.get(attr)
    node = site.node if site is not None else None
    value = getattr(node, "value", None)
    if isinstance(node, cst.Assign | cst.AnnAssign) and isinstance(value, cst.Subscript):
        field = _config_field(value.value)
        index = value.slice[0].slice if len(value.slice) == 1 else None
        key = getattr(index, "value", None)
        if field and isinstance(key, cst.SimpleString):
            return f'hf_config.{field}["{key.evaluated_value}"]'
    field = _config_field(value) if value is not None else None
    return f"hf_config.{field}" if field else None


def _group_label(ctx: Ctx, module: ModuleRec) -> str | None:
    """The one string constant of the class's body that labels a rope_parameters group."""
    groups = ctx.model.config.attrs.get("rope_parameters")
    if not isinstance(groups, dict):
        return None
    found = {
        value.evaluated_value
        for value in module.cls.class_attrs.values()
        if isinstance(value, cst.SimpleString) and value.evaluated_value in groups
    }
    return found.pop() if len(found) == 1 else None


def _softmax_input(ctx: Ctx, module: ModuleRec) -> tuple[Term | None, Term | None]:
    """(the projection whose output the compressor's softmax reads, the softmax) where that
    softmax is taken in fp32 (`dtype=torch.float32`); (None, None) otherwise. Traced as the
    model runs it without a cache (a `past_key_values` parameter None), as the package
    does."""
    tracer = Tracer(ctx.model.interp, ctx.roles, inline=False)
    params = ctx.model.project.find_method(module.cls, "forward")
    given = {"past_key_values": None} if params and "past_key_values" in _params(params) else {}
    for term in Trace(tracer, tracer.trace(module, "forward", inputs=given)).terms:
        if term.op != "fn" or term.name.rsplit(".", 1)[-1] != "softmax":
            continue
        dtype = term.kwargs.get("dtype")
        if "float32" not in str(getattr(dtype, "name", dtype)):
            return None, None
        calls = [
            t
            for t in walk(term)
            if t.op == "call" and isinstance(t.module, ModuleRec) and t.module.kind == "Linear"
        ]
        return (calls[0], term) if len(calls) == 1 else (None, None)
    return None, None


def _layer_forwards(ctx: Ctx, shared: dict) -> tuple[dict | None, dict | None, dict | None]:
    """Attention layers running another forward than the first attention layer's (a class
    of its own with its own `forward`, Inkling-2's full-attention layers beside its sliding
    ones): the facts are read from the first; a second forward that differs from it only by
    a log-of-the-position scale and key/value inputs of its own, each the layer's input
    through a norm of its own (`layer_attention.read`), is those facts (`layer_logn`,
    `layer_inputs`), with input-dependent key/value filters in place of the first's residual
    ones (`layer_kv_convs`, `dynamic_convs`), the others are named."""
    forwards: dict[int, tuple] = {}  # id(forward) -> (class name, site, layers, info)
    for entry in shared.get("per_layer", ()):
        info = entry.get("info")
        rec = getattr(info, "rec", None)
        found = ctx.model.project.find_method(rec.cls, "forward") if rec and rec.cls else None
        if found is None:
            continue
        name, site, layers, _ = forwards.setdefault(
            id(found[1]), (rec.cls.name, ctx.class_site(rec), [], info)
        )
        layers.append(entry["index"])
    if len(forwards) < 2:
        return None, None, None
    (first, _, read, rep), *others = forwards.values()
    if len(others) == 1 and others[0][3].trace is not None and rep.trace is not None:
        full = [e["index"] for e in shared.get("per_layer", ()) if e["type"] == "full"]
        fact, inputs, convs, differs = layer_attention.read(
            ctx, rep, others[0][3], others[0][2], full, shared.get("kv_convs")
        )
        if fact is not None:
            return fact, inputs, convs
        others = [(others[0][0], others[0][1], others[0][2], differs)]
    parts = [
        f"{name} on layers {span(layers)}{f' ({why})' if isinstance(why, str) else ''}"
        for name, _, layers, why in others
    ]
    ctx.unsupported(
        "attention.layer_forwards",
        f"attention layers run other forwards than {first}'s (layers {span(read)}, whose"
        f" facts are read): {'; '.join(parts)}: no rule yet",
        others[0][1],
    )
    return None, None, None


def _unprojected_attentions(ctx: Ctx) -> None:
    """Attention modules beside the layer's token attention that project nothing (learned
    queries over stored layer outputs: Inkling-2's block attention residuals), in the layers
    or in the backbone: the token attention is read, these are named."""
    found: dict[str, tuple] = {}  # path -> (class name, site, layers)
    beside: list[tuple] = []  # (layer index or None, path, module)
    for i, layer in enumerate(ctx.model.layers or ()):
        slots = (
            layer_slots(ctx.model, layer).get(ATTENTION, []) if isinstance(layer, ModuleRec) else []
        )
        token = _token_attention(ctx, slots)[1] if slots else None
        beside += [(i, path, rec) for path, rec in slots if rec is not token]
    owner = ctx.model.stack_owner
    for name, child in owner.children() if isinstance(owner, ModuleRec) else ():
        if isinstance(child, ModuleRec) and ctx.roles.role(child) == ATTENTION:
            beside.append(
                (None, ".".join(p for p in (ctx.model.stack_owner_path, name) if p), child)
            )
    for index, path, rec in beside:
        # torch's own attention (nn.MultiheadAttention) projects with weights of its own
        if rec.cls is None or any(ctx.roles.role(c) == LINEAR for _, c in rec.children()):
            continue
        cls = rec.cls.name
        entry = found.setdefault(path, (cls, ctx.site(rec), []))
        if index is not None:
            entry[2].append(index)
    if not found:
        return
    parts = [
        f"{path} ({cls}{f', layers {span(layers)}' if layers else ''})"
        for path, (cls, _, layers) in found.items()
    ]
    ctx.unsupported(
        "attention.unprojected",
        "attention modules that project nothing of their input (learned queries over stored"
        f" layer outputs) beside the token attention: {'; '.join(parts)}: no rule yet",
        next(iter(found.values()))[1],
    )


def _projections(ctx: Ctx, info, facts: dict) -> None:
    kernel = info.kernel
    qkv = [strip(t) for t in kernel.args if isinstance(t, Term)][:3]
    if len(qkv) != 3:
        return
    q, k, v = qkv
    site = kernel.site.cite() if kernel.site else ctx.class_site(info.rec)
    if not info.mla and _low_rank_chain(q, ctx):
        found = _low_rank_query(ctx, info.rec, q)
        # cited at the latent's projection (the first on the query's path)
        first = next((t for t in reversed(_linears(q, ctx)) if t.site is not None), None)
        facts["low_rank_q"] = found or "other"
        where = first.site.cite() if first is not None else site
        if isinstance(found, dict) and found.get("b_norm_rounded"):
            rounded = norm_cast.scale_rounded(ctx, _norm_calls(q, ctx)[0].module)
            where = f"{where}, {rounded} (the heads' norm: q times its inverse rms in q's dtype)"
        ctx.cite("attention.low_rank_q", where)
    if k is v and _linears(k, ctx):
        facts["kv_same"] = True
        ctx.cite("attention.kv_same", site)
    out = _output_calls(ctx, info)
    if out:
        rotation = _rotated_back(q, kernel, out[0], info.trace.terms)
        if rotation is not None:
            term, negated = rotation
            facts["output_rotation"] = "inverse" if negated else "forward"
            ctx.cite("attention.output_rotation", term.site.cite() if term.site else site)
    if len(out) >= 2:
        found = _grouped_output(ctx, info.rec, out) if len(out) == 2 else None
        facts["o_low_rank"] = found or "other"
        ctx.cite("attention.o_low_rank", out[0].site.cite() if out[0].site else site)


def _low_rank_query(ctx: Ctx, owner: ModuleRec, q: Term) -> dict | None:
    """{"a", "a_norm", "b", "b_norm", "rank", "eps"} of a query up-projected from a normed
    latent as DeepSeek-V4's is: a plain Linear to `config.<rank>` features without a bias,
    a norm with a weight over them, a plain Linear to the heads without a bias, then a norm
    with no weight over each head, both norms built with `eps=config.<eps>`; None otherwise."""
    lins, norms = list(reversed(_linears(q, ctx))), list(reversed(_norm_calls(q, ctx)))
    if len(lins) != 2 or len(norms) != 2:
        return None
    (a, b), (a_norm, b_norm) = (call.module for call in lins), (call.module for call in norms)
    names = [_name(owner, module) for module in (a, a_norm, b, b_norm)]
    if None in names or any(m.cls is not None or m.kind != "Linear" for m in (a, b)):
        return None
    if any(m.kwargs.get("bias", True) is not False for m in (a, b)):
        return None
    # in order: a's output normed, b reads the normed latent, the heads normed last
    inside = [any(x is lin for x in walk(norms[i])) for i, lin in ((0, lins[0]), (1, lins[1]))]
    if not all(inside) or not any(x is norms[0] for x in walk(lins[1])):
        return None
    if not any(isinstance(v, ParamRec) for v in a_norm.attrs.values()):
        return None  # the latent's norm learns a scale
    if any(isinstance(v, ParamRec | ModuleRec) for v in b_norm.attrs.values()):
        return None  # the heads' norm learns none
    node = a.site.node if a.site is not None else None
    if not isinstance(node, cst.Call) or len(node.args) < 2:
        return None
    rank = _config_field(node.args[1].value)
    eps = {_eps_field(m) for m in (a_norm, b_norm)}
    if rank is None or len(eps) != 1 or None in eps:
        return None
    a_name, a_norm_name, b_name, b_norm_name = names
    found = {
        "a": a_name,
        "a_norm": a_norm_name,
        "b": b_name,
        "b_norm": b_norm_name,
        "rank": rank,
        "eps": eps.pop(),
    }
    # the heads' norm multiplies q by its inverse rms rounded to q's dtype (in bf16 that
    # rounds otherwise than the fp32 values cast last)
    if norm_cast.scale_rounded(ctx, b_norm) is not None:
        found["b_norm_rounded"] = True
    return found


def _eps_field(norm: ModuleRec) -> str | None:
    """The config field a norm's `eps=config.<field>` names."""
    node = norm.site.node if norm.site is not None else None
    if not isinstance(node, cst.Call):
        return None
    kwarg = next((a for a in node.args if a.keyword and a.keyword.value == "eps"), None)
    return _config_field(kwarg.value) if kwarg is not None else None


def _grouped_output(ctx: Ctx, owner: ModuleRec, out: list[Term]) -> dict | None:
    """{"a", "b", "groups", "rank"} of a grouped first stage (a Linear subclass with a
    forward of its own, built with a group count `config.<groups>` it keeps as an attribute
    and `config.<groups> * config.<rank>` outputs) feeding a plain Linear, neither with a
    bias; None otherwise."""
    first, second = (call.module for call in out)
    a, b = _name(owner, first), _name(owner, second)
    if first.cls is None or first.kind != "Linear" or second.cls is not None or None in (a, b):
        return None
    if ctx.model.project.find_method(first.cls, "forward") is None:
        return None
    if any(module.kwargs.get("bias", True) is not False for module in (first, second)):
        return None  # a stage with a bias (or one not read): not the form the rule builds
    counts = [v for v in first.attrs.values() if isinstance(v, int) and not isinstance(v, bool)]
    node = first.site.node if first.site is not None else None
    if len(counts) != 1 or not isinstance(node, cst.Call) or len(first.args) < 2:
        return None
    fields = {arg: _config_field(arg.value) for arg in node.args}
    config = ctx.model.config.attrs
    groups = [f for f in fields.values() if f is not None and config.get(f) == counts[0]]
    if len(groups) != 1:
        return None
    for arg in node.args:  # the outputs: the group count times the rank
        value = arg.value
        if isinstance(value, cst.BinaryOperation) and isinstance(value.operator, cst.Multiply):
            factors = [_config_field(value.left), _config_field(value.right)]
            if groups[0] in factors and None not in factors:
                rank = factors[1 - factors.index(groups[0])]
                if rank != groups[0] and config.get(rank, 0) * counts[0] == first.args[1]:
                    return {"a": a, "b": b, "groups": groups[0], "rank": rank}
    return None


def _config_field(node) -> str | None:
    """`config.x` -> "x"."""
    if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name):
        if node.value.value == "config":
            return node.attr.value
    return None


def _output_calls(ctx: Ctx, info) -> list[Term]:
    """The projections after the kernel, in a chain (each reads the one before)."""
    kernel = info.kernel
    anchor = kernel.kwargs.get("_anchor", kernel)
    used = {id(t.module) for t in (info.q_lins or []) + (info.k_lins or []) + (info.v_lins or [])}
    after = [
        t
        for t in info.trace.terms
        if t.op == "call"
        and isinstance(t.module, ModuleRec)
        and ctx.roles.role(t.module) == LINEAR
        and id(t.module) not in used
        and any(x is anchor for x in walk(t))
    ]
    if not after:
        return []
    chain = [after[0]]
    for t in after[1:]:
        if any(x is chain[-1] for x in walk(t)):
            chain.append(t)
    return chain


def _rotated_back(q: Term, kernel: Term, out: Term, terms: list[Term]) -> tuple | None:
    """A product of the kernel's output (on the way to `out`) with a factor that also
    multiplies the query after its projection (the rotary tables), and whether any such
    product takes a table negated (the rotation turned back): (first product, negated)."""
    factors: set[int] = set()
    for t in walk(q):
        if t.op != "mul":
            continue
        sides = [a for a in t.args if isinstance(a, Term)]
        if len(sides) != 2:
            continue
        for mine, other in (sides, sides[::-1]):
            if _reaches_call(mine) and not _reaches_call(other):
                factors |= {id(x) for x in walk(other) if x.op != "input"}
    if not factors:
        return None
    path = {id(x) for x in walk(out)}
    found, negated = None, False
    for t in terms:
        if t.op != "mul" or id(t) not in path:
            continue
        sides = [a for a in t.args if isinstance(a, Term)]
        if len(sides) != 2:
            continue
        for mine, other in (sides, sides[::-1]):
            if any(x is kernel for x in walk(mine)) and not any(x is kernel for x in walk(other)):
                if any(id(x) in factors for x in walk(other) if x.op != "input"):
                    found = found or t
                    negated = negated or any(
                        x.op == "neg" and any(id(y) in factors for y in walk(x))
                        for x in walk(other)
                    )
    return None if found is None else (found, negated)


def _reaches_call(term: Term) -> bool:
    return any(x.op == "call" for x in walk(term))


def _compressors(ctx: Ctx, info) -> list[tuple[str, ModuleRec, str | None]]:
    """(attribute, module, site) of modules of the attention's own whose output the keys
    handed to the kernel are concatenated with."""
    trace = ctx.trace(info.rec, inline=False)
    kernel = _kernel(trace)
    if kernel is None:
        return []
    keys = [strip(t) for t in kernel.args if isinstance(t, Term)][1:2]
    out: list[tuple[str, ModuleRec, str | None]] = []
    for key in keys:
        projections = {id(t) for t in _projected(ctx, key)}
        for cat in walk(key):
            if cat.op != "fn" or cat.name.rsplit(".", 1)[-1] not in _CATS:
                continue
            parts = terms_in(list(cat.args))
            projected = [p for p in parts if _reaches(p, projections)]
            # entries beside the projected keys, computed apart from them
            for part in parts:
                if not projected or _reaches(part, projections):
                    continue
                for call in walk(part):
                    found = _compressor(ctx, info.rec, call)
                    if found is not None and all(m is not found[1] for _, m, _ in out):
                        out.append(found)
    return out


def _compressor(ctx: Ctx, owner: ModuleRec, call: Term):
    module = call.module
    if call.op != "call" or not isinstance(module, ModuleRec):
        return None
    name = _name(owner, module)
    if name is None or ctx.roles.role(module) in _SKIP or _holds_conv(module):
        return None
    if not _holds_weights(module):
        return None
    return name, module, call.site.cite() if call.site else ctx.site(module)


def _projected(ctx: Ctx, key: Term) -> list[Term]:
    """The projections the keys come from, not through another module's call."""
    out, seen, stack = [], set(), [key]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t.op == "call" and isinstance(t.module, ModuleRec):
            role = ctx.roles.role(t.module)
            if role == LINEAR:
                out.append(t)
            if role not in _SKIP:
                continue
        stack.extend(terms_in(list(t.args)))
        stack.extend(terms_in(list(t.kwargs.values())))
    return out


def _reaches(term: Term, ids: set[int]) -> bool:
    return any(id(x) in ids for x in walk(term))


def _indexer(ctx: Ctx, module: ModuleRec, path: str = "", depth: int = 0) -> str | None:
    """The path of a part of `module` whose forward picks by top-k."""
    for name, child in module.children():
        if not isinstance(child, ModuleRec) or child.cls is None:
            continue
        sub = f"{path}.{name}" if path else name
        terms = ctx.trace(child, inline=False).terms
        if any(t.op == "fn" and t.name.rsplit(".", 1)[-1] == "topk" for t in terms):
            return sub
        if depth < 2:
            found = _indexer(ctx, child, sub, depth + 1)
            if found:
                return found
    return None


def _holds_conv(rec: ModuleRec) -> bool:
    if rec.kind in ("Conv1d", "Conv2d"):
        return True
    return any(isinstance(c, ModuleRec) and _holds_conv(c) for _, c in rec.children())


def _holds_weights(rec: ModuleRec, depth: int = 0) -> bool:
    for _, child in rec.children():
        if isinstance(child, ParamRec) and child.kind == "parameter":
            return True
        items = child.items if isinstance(child, ModuleListRec) else [child]
        for item in items:
            if not isinstance(item, ModuleRec):
                continue
            if item.cls is None and item.kind in ("Linear", "Embedding", "Conv1d"):
                return True
            if depth < 3 and _holds_weights(item, depth + 1):
                return True
    return False


def build_shape(rec: ModuleRec, depth: int = 0) -> tuple:
    """The record's class and its submodules' classes, nested (its build, not its sizes)."""
    children = tuple(
        (name, build_shape(child, depth + 1) if depth < 3 else child.kind)
        for name, child in rec.children()
        if isinstance(child, ModuleRec)
    )
    return (rec.kind, children)


def _names(owner: ModuleRec, calls) -> list[str]:
    """The attention's own attributes the calls apply, each once, in order."""
    out = []
    for call in calls:
        name = _name(owner, call.module)
        if name is not None and name not in out:
            out.append(name)
    return out


def _name(owner: ModuleRec, module) -> str | None:
    return next((n for n, child in owner.attrs.items() if child is module), None)


def span(layers: list[int]) -> str:
    runs: list[str] = []
    start = prev = None
    for i in sorted(layers):
        if prev is not None and i == prev + 1:
            prev = i
            continue
        if start is not None:
            runs.append(f"{start}-{prev}" if prev != start else str(start))
        start = prev = i
    if start is not None:
        runs.append(f"{start}-{prev}" if prev != start else str(start))
    return ",".join(runs)
