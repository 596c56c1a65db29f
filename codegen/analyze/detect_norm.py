"""Norms: kind (RMSNorm or LayerNorm, each plain or with `1 + w`), placement in the block, bias.

Kind comes from the norm's own forward (traced): a mean subtracted from the input (or a
call of layer_norm) is a LayerNorm; a reciprocal root of the mean square without it is an
RMSNorm; a weight used as `1 + w` is the offset variant of either. Placement comes from
the decoder layer's forward (traced): where each norm sits relative to the sublayer call
and the residual add.

    pre       x + f(norm(x))
    post      norm(x + f(x))          (or the residual stream itself is normalised)
    sandwich  x + norm(f(norm(x)))
    parallel  x + f_attn(norm(x)) + f_mlp(norm(x))   (the MLP does not see attention's output)
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze import (
    depth_scale,
    layer_norm_eps,
    low_rank_branch,
    norm_cast,
    norm_eps_gap,
    norm_eps_sources,
    residual_affine,
    stream_weights,
)
from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import (
    Term,
    first_output,
    parents,
    primary_input,
    strip,
    terms_in,
    walk,
)
from codegen.analyze.evaluate import ActRec, ModuleRec, ParamRec
from codegen.analyze.features import UNKNOWN, Norm
from codegen.analyze.model import dropped, layer_slots
from codegen.analyze.norm_eps import eps_field, norm_eps
from codegen.analyze.roles import ATTENTION, MIXER, MLP, MOE, NORM
from codegen.analyze.router_dtype import upcast
from codegen.analyze.walk import findall


def _default(rec: ModuleRec, name: str):
    """The default of `name` in the norm class's own `__init__` (nn.LayerNorm's: True);
    "unknown" when it is not a literal."""
    init = rec.cls.methods.get("__init__") if rec.cls is not None else None
    for param in init.params.params + init.params.kwonly_params if init is not None else ():
        if param.name.value == name and param.default is not None:
            if isinstance(param.default, cst.Name) and param.default.value in ("True", "False"):
                return param.default.value == "True"
            return UNKNOWN
    return True


def norm_kind(ctx: Ctx, rec: ModuleRec) -> tuple[str, bool | str]:
    """(kind, has_bias) of one norm record."""
    kind = rec.kind
    if rec.cls is None or (
        rec.ext_base in ("LayerNorm", "RMSNorm")
        and rec.cls is not None
        and not _own_forward(ctx, rec)
    ):
        if kind == "LayerNorm" or rec.ext_base == "LayerNorm":
            has_bias = (
                rec.kwargs.get("bias", True) is not False
                and rec.kwargs.get("elementwise_affine", True) is not False
                and not dropped(rec, "bias")
            )
            return "layernorm", has_bias
        if kind == "RMSNorm" or rec.ext_base == "RMSNorm":
            return "rmsnorm", False
        if kind == "GroupNorm":
            return "layernorm", True
    trace = ctx.trace(rec)
    terms = trace.terms
    inp = next((t for t in terms if t.op == "input" and t.kwargs.get("primary")), None)
    layer = any(_fn(t, "layer_norm", "group_norm") for t in terms)
    rms = any(_fn(t, "rsqrt", "rms_norm", "sqrt") or _root_power(t) for t in terms) or any(
        t.op == "pow" for t in terms
    )
    centred = False
    for t in terms:
        if t.op == "sub" and inp is not None:
            a, b = (t.args + (None, None))[:2]
            if isinstance(b, Term) and any(_fn(x, "mean") for x in walk(b)) and isinstance(a, Term):
                if any(x is inp for x in walk(a)):
                    centred = True
    if _fn_any(terms, "var"):
        centred = True
    offset = False
    for t in terms:
        if t.op == "add":
            consts = [a for a in t.args if isinstance(a, int | float) and not isinstance(a, bool)]
            params = [a for a in t.args if isinstance(a, Term) and a.op == "param"]
            if consts and params and abs(consts[0] - 1.0) < 1e-9:
                offset = True
    params = [p for p in rec.attrs.values() if isinstance(p, ParamRec) and p.kind == "parameter"]
    has_bias = len(params) >= 2
    if not params and rec.ext_base == "LayerNorm":  # nn.LayerNorm's __init__ made them
        values = [rec.kwargs.get(n, _default(rec, n)) for n in ("bias", "elementwise_affine")]
        has_bias = False if False in values else (True if values == [True, True] else UNKNOWN)
    if layer or centred:
        return ("layernorm_offset" if offset else "layernorm"), has_bias
    if rms:
        return ("rmsnorm_offset" if offset else "rmsnorm"), has_bias
    return UNKNOWN, has_bias


def has_weight(ctx: Ctx, rec: ModuleRec) -> bool | str:
    """Whether norm `rec` holds a learned scale: a torch norm unless built with
    `elementwise_affine=False`; a norm of the code's own when it declares a parameter."""
    affine = rec.kwargs.get("elementwise_affine", rec.kwargs.get("affine", True))
    if rec.cls is None or not _own_forward(ctx, rec):
        return affine is not False if rec.kind in ("LayerNorm", "RMSNorm", "GroupNorm") else UNKNOWN
    params = [p for p in rec.attrs.values() if isinstance(p, ParamRec) and p.kind == "parameter"]
    if params:
        return True
    if rec.ext_base in ("LayerNorm", "RMSNorm"):  # nn.LayerNorm's __init__ made them
        default = _default(rec, "elementwise_affine")
        return rec.kwargs.get("elementwise_affine", default)
    return False


def _own_forward(ctx: Ctx, rec: ModuleRec) -> bool:
    return rec.cls is not None and ctx.model.project.find_method(rec.cls, "forward") is not None


def _fn(t: Term, *names: str) -> bool:
    return t.op == "fn" and t.name.rsplit(".", 1)[-1] in names


def _root_power(t: Term) -> bool:
    """`torch.pow(m, -0.5)` / `m.pow(0.5)`: a square root written as a power (gemma4)."""
    return _fn(t, "pow", "float_power") and any(
        isinstance(a, float) and abs(abs(a) - 0.5) < 1e-12 for a in t.args
    )


def _fn_any(terms, name) -> bool:
    return any(_fn(t, name) for t in terms)


def _is_norm_call(ctx: Ctx, term) -> bool:
    term = strip(term)
    return (
        isinstance(term, Term)
        and term.op == "call"
        and isinstance(term.module, ModuleRec)
        and ctx.roles.role(term.module) == NORM
    ) or _gated_product(ctx, term) is not None


def _gated_product(ctx: Ctx, term) -> Term | None:
    """`norm(x) * sigmoid(gate(norm(x)))`, a gated norm's output as the layer's trace inlines
    it: the gate (the operand holding the sigmoid), else None."""
    term = strip(term)
    if not (isinstance(term, Term) and term.op == "mul" and len(term.args) == 2):
        return None
    for normed, gate in (term.args, term.args[::-1]):
        normed = strip(normed)
        if not (
            isinstance(normed, Term)
            and normed.op == "call"
            and isinstance(normed.module, ModuleRec)
            and ctx.roles.role(normed.module) == NORM
            and isinstance(gate, Term)
        ):
            continue
        inner = list(walk(gate))
        if any(t.op == "fn" and t.name.endswith("sigmoid") for t in inner) and any(
            t is normed for t in inner
        ):
            return gate
    return None


def gated_norm(ctx: Ctx, rec: ModuleRec) -> str | None:
    """The norm child of a module that norms its input and multiplies the result by a gate
    computed from it: `y = norm(x); y * sigmoid(mlp(y))` (A.X-K2's gated RMSNorm), by
    attribute name; None for any other module. Placement reads such a module as a norm."""
    if ctx.roles.role(rec) == NORM or rec.cls is None:
        return None
    kids = {id(c): n for n, c in rec.children() if isinstance(c, ModuleRec)}
    norms = [n for n, c in rec.children() if isinstance(c, ModuleRec) and ctx.roles.role(c) == NORM]
    if len(norms) != 1:
        return None
    out = first_output(ctx.trace(rec).result)
    if not isinstance(out, Term):
        return None
    for t in walk(out):
        if t.op != "mul":
            continue
        normed = [a for a in t.args if _is_child_norm(ctx, a, kids)]
        gates = [
            a
            for a in t.args
            if isinstance(a, Term)
            and any(x.op == "fn" and x.name.endswith("sigmoid") for x in walk(a))
        ]
        if normed and gates and any(any(x is normed[0] for x in walk(g)) for g in gates):
            return norms[0]
    return None


def _gated_norms(ctx: Ctx) -> tuple[str | None, dict | None]:
    """The layer norms that are gated norms (`gated_norm`): a line naming them and the class
    of the first, and what a package needs to build them (`gated_parts`); (None, None) when
    there is none."""
    layers: dict[str, list[int]] = {}
    first = None
    for index, layer in enumerate(ctx.model.layers):
        for name, child in layer.children():
            if isinstance(child, ModuleRec) and gated_norm(ctx, child) is not None:
                layers.setdefault(name, []).append(index)
                first = first or child
    if first is None:
        return None, None
    ctx.cite("norm.gated", ctx.class_site(first) or ctx.site(first))
    line = f"{', '.join(layers)}: norm(x) * sigmoid(mlp(norm(x))) ({first.cls.name})"
    return line, _gated_parts(ctx, first, layers)


# torch activation modules a gate's feed-forward may hold, by the name ACT2FN gives them
_ACT_MODULES = {"SiLU": "silu", "GELU": "gelu", "ReLU": "relu", "Sigmoid": "sigmoid"}


def _gated_parts(ctx: Ctx, rec: ModuleRec, layers: dict[str, list[int]]) -> dict:
    """The gated norm's parts: its norm child, the feed-forward computing the gate (its two
    linears in the order they apply, its activation), the config field sizing the gate's
    inner width, whether the sigmoid takes fp32 input, and per layer norm the layers it
    gates: `all`, `moe` (exactly the layers with a MoE block) or `unknown`."""
    count = len(ctx.model.layers)
    moe = {i for i, layer in enumerate(ctx.model.layers) if layer_slots(ctx.model, layer).get(MOE)}
    where = {
        name: "all" if len(found) == count else ("moe" if set(found) == moe else UNKNOWN)
        for name, found in layers.items()
    }
    parts: dict = {"norm": gated_norm(ctx, rec), "layers": where}
    gate = [
        (n, c) for n, c in rec.children() if isinstance(c, ModuleRec) and ctx.roles.role(c) == MLP
    ]
    if len(gate) == 1:
        name, mlp = gate[0]
        linears = [
            (n, c)
            for n, c in mlp.children()
            if isinstance(c, ModuleRec) and c.kind == "Linear" and len(c.args) >= 2
        ]
        acts = [v.name for v in mlp.attrs.values() if isinstance(v, ActRec)]
        acts += [
            _ACT_MODULES[v.external]
            for v in mlp.attrs.values()
            if isinstance(v, ModuleRec) and v.external in _ACT_MODULES
        ]
        if len(linears) == 2:
            inner = linears[0][1]
            call = inner.site.node if inner.site is not None else None
            field = None
            if isinstance(call, cst.Call) and len(call.args) >= 2:
                value = call.args[1].value
                if isinstance(value, cst.Attribute) and isinstance(value.value, cst.Name):
                    field = value.attr.value if value.value.value == "config" else None
            parts.update(
                gate=name,
                linears=(linears[0][0], linears[1][0]),
                rank=inner.args[1],
                rank_field=field,
                act=acts[0] if len(acts) == 1 else UNKNOWN,
            )
    forward = ctx.model.project.find_method(rec.cls, "forward")
    parts["fp32"] = False
    if forward is not None:
        for call in findall(forward[1], m.Call(func=m.Attribute(attr=m.Name("sigmoid")))):
            parts["fp32"] = bool(call.args) and upcast(call.args[0].value)
    return parts


def _is_child_norm(ctx: Ctx, term, kids: dict) -> bool:
    term = strip(term)
    return (
        isinstance(term, Term)
        and term.op == "call"
        and id(term.module) in kids
        and ctx.roles.role(term.module) == NORM
        and isinstance(strip(primary_input(term)), Term)
        and strip(primary_input(term)).op == "input"
    )


def _unscale(term):
    """Drop scalar multiplications (`h * residual_multiplier`)."""
    while isinstance(term, Term) and term.op in ("mul", "div"):
        inner = [a for a in term.args if isinstance(a, Term)]
        if len(inner) != 1:
            break
        term = inner[0]
    return strip(term)


def _sum_operands(term: Term) -> list:
    """Flatten nested additions."""
    out = []
    for a in term.args:
        if isinstance(a, Term) and a.op == "add":
            out.extend(_sum_operands(a))
        else:
            out.append(a)
    return out


def placement(ctx: Ctx, layer: ModuleRec) -> tuple[str, dict]:
    """Norm placement of one decoder layer, with the facts it was derived from."""
    trace = ctx.trace(layer)
    out = first_output(trace.result)
    facts: dict = {"residual_scale": False}
    if out is None:
        return UNKNOWN, facts
    roles = ctx.roles
    calls = [t for t in walk(out) if t.op == "call" and isinstance(t.module, ModuleRec)]
    mixers = [t for t in calls if roles.role(t.module) in (ATTENTION, MIXER)]
    ffns = [t for t in calls if roles.role(t.module) in (MLP, MOE)]
    if not ffns:  # an FFN of bare linears (BERT's intermediate.dense, output.dense)
        from codegen.analyze.detect_ffn import _ffn_linears

        linears = {key for key, _ in _ffn_linears(ctx, layer, "")}
        reached = {id(t) for t in calls}
        ffns = [
            t
            for t in trace.terms
            if t.op == "call" and id(t.module) in linears and id(t) in reached
        ][:1]
    # the feed-forward a gated norm computes its gate with is no sublayer
    gating: set[int] = set()
    for t in walk(out):
        gate = _gated_product(ctx, t)
        if gate is not None:
            gating.update(id(x) for x in walk(gate))
    ffns = [t for t in ffns if id(t) not in gating]
    if not mixers:
        return UNKNOWN, facts
    up = parents(out)
    subs = [("attention", mixers[0])] + ([("mlp", ffns[0])] if ffns else [])
    result = {}
    for label, call in subs:
        inp = primary_input(call)
        pre = _is_norm_call(ctx, inp)
        # climb to the residual add
        node = call
        post_out = False
        scaled = False
        stream_scaled = False  # the residual operand itself scaled (not only the sublayer)
        add = None
        for _ in range(8):
            ps = [p for p in up.get(id(node), []) if p.op != "index" or p.name == "0"]
            if not ps:
                break
            parent = ps[0]
            if parent.op == "index":
                node = parent
                continue
            if _is_norm_call(ctx, parent):
                post_out = parent
                node = parent
                continue
            if parent.op in ("mul", "div"):
                scaled = True
                node = parent
                continue
            if parent.op == "add":
                add = parent
                break
            node = parent
        post_add = False
        stream_normed = False
        if add is not None:
            while True:  # the outermost add of a chain
                ps = [p for p in up.get(id(add), []) if p.op == "add"]
                if not ps:
                    break
                add = ps[0]
            others = [
                o
                for o in _sum_operands(add)
                if isinstance(o, Term) and not any(x is call for x in walk(o))
            ]
            for o in others:
                if any(_unscale(o) is _unscale(x) for x in [inp]) and pre:
                    stream_normed = True
                if isinstance(o, Term) and o.op in ("mul", "div"):
                    if low_rank_branch.is_branch_sum(ctx, layer, o):
                        continue  # the low-rank branch's own division of its sum
                    scaled = True
                    # a scaled operand holding no sublayer call is the residual stream itself
                    # (an earlier sublayer's scaled output, summed in, holds that call)
                    sublayers = [*mixers, *ffns]
                    if not any(x is sub for x in walk(o) for sub in sublayers):
                        stream_scaled = True
            ps = [p for p in up.get(id(add), []) if p.op != "index"]
            if ps and _is_norm_call(ctx, ps[0]):
                post_add = ps[0]
        if stream_scaled:  # beam's depth-scaled sum scales both operands by the layer index
            facts["residual_scale"] = "scaled_stream"
        elif scaled and facts["residual_scale"] is False:
            facts["residual_scale"] = True
        result[label] = {
            "pre": pre,
            "post_out": bool(post_out),
            "post_add": bool(post_add),
            # the norm call after the sublayer (on its output, or on the residual sum)
            "post_norm": post_out or post_add or None,
            "stream_normed": stream_normed,
            "call": call,
            "input": inp,
            "add": add,  # the residual sum the sublayer enters (None: not found)
        }
    facts.update(result)
    parallel = False
    if "mlp" in result:
        mlp_inp = result["mlp"]["input"]
        attn_call = result["attention"]["call"]
        if isinstance(mlp_inp, Term) and not any(x is attn_call for x in walk(mlp_inp)):
            parallel = True
    facts["parallel"] = parallel
    if parallel:
        return "parallel", facts
    kinds = []
    for label, r in result.items():
        if r["stream_normed"] or (r["post_add"] and not r["pre"]):
            kinds.append("post")
        elif r["pre"] and r["post_out"]:
            kinds.append("sandwich")
        elif r["post_out"] and not r["pre"]:
            kinds.append("post")
        elif r["pre"]:
            kinds.append("pre")
        elif label == "mlp" and result["attention"]["post_add"]:
            kinds.append("post")
        else:
            kinds.append(UNKNOWN)
    if all(k == kinds[0] for k in kinds):
        return kinds[0], facts
    if "sandwich" in kinds:
        return "sandwich", facts
    if "post" in kinds and "pre" in kinds:
        ctx.notes.append(
            f"norm: placement differs between sublayers: {dict(zip(result, kinds, strict=False))}"
        )
        return kinds[0], facts
    return UNKNOWN, facts


# house block norms (codegen.transforms.norm_placement.HOUSE_NORMS) by where they sit
_POSITIONS = (
    ("attention", "input", "attention_norm"),
    ("attention", "post_norm", "post_attention_norm"),
    ("mlp", "input", "ffn_norm"),
    ("mlp", "post_norm", "post_ffn_norm"),
)


def block_names(ctx: Ctx, norms: list, facts: dict) -> tuple[tuple[str, str], ...]:
    """(house norm, the layer's attribute name for it) for each norm the layer calls before
    or after a sublayer, read from where the calls sit (glm4's `post_attention_layernorm` is
    the norm before its MLP)."""
    names = {name for name, _ in norms}
    found = []
    for sublayer, key, house in _POSITIONS:
        call = facts.get(sublayer, {}).get(key) if isinstance(facts.get(sublayer), dict) else None
        call = strip(call) if call is not None else None
        if isinstance(call, Term) and _is_norm_call(ctx, call):
            name = _in_layer(ctx, call, _called_attribute(call))
            # one module, one role: a post-LN block's attention post-norm is also what its
            # MLP reads, not a norm of the MLP's own
            taken = {hf for _, hf in found}
            if (name in names or _norm_at(ctx, name)) and name not in taken:
                found.append((house, name))
    return tuple(found)


def _in_layer(ctx: Ctx, call: Term, name: str | None) -> str | None:
    """The called attribute as a path in the layer: a norm called by a submodule's forward
    (BERT-style `attention.ln`, called inside the attention block) gets that submodule's
    path in front."""
    scope = call.site.scope if call.site is not None else None
    layer = ctx.model.layers[0] if ctx.model.layers else None
    if name is None or not isinstance(scope, cst.ClassDef) or layer is None:
        return name
    if layer.cls is not None and scope.name.value == layer.cls.name:
        return name
    # the submodule of that class, up to three levels down (BERT's attention.output, the
    # SelfOutput that norms the attention's residual sum)
    stack = [(path, child, 0) for path, child in layer.children()]
    while stack:
        path, child, depth = stack.pop(0)
        if not isinstance(child, ModuleRec) or child.cls is None:
            continue
        if child.cls.name == scope.name.value:
            return f"{path}.{name}"
        if depth < 2:
            stack += [(f"{path}.{n}", c, depth + 1) for n, c in child.children()]
    return name


def _norm_at(ctx: Ctx, path: str | None) -> bool:
    """The first layer has a norm module at `path` (`attention.output.LayerNorm`)."""
    node = ctx.model.layers[0] if ctx.model.layers and path else None
    for part in path.split(".") if node is not None else ():
        node = node.attrs.get(part) if isinstance(node, ModuleRec) else None
    return isinstance(node, ModuleRec) and ctx.roles.role(node) == NORM


def _past_the_first_layer(ctx: Ctx, first: ModuleRec, place: str, facts: dict):
    """The placement of the second layer when the first one's is unknown because a sublayer
    of it has no norm before it where the others have one (modernbert-decoder's layer 0
    builds nn.Identity for its attention norm): the sublayers it leaves bare are
    `first_layer_bare` in the facts (a pre-norm block; after another placement, unsupported)."""
    later, later_facts = placement(ctx, ctx.model.layers[1])
    if later == UNKNOWN:
        return place, facts
    bare = [
        label
        for label, r in facts.items()
        if isinstance(r, dict)
        and not r.get("pre")
        and isinstance(later_facts.get(label), dict)
        and later_facts[label].get("pre")
    ]
    if not bare:
        return place, facts
    call = facts[bare[0]]["call"]
    where = call.site.cite() if call.site is not None else ctx.class_site(first)
    if later != "pre":
        ctx.unsupported(
            "norm.first_layer",
            f"layer 0 applies no norm before its {bare[0]} (the other layers do: {later})",
            where,
        )
    else:
        ctx.cite("norm.first_layer_bare", f"{where} (layer 0: no norm before {bare[0]})")
    return later, {**later_facts, "first_layer_bare": tuple(bare)}


def _called_attribute(call: Term) -> str | None:
    """`self.<name>(...)` at the call's site: the layer attribute called (records of
    modules built alike are shared, so the record does not tell the norms apart)."""
    node = call.site.node if call.site is not None else None
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        # a norm of a submodule called from its owner (X-MOD's attention block calls
        # `self.output.LayerNorm`): the dotted path below `self`
        parts, func = [], node.func
        while isinstance(func, cst.Attribute):
            parts.insert(0, func.attr.value)
            func = func.value
        if isinstance(func, cst.Name) and func.value == "self":
            return ".".join(parts)
        return node.func.attr.value
    return None


def detect(ctx: Ctx, qk_norms: tuple[ModuleRec, ...] = ()) -> tuple[Norm, dict]:
    """The layers' norms (and the facts of their placement); `qk_norms` are the attention's
    q/k norms, whose epsilon source is recorded beside the block and final norms'."""
    model = ctx.model
    if not model.layers:
        return Norm(), {}
    layer = model.layers[0]
    slots = layer_slots(model, layer)
    norms = slots.get(NORM, [])
    where = ctx.class_site(layer)
    kind: str = UNKNOWN
    bias: bool | str = UNKNOWN
    if norms:
        kinds = [norm_kind(ctx, rec) for _, rec in norms]
        kind, bias = kinds[0]
        if len({k for k, _ in kinds}) > 1:
            ctx.notes.append(
                f"norm: layer norms of different kinds: {sorted({k for k, _ in kinds})}"
            )
        norm_rec = norms[0][1]
        ctx.cite("norm.kind", ctx.class_site(norm_rec) or ctx.site(norm_rec))
        ctx.cite(
            "norm.bias", ctx.attr_site(layer, norms[0][0].split(".")[-1]) or ctx.site(norm_rec)
        )
    else:
        ctx.cite("norm.kind", where)
    weight = has_weight(ctx, norms[0][1]) if norms else UNKNOWN
    if norms:
        ctx.cite("norm.weight", ctx.class_site(norms[0][1]) or ctx.site(norms[0][1]))
    place, facts = placement(ctx, layer)
    if place == UNKNOWN and len(model.layers) > 1:
        place, facts = _past_the_first_layer(ctx, layer, place, facts)
    if facts.get("residual_scale") == "scaled_stream":
        later = [placement(ctx, rec)[1] for rec in model.layers[1 : depth_scale.LAYERS_CHECKED]]
        if depth_scale.is_depth_scaled([facts, *later]):
            facts["residual_scale"] = "depth_scaled"
        elif (weights := stream_weights.read(layer, facts)) is not None:
            facts["residual_scale"] = "learned_stream"
            facts["stream_weights"] = weights
    elif facts.get("residual_scale") is False and facts.get("attention"):
        out = first_output(ctx.trace(layer).result)
        if (affine := residual_affine.read(ctx, layer, facts, out)) is not None:
            facts["residual_scale"] = "affine"
            facts["residual_affine"] = affine
    site = None
    for key in ("attention", "mlp"):
        call = facts.get(key, {}).get("call") if isinstance(facts.get(key), dict) else None
        if call is not None and call.site is not None:
            site = call.site.cite()
            break
    ctx.cite("norm.placement", site or where)
    _ = terms_in
    sources = norm_eps_sources.read(ctx, [rec for _, rec in norms], list(qk_norms))
    layer_eps = layer_norm_eps.detect(ctx, sources)
    norm_eps_gap.check(ctx, sources)
    eps, field, eps_site = _norm_eps(ctx, norms[0][1] if norms else None, sources, layer_eps)
    if eps is not None:
        ctx.cite("norm.eps", f"{ctx.class_site(norms[0][1])} (eps {eps} in the code)")
    if field is not None:
        ctx.cite("norm.eps_field", f"{eps_site} (eps=config.{field})")
    cast_last = norm_cast.weight_in_fp32(ctx, norms[0][1]) if norms else None
    ctx.cite(
        "norm.weight_fp32",
        f"{cast_last} (weight times fp32 values, cast last)" if cast_last else where,
    )
    gated, gated_parts = _gated_norms(ctx)
    return Norm(
        kind=kind,
        placement=place,
        gated=gated,
        gated_parts=gated_parts,
        bias=bias,
        weight=weight,
        eps=eps,
        eps_field=field,
        layer_eps=layer_eps,
        eps_sources=norm_eps_sources.describe(ctx, sources),
        weight_fp32=cast_last is not None and kind == "rmsnorm",
        block_names=block_names(ctx, norms, facts),
        first_layer_bare=facts.get("first_layer_bare", ()),
    ), facts


def _norm_eps(ctx: Ctx, block: ModuleRec | None, sources: dict, layer_eps: float | None):
    """(the code's constant, the config field, the field's site) of the epsilon a package's
    `norm_eps` stands for: the block norms', or the final norm's where the block norms are
    at a number of their own (`layer_eps`: they read `layer_norm_eps` then)."""
    if layer_eps is not None:
        final = sources["final"][0]
        return None, final.field, final.site
    if block is None:
        return None, None, None
    return _constant_eps(ctx, block), eps_field(ctx, block), ctx.site(block)


def _constant_eps(ctx: Ctx, rec: ModuleRec) -> float | None:
    """The norm's epsilon when it is the code's own constant: no config field holds it."""
    eps = norm_eps(ctx, rec)
    config = ctx.model.config
    values = config.attrs.values() if config is not None else ()
    if eps is None or any(_same_number(value, eps) for value in values):
        return None
    return eps


def _same_number(value, eps: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == eps
