"""Feed-forward: gated or not, activation, bias, gate/up fusion.

The FFN forward is traced. A product of two branches that come from *different* projections
(or different halves / even-odd slices of one fused projection) is a gate; the activation on
the gate branch names the kind (silu -> swiglu, gelu -> geglu; a sigmoid with clamped branches
-> clamped_swiglu; a silu with clamped branches -> clamped_silu_glu). `x * sigmoid(x)`-style
products of one branch with itself are activations, not gates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from codegen.analyze.act_dtype import fp32_gated_product_site
from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, primary_input, terms_in, walk
from codegen.analyze.evaluate import (
    ActRec,
    ModuleListRec,
    ModuleRec,
    ParamRec,
    Site,
    TableLookup,
    read_field,
)
from codegen.analyze.features import UNKNOWN, Ffn
from codegen.analyze.gelu_tanh import computes_gelu_tanh
from codegen.analyze.logn_scale import config_field, config_reads
from codegen.analyze.model import layer_slots, linear_bias
from codegen.analyze.roles import (
    ACT,
    ATTENTION,
    EXPERTS,
    LINEAR,
    MIXER,
    MLP,
    MOE,
    NORM,
    OTHER,
    ROUTER,
)
from codegen.analyze.router_dtype import _cast_locals, upcast
from codegen.analyze.source import ClassInfo
from codegen.analyze.walk import findall
from codegen.analyze.written_activation import body_of, is_activation_shaped, written_activation

_GELU = (
    "gelu",
    "gelu_new",
    "gelu_fast",
    "gelu_pytorch_tanh",
    "gelu_python",
    "quick_gelu",
    "gelu_accurate",
)
_SILU = ("silu", "swish")
_QUICK_GELU = ("quick_gelu",)  # x * sigmoid(1.702 x): a GELU by its kind (geglu, gelu_mlp)
_RELU2 = ("relu2", "relu_squared", "relu2_fn", "squared_relu")
_PLAIN = ("relu", "relu6", "tanh", "sigmoid", "silu", "swish")  # ungated: an `mlp`


@dataclass
class FfnInfo:
    kind: str = UNKNOWN
    activation: str = UNKNOWN
    activation_field: str | None = None  # the config field the activation is looked up by
    activation_site: str | None = None  # where it is looked up
    activation_by_name: bool = False  # looked up in HF's ACT2FN, not a model-local table
    bias: bool | str = UNKNOWN
    fused: bool | str = UNKNOWN
    layout: str = UNKNOWN
    intermediate: int | None = None
    width_field: str | None = None  # the config field `intermediate` is, passed as it is
    site: str | None = None
    sub_norm: str | None = None  # where a norm inside the feed-forward is called
    # clamped_silu_glu: the gate clamped before its silu (DeepSeek-V4), not after (Step-3.5)
    clamp_first: bool = False
    softcaps: tuple[float, float] | None = None  # softcapped_swiglu: (gate cap, up cap)


class _Sources:
    """Which projections (linear modules / parameters, with slice tags) a term derives from."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.memo: dict[int, frozenset] = {}

    def of(self, term) -> frozenset:
        if not isinstance(term, Term):
            return frozenset()
        key = id(term)
        if key in self.memo:
            return self.memo[key]
        self.memo[key] = frozenset()
        out: set = set()
        role = self.ctx.roles.role(term.module) if isinstance(term.module, ModuleRec) else None
        if term.op == "call" and role in (LINEAR, EXPERTS):
            # an experts module called on grouped rows is one stacked projection (JetMoE's
            # `input_linear`: each expert's slice of a [experts, out, in] weight)
            out.add(("lin", id(term.module)))
        elif term.op == "param" and isinstance(term.module, ParamRec):
            out.add(("param", id(term.module)))
        elif _is_weight_product(term):
            # x @ W / F.linear(x, W) with W a weight passed in as an argument
            for a in terms_in(list(term.args)):
                out |= self.of(a)
            for w in terms_in(list(term.args))[1:]:
                if w.op == "input" and not w.kwargs.get("primary"):
                    out.add(("input", id(w)))
        elif term.op == "index" and term.name not in ("iter", "?", "UNKNOWN") and term.args:
            inner = self.of(term.args[0])
            tagged = term.name if not term.name.startswith("?") else ""
            if tagged and _is_slice_tag(tagged):
                out |= {(kind, ident, tagged) for kind, ident, *_ in inner}
            else:
                out |= inner
        else:
            for a in terms_in(list(term.args)):
                out |= self.of(a)
        result = frozenset(out)
        self.memo[key] = result
        return result


def _is_weight_product(term: Term) -> bool:
    if term.op == "matmul":
        return True
    return term.op == "fn" and term.name.rsplit(".", 1)[-1] in ("matmul", "linear", "bmm", "mm")


def _is_slice_tag(tag: str) -> bool:
    return tag.isdigit() or ":" in tag


def _base(sources: frozenset) -> set:
    return {(s[0], s[1]) for s in sources}


# the label an unknown written-out activation is reported under, and the part to rewrite
FFN_ACTIVATION = "ffn.activation"
_REWRITE = {FFN_ACTIVATION: "the MLP", "head.transform_activation": "the head's transform"}


def applied_activations(ctx: Ctx, terms: list[Term], feature: str = FFN_ACTIVATION) -> list[ActRec]:
    """Each activation `terms` apply, in order: its name, where, and the config field it is
    looked up by (`ACT2FN[config.<field>]`, a model-local table `ACTS[config.<field>]`). A
    function or module written out in the analysed sources counts once, by what it computes,
    never by an op inside it; one computing no known activation is reported unsupported
    under `feature`, the label of the part applying it (a key of `_REWRITE`)."""
    written = [t for t in terms if _written_out(t)]
    inside = set().union(*(body_of(t, t.written_from) for t in written))
    found = []
    for t in terms:
        if id(t) in inside or (name := _act_name(ctx, [t], feature)) is None:
            continue
        lookup = _act_lookup(ctx, [t])
        field = lookup.field if lookup is not None else None
        site = lookup.site if lookup is not None and lookup.site is not None else t.site
        found.append(ActRec(name, site, field))
    return found


def _act_name(ctx: Ctx, terms: list[Term], feature: str | None = FFN_ACTIVATION) -> str | None:
    """The name of the activation `terms` apply, or None; an unknown written-out one is
    "custom", reported unsupported under `feature` (None: not reported, only named)."""
    written = [t for t in terms if _written_out(t)]
    inside = set().union(*(body_of(t, t.written_from) for t in written))
    for t in terms:
        if id(t) in inside:
            continue  # an op of a written-out activation: the whole function names it
        if _written_out(t):
            return _written_name(ctx, t, feature)
        if t.op == "act" and isinstance(t.module, ActRec):
            name = t.module.name
            return name if isinstance(name, str) else UNKNOWN
        if t.op == "fn":
            last = t.name.rsplit(".", 1)[-1]
            if last in _SILU + _GELU + ("relu", "tanh", "sigmoid", "softplus", "mish", "relu6"):
                return last
        if (
            t.op == "call"
            and isinstance(t.module, ModuleRec)
            and t.module.kind
            in (
                "GELU",
                "SiLU",
                "ReLU",
                "Tanh",
                "Sigmoid",
                "Mish",
            )
        ):
            return {"GELU": "gelu", "SiLU": "silu", "ReLU": "relu"}.get(
                t.module.kind, t.module.kind.lower()
            )
        if (
            t.op == "call"
            and isinstance(t.module, ModuleRec)
            and t.module.cls is not None
            and ctx.roles.role(t.module) in (ACT, OTHER)
        ):
            if computes_gelu_tanh(t.module.cls.sf, t.module.cls):
                return "gelu_pytorch_tanh"  # written out by hand (bloom)
            return "custom"  # an activation module of the model's own (e.g. xIELU)
    return None


def _written_out(t: Term) -> bool:
    """`t` is returned by a function of the analysed sources computing an activation of its
    one tensor input (elementwise, with a nonlinear op)."""
    if t.written_from is None:
        return False
    if t.op in ("act", "fn") and terms_in(list(t.args)) == [t.written_from]:
        return False  # one named activation applied to the input: named as it is
    return is_activation_shaped(t, t.written_from)


def _written_name(ctx: Ctx, t: Term, feature: str | None) -> str:
    """The known activation a written-out function computes; another one is named
    unsupported under `feature` (never taken for an op it contains)."""
    name = written_activation(t, t.written_from)
    if name is not None or feature is None:
        return name or "custom"
    ctx.unsupported(
        feature,
        "a function of the model's own computing none of the known activations (silu, gelu,"
        " gelu tanh, quick_gelu, relu, relu2, sigmoid, tanh): write"
        f" {_REWRITE[feature]} with one of them",
        t.written_site.cite() if t.written_site is not None else None,
    )
    return "custom"


def _refuse_written_gate(ctx: Ctx, terms: list[Term], product: Term) -> None:
    """A function or module of the analysed sources taking several tensors and returning the
    gated `product` (`own_glu(up, gate)`: an activation written on two inputs) is named
    unsupported where it is called: only an activation of one tensor is read by its values."""
    for t in terms:
        by = t.written_by
        if by is not None and t.written_from is None and any(x is product for x in walk(t)):
            defined = by.cite() if isinstance(by, ClassInfo) else Site(by.sf, by.node).cite()
            ctx.unsupported(
                "ffn.activation",
                f"{by.name} ({defined}) takes several tensors and computes the gated product"
                " itself: only an activation of one tensor is read (write the MLP as"
                " act(gate) * up, act a function of one tensor)",
                t.written_site.cite() if t.written_site is not None else None,
            )
            return


def _act_lookup(ctx: Ctx, terms: list[Term]) -> ActRec | TableLookup | None:
    """The lookup of the activation `_act_name` names among `terms`, when the code looks it
    up by a config field (`ACT2FN[config.<field>]`, `get_activation(config.<field>)`, a
    model-local table `ACTS[config.<field>]` whatever its entry: a function, a module, a
    class), else None."""
    for t in terms:
        if _act_name(ctx, [t], feature=None) is not None:
            if t.op == "act" and isinstance(t.module, ActRec) and t.module.field:
                return t.module
            return t.picked
    return None


def _note_lookup(ctx: Ctx, info: FfnInfo, *term_lists: list[Term]) -> None:
    """Record the config field the activation `info` names was looked up by, and where."""
    named = next((terms for terms in term_lists if _act_name(ctx, terms) is not None), [])
    found = _act_lookup(ctx, named)
    if found is not None:
        info.activation_field = found.field
        info.activation_by_name = isinstance(found, ActRec)
        info.activation_site = found.site.cite() if found.site is not None else info.site


def analyse(ctx: Ctx, rec: ModuleRec, inputs: dict | None = None) -> FfnInfo:
    """Trace one FFN-like module (dense MLP or an experts block)."""
    info = FfnInfo(site=ctx.class_site(rec))
    trace = ctx.trace(rec, inputs=inputs)
    terms = trace.terms
    sources = _Sources(ctx)
    gate_pairs = []
    for t in terms:
        if t.op != "mul":
            continue
        a, b = (
            [x for x in t.args if isinstance(x, Term)][:2]
            if len(terms_in(list(t.args))) >= 2
            else (None, None)
        )
        if a is None:
            continue
        sa, sb = sources.of(a), sources.of(b)
        if sa and sb and sa != sb and not (sa <= sb or sb <= sa):
            gate_pairs.append((t, a, b, sa, sb))
    lin_mods = {
        id(t.module): t.module
        for t in terms
        if t.op == "call" and isinstance(t.module, ModuleRec) and ctx.roles.role(t.module) == LINEAR
    }
    param_used = {
        id(t.module): t.module for t in terms if t.op == "param" and isinstance(t.module, ParamRec)
    }
    if not lin_mods and not param_used and not gate_pairs:
        if not any(_is_weight_product(t) for t in terms):
            return info
    act_terms = [t for t in terms if t.op in ("act", "fn", "call") or t.written_from is not None]
    own = ctx.roles.role(rec) in (MLP, EXPERTS)  # not a decoder layer holding it inline
    linear_calls = [t for t in terms if t.op == "call" and id(t.module) in lin_mods]
    for t in terms if own else ():  # a norm inside the feed-forward (before down)
        if (
            t.op == "call"
            and isinstance(t.module, ModuleRec)
            and ctx.roles.role(t.module) == NORM
            # after a projection: the norm a layer applies to its input first is the pre-norm
            and any(x is lin for lin in linear_calls for x in walk(t) if x is not t)
        ):
            info.sub_norm = t.site.cite() if t.site else info.site
            break
    if gate_pairs:
        t, a, b, sa, sb = gate_pairs[0]
        info.site = t.site.cite() if t.site else info.site
        act_a = [x for x in walk(a) if x.op in ("act", "fn", "call") or x.written_from is not None]
        act_b = [x for x in walk(b) if x.op in ("act", "fn", "call") or x.written_from is not None]
        act = _act_name(ctx, act_a) or _act_name(ctx, act_b)
        _note_lookup(ctx, info, act_a, act_b)
        written = any(_written_out(x) for x in (*act_a, *act_b))
        custom = not written and (_custom_swish(a) or _custom_swish(b))
        if act is None and custom:
            act = "custom"
        if act is None:
            _refuse_written_gate(ctx, terms, t)
        info.activation = act or UNKNOWN
        clamped = any(x.op == "fn" and x.name == "clamp" for x in (*walk(a), *walk(b)))
        caps = _softcaps(sources, a, b) if act == "sigmoid" and not clamped else None
        if act == "sigmoid" and clamped:
            info.kind = "clamped_swiglu"  # gate * sigmoid(alpha * gate) on clamped gate/up
        elif caps is not None:
            info.kind, info.softcaps = "softcapped_swiglu", caps  # inkling2's experts
        elif act in _SILU and not custom and any(_bounded_clamp(x) for x in (*walk(a), *walk(b))):
            info.kind = "clamped_silu_glu"  # silu(clamped gate) * clamped up (DeepSeek-V4)
            info.clamp_first = _clamped_before_act(a) or _clamped_before_act(b)
        elif act in _SILU and not custom:
            info.kind = "swiglu"
        elif act is not None and (act.startswith("gelu") or act in _QUICK_GELU) and not custom:
            info.kind = "geglu"
        elif act in _RELU2 + _PLAIN and not custom:
            info.kind = "glu"  # gated, with another elementwise activation (bitnet's relu2)
        else:
            info.kind = "other" if act is not None else UNKNOWN
        fused = bool(_base(sa) & _base(sb))
        info.fused = fused
        if fused:
            tags = {s[2] for s in sa | sb if len(s) > 2}
            info.layout = (
                "interleaved"
                if any(tag.count(":") >= 2 and tag.endswith(":2") for tag in tags)
                else "concat"
            )
        else:
            info.layout = "separate"
    else:
        act = _act_name(ctx, act_terms)
        _note_lookup(ctx, info, act_terms)
        info.activation = act or UNKNOWN
        squared = any(
            (t.op == "pow" and 2 in t.args)
            or (t.op == "fn" and t.name.rsplit(".", 1)[-1] == "square")
            for t in terms
        )
        if act in _RELU2 or (act == "relu" and squared):
            info.kind = "relu2"
        elif act is not None and (act.startswith("gelu") or act in _QUICK_GELU):
            info.kind = "gelu_mlp"
        elif act == "xielu":
            info.kind = "xielu_mlp"  # its activation carries learned slopes
        elif act in _PLAIN:
            info.kind = "mlp"  # the same two layers with another elementwise activation (OPT)
        elif act is not None:
            info.kind = "other"
        info.fused = False
        info.layout = "none"
    flags = [linear_bias(m) for m in lin_mods.values()]
    if flags and all(f is not None for f in flags):
        info.bias = any(flags)
    else:
        # fused expert tensors: a bias is a parameter added to a projection output
        added = any(
            t.op == "add"
            and any(
                isinstance(x, Term)
                and x.op in ("param", "index")
                and sources.of(x)
                and _only_params(sources.of(x))
                for x in t.args
            )
            and any(isinstance(x, Term) and x.op in ("matmul", "fn") for x in t.args)
            for t in terms
        )
        info.bias = added
    # an MLP module of its own: its first projection's width; a layer holding the FFN inline
    # traces other projections too (BERT's attention output first): its up projection's
    up = None if own else _inline_up(ctx, rec, terms)
    first = up or next(iter(lin_mods.values()), None)
    if first is not None:
        out = _out_features(first)
        if isinstance(out, int):
            info.intermediate = out // 2 if info.fused is True else out
            named = (own or up is not None) and info.fused is not True
            info.width_field = read_field(out) if named else None
    return info


def _out_features(linear: ModuleRec):
    """The output width a linear module was built with (its evaluated argument)."""
    args = list(linear.args)
    if linear.kind == "Conv1D":  # transformers' Conv1D(nf=out, nx=in)
        args = args[1:2] + args[:1]
    return args[1] if len(args) > 1 else linear.kwargs.get("out_features")


def _inline_up(ctx: Ctx, layer: ModuleRec, terms: list[Term]) -> ModuleRec | None:
    """The up projection of an FFN a decoder layer holds inline (OPT's fc1, BERT's
    `intermediate.dense`): the one linear outside the attention's subtrees whose output an
    activation carries into another such linear (fc1 -> act -> fc2). The attention's output
    projection feeds none that way, so its width is never taken for the FFN's."""
    ffn = {ident for ident, _ in _ffn_linears(ctx, layer, "")}
    ups: dict[int, ModuleRec] = {}
    for down in terms:
        if down.op != "call" or id(down.module) not in ffn or primary_input(down) is None:
            continue
        for act in walk(primary_input(down)):
            if _act_name(ctx, [act], feature=None) is None:
                continue
            for up in walk(act):
                if up.op == "call" and id(up.module) in ffn and up.module is not down.module:
                    ups[id(up.module)] = up.module
    return next(iter(ups.values())) if len(ups) == 1 else None


def _clamped_later(ctx: Ctx, dense: list, info: FfnInfo) -> None:
    """A SwiGLU clamped only on later layers (Step-3.5's per-layer limits, unbounded on the
    first): the kind is the clamped one, cited where. Read only when the first layer's
    product holds a clamp at all."""
    first = ctx.trace(dense[0][1]).terms
    if not any(t.op == "fn" and t.name == "clamp" for t in first):
        return
    for _, rec, _ in dense[1:]:
        found = next((t for t in ctx.trace(rec).terms if _bounded_clamp(t)), None)
        if found is not None:
            info.kind = "clamped_silu_glu"
            info.site = found.site.cite() if found.site else info.site
            return


def _experts_clamp(ctx: Ctx, experts: ModuleRec, dense: FfnInfo) -> str | None:
    """The config field of routed experts' (stacked tensors) clamp beside a dense MLP that
    has none (HY-V4's `silu(gate.clamp(max=l)) * up.clamp(-l, l)`, l = self.<attr> set from
    `config.<field>`): `ffn.kind` is read from the dense MLP, so the experts' own clamp is
    a fact of its own. Another clamped form is named unsupported."""
    own = analyse_experts(ctx, experts)
    if own is None or not own.kind.startswith("clamped"):
        return None
    if own.kind == dense.kind and own.kind != "clamped_silu_glu":
        return None  # gpt_oss's clamped SwiGLU everywhere: ffn.kind's own rule
    field = _clamp_field(experts) if own.kind == "clamped_silu_glu" and own.clamp_first else None
    if field is None:
        ctx.unsupported(
            "ffn.experts_clamp",
            f"routed experts whose gated product is {own.kind} (clamped branches) beside a"
            f" {dense.kind} MLP, other than silu(gate.clamp(max=l)) * up.clamp(-l, l)"
            " with l a config field: no rule yet",
            own.site,
        )
        return None
    ctx.cite("ffn.experts_clamp", own.site)
    return field


def _mlp_clamp(ctx: Ctx, mlp: ModuleRec, info: FfnInfo) -> str | None:
    """The config field of the dense (or shared) MLP's clamp, `silu(gate.clamp(max=l)) *
    up.clamp(-l, l)` with `self.l = config.<field>` (DeepSeek-V4's swiglu_limit); another
    clamped form (clamped after the silu, a bound per layer: Step-3.5) is named unsupported."""
    field = _clamp_field(mlp) if info.clamp_first else None
    if field is None:
        ctx.unsupported(
            "ffn.clamp",
            "a SwiGLU whose branches are clamped otherwise than silu(gate.clamp(max=l)) *"
            " up.clamp(-l, l) with l one config field (the gate clamped after the silu, or a"
            " bound per layer: Step-3.5's swiglu_limits): no rule yet",
            info.site,
        )
        return None
    ctx.cite("ffn.clamp", info.site)
    return field


def _shared_unclamped(ctx: Ctx, moe: ModuleRec, mlp: ModuleRec, dense: FfnInfo, clamp) -> bool:
    """The MoE's shared expert beside a dense MLP (`ffn.kind` is the dense MLP's): True where
    it is a class of its own whose plain SwiGLU is not clamped while the dense MLP's is
    (`clamp`: its bound); False where it is the dense MLP's class, or clamps as it does.
    Clamped where the dense MLP is not, or otherwise than it is: named unsupported."""
    shared = shared_mlps(ctx, moe)
    if not shared or shared[0][1].cls is mlp.cls:
        return False
    own = analyse(ctx, shared[0][1])
    clamped = own.kind.startswith("clamped")
    if dense.kind == "clamped_silu_glu" and clamp is not None:
        if own.kind == "swiglu":
            said = f"{shared[0][0]}: {shared[0][1].cls.name}, its SwiGLU unclamped"
            ctx.cite("ffn.shared_unclamped", f"{own.site} ({said})")
            return True
        if own.kind == dense.kind and own.clamp_first and _clamp_field(shared[0][1]) == clamp:
            return False
    elif not clamped:
        return False
    ctx.unsupported(
        "ffn.shared_clamp",
        f"a shared expert of a class of its own whose gated product is {own.kind} beside a"
        f" {dense.kind} dense MLP (clamped where that is not, or otherwise): no rule yet",
        own.site,
    )
    return False


def _clamp_field(experts: ModuleRec) -> str | None:
    """`config.<field>` of the one `self.<attr>` the module's methods clamp the gate to
    (`max=self.<attr>`) and the up branch within (`min=-self.<attr>, max=self.<attr>`)."""
    cls = experts.cls
    if cls is None:
        return None
    limit = m.Attribute(value=m.Name("self"))
    attrs = set()
    for method in cls.methods.values():
        for call in m.findall(method, m.Call(func=m.Attribute(attr=m.Name("clamp")))):
            bounds = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
            upper = bounds.get("max")
            if m.matches(upper, limit):
                attrs.add(upper.attr.value)
    init = cls.methods.get("__init__")
    if len(attrs) != 1 or init is None:
        return None
    (attr,) = attrs
    sources = m.findall(
        init,
        m.Assign(
            targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name(attr)))],
            value=m.Attribute(value=m.Name("config")),
        ),
    )
    return sources[0].value.attr.value if len(sources) == 1 else None


def _clamped_before_act(branch: Term) -> bool:
    """The branch is an activation of a clamped value, with no clamp after it:
    `silu(gate.clamp(max=l))`, not `silu(gate).clamp(max=l)`."""
    acts = [
        x
        for x in walk(branch)
        if x.op == "act" or (x.op == "fn" and x.name.rsplit(".", 1)[-1] in _SILU)
    ]
    if len(acts) != 1:
        return False
    inside = {id(x) for x in walk(acts[0])}
    clamps = [x for x in walk(branch) if _bounded_clamp(x)]
    return bool(clamps) and all(id(x) in inside for x in clamps)


def _softcap(term: Term) -> tuple[Term, float] | None:
    """(x, cap) of `tanh(x / cap) * cap` (either factor order), cap a number; else None."""
    if term.op != "mul" or len(term.args) != 2:
        return None
    for tanh, cap in (term.args, term.args[::-1]):
        if not (isinstance(tanh, Term) and tanh.op == "fn" and tanh.name.endswith("tanh")):
            continue
        inner = tanh.args[0] if tanh.args else None
        if not (isinstance(cap, (int, float)) and isinstance(inner, Term) and inner.op == "div"):
            continue
        if len(inner.args) == 2 and inner.args[1] == cap and isinstance(inner.args[0], Term):
            return inner.args[0], float(cap)
    return None


def _softcaps(sources: _Sources, a: Term, b: Term) -> tuple[float, float] | None:
    """(gate cap, up cap) where the gated product is `softcap(g) * sigmoid(g) *
    softcap(u)`: the sigmoid of the raw gate times tanh softcaps of the gate and of up, no
    other activation on either branch; else None."""
    terms = [*walk(a), *walk(b)]
    sigmoids = [t for t in terms if t.op in ("fn", "act") and _act_name_of(t) == "sigmoid"]
    caps = [found for t in terms if (found := _softcap(t)) is not None]
    if len(sigmoids) != 1 or len(caps) != 2 or not sigmoids[0].args:
        return None
    gate = sources.of(sigmoids[0].args[0])
    by_branch = {sources.of(x) == gate: cap for x, cap in caps}
    if set(by_branch) != {True, False} or not gate:
        return None
    return by_branch[True], by_branch[False]


def _act_name_of(t: Term) -> str | None:
    if t.op == "act":
        return getattr(t.module, "name", None)
    return t.name.rsplit(".", 1)[-1]


def softcap_fields(ctx: Ctx, experts: ModuleRec, caps: tuple[float, float]) -> dict | None:
    """`ffn.softcaps` of a softcapped_swiglu in `experts`: each cap's config read (the one
    config read of the experts' and their children's `__init__`s holding its value) and
    whether a method of theirs upcasts both inputs before the sigmoid; None where a cap's
    read is not found or not unique."""
    project = ctx.model.project
    classes = [experts.cls] + [
        r.cls for _, r in _all_children(experts) if isinstance(r, ModuleRec) and r.cls
    ]
    inits = [f[1] for c in classes if (f := project.find_method(c, "__init__")) is not None]
    reads = config_reads(ctx.model.config, *inits)
    gate, up = (config_field(cap, reads) for cap in caps)
    if gate is None or up is None or gate == up:
        return None
    methods = [fn for c in classes for fn in c.methods.values()]
    return {"gate": gate, "up": up, "fp32": any(_upcast_sigmoid(fn) for fn in methods)}


def _all_children(rec: ModuleRec):
    for name, child in rec.children():
        yield name, child
        if isinstance(child, ModuleRec):
            yield from _all_children(child)


def _upcast_sigmoid(fn) -> bool:
    """`fn` takes a sigmoid of a tensor it upcast to fp32 and casts its return back: its
    inputs reassigned from `.float()` casts (`gate, up = gate.float(), up.float()`)."""
    casts = set(_cast_locals(fn))
    for node in findall(fn, m.Assign(targets=[m.AssignTarget(target=m.Tuple())])):
        value = node.value
        if isinstance(value, cst.Tuple):
            names = [e.value for e in node.targets[0].target.elements]
            for name, item in zip(names, value.elements, strict=False):
                if isinstance(name, cst.Name) and upcast(item.value, frozenset(casts)):
                    casts.add(name.value)
    sigmoid = m.Call(func=m.Attribute(attr=m.Name("sigmoid")) | m.Name("sigmoid"))
    return any(
        call.args and upcast(call.args[0].value, frozenset(casts)) for call in findall(fn, sigmoid)
    )


def _bounded_clamp(term: Term) -> bool:
    """A clamp with a finite bound under this config (Step-3.5's `clamp(max=inf)` on the
    layers its config leaves unbounded changes nothing); a bound not read counts."""
    if term.op != "fn" or term.name != "clamp":
        return False
    bounds = [*term.args[1:], *term.kwargs.values()]
    return any(not isinstance(b, int | float) or math.isfinite(b) for b in bounds if b is not None)


def _only_params(sources) -> bool:
    return all(s[0] == "param" for s in sources)


def _custom_swish(term: Term) -> bool:
    """`x * sigmoid(x * alpha)` written inline (a custom gated activation)."""
    for t in walk(term):
        if t.op == "mul":
            for x in t.args:
                if isinstance(x, Term) and x.op == "fn" and x.name.rsplit(".", 1)[-1] == "sigmoid":
                    return True
    return False


def ffn_modules(ctx: Ctx) -> dict:
    """Per layer: ('mlp' | 'moe', record, path)."""
    out = {}
    for i, layer in enumerate(ctx.model.layers):
        slots = layer_slots(ctx.model, layer)
        if slots.get(MOE):
            path, rec = slots[MOE][0]
            out[i] = (MOE, rec, path)
        elif slots.get(MLP):
            path, rec = slots[MLP][0]
            out[i] = (MLP, rec, path)
        elif _inline_linears(ctx, layer) >= 2:
            out[i] = ("inline", layer, "")  # fc1/fc2 written directly in the layer
    return out


def _inline_linears(ctx: Ctx, layer: ModuleRec) -> int:
    """Linear layers of a decoder layer outside its token mixer (an inline feed-forward)."""
    count = 0
    for _, child in layer.children():
        if isinstance(child, ModuleRec):
            role = ctx.roles.role(child)
            if role == LINEAR:
                count += 1
            elif role in ("container", "other"):
                count += sum(
                    1
                    for _, g in child.children()
                    if isinstance(g, ModuleRec) and ctx.roles.role(g) == LINEAR
                )
        elif isinstance(child, ModuleListRec):
            count += sum(
                1 for g in child.items if isinstance(g, ModuleRec) and ctx.roles.role(g) == LINEAR
            )
    return count


def experts_of(ctx: Ctx, moe: ModuleRec):
    for name, child in moe.children():
        if isinstance(child, ModuleRec) and ctx.roles.role(child) == EXPERTS:
            return name, child
        if isinstance(child, ModuleListRec) and child.items:
            if all(isinstance(x, ModuleRec) and ctx.roles.role(x) == MLP for x in child.items[:2]):
                if len(child.items) > 1:
                    return name, child
    return None, None


def _projection_experts(ctx: Ctx, moe: ModuleRec) -> list[str]:
    """The MoE's children that are each one stacked projection of every expert (JetMoE's
    `input_linear` / `output_linear`), the gated product written in the MoE's own forward.
    A child holding several stacked weights is a whole set of experts (inkling's stacked
    shared experts), not one projection of them."""
    return [
        name
        for name, child in moe.children()
        if isinstance(child, ModuleRec)
        and ctx.roles.role(child) == EXPERTS
        and sum(_stacked(p) for _, p in child.children()) <= 1
    ]


def _stacked(p) -> bool:
    """A weight stacked over experts: a parameter of three dimensions."""
    return isinstance(p, ParamRec) and isinstance(p.shape, tuple) and len(p.shape) == 3


def stacked_projections(ctx: Ctx) -> dict | None:
    """{"router", "gate_up", "down", "bias"} (paths in the MoE) of a MoE whose forward runs the
    gated product over two stacked projection modules, gate/up first (defined and called in
    that order), with one router holding one linear and at most one parameter of its own
    added to the merged output; None for any other MoE."""
    moes = [rec for role, rec, _ in ffn_modules(ctx).values() if role == MOE]
    if not moes:
        return None
    moe = moes[0]
    projections = _projection_experts(ctx, moe)
    routers = [
        n for n, c in moe.children() if isinstance(c, ModuleRec) and ctx.roles.role(c) == ROUTER
    ]
    biases = [n for n, c in moe.children() if isinstance(c, ParamRec)]
    if len(projections) != 2 or len(routers) != 1 or len(biases) > 1:
        return None
    router = moe.attrs[routers[0]]
    scorer = [
        n for n, c in router.children() if isinstance(c, ModuleRec) and ctx.roles.role(c) == LINEAR
    ]
    if len(scorer) != 1:
        return None
    ctx.cite("moe.projections", ctx.class_site(moe))
    return {
        "router": f"{routers[0]}.{scorer[0]}",
        "gate_up": projections[0],
        "down": projections[1],
        "bias": biases[0] if biases else None,
    }


def shared_mlps(ctx: Ctx, moe: ModuleRec) -> list[tuple[str, ModuleRec]]:
    exp_name, _ = experts_of(ctx, moe)
    out = []
    for name, child in moe.children():
        if name == exp_name:
            continue
        if isinstance(child, ModuleRec) and ctx.roles.role(child) == MLP:
            out.append((name, child))
        elif isinstance(child, ModuleListRec) and child.items:
            for i, item in enumerate(child.items):
                if isinstance(item, ModuleRec) and ctx.roles.role(item) == MLP:
                    out.append((f"{name}.{i}", item))
    return out


def detect(ctx: Ctx) -> tuple[Ffn, dict]:
    modules = ffn_modules(ctx)
    shared = {"modules": modules}
    dense = [(i, rec, path) for i, (role, rec, path) in modules.items() if role in (MLP, "inline")]
    moes = [(i, rec, path) for i, (role, rec, path) in modules.items() if role == MOE]
    if not dense and moes:
        dense = _mlps_beside_moe(ctx)
    source = ""
    info = None
    mlp = experts_rec = None  # the classes whose gated product's dtype is read
    if moes:
        _, experts = experts_of(ctx, moes[0][1])
        experts_rec = experts.items[0] if isinstance(experts, ModuleListRec) else experts
    if dense:
        _, rec, _ = dense[0]
        info = analyse(ctx, rec)
        source = "inline" if modules[dense[0][0]][0] == "inline" else "dense"
        mlp = rec if source == "dense" else None
    elif moes:
        _, moe, _ = moes[0]
        sh = shared_mlps(ctx, moe)
        if sh:
            info = analyse(ctx, sh[0][1])
            source = "shared_expert"
            mlp = sh[0][1]
        else:
            info = _routed(ctx, moe)
            source = "experts"
    if info is None:
        return Ffn(), shared
    routed = shared_info = None  # the MoE's routed and shared experts, read apart
    if moes:
        routed = info if source == "experts" else _routed(ctx, moes[0][1])
        sh = shared_mlps(ctx, moes[0][1])
        shared_info = (
            info if source == "shared_expert" else (analyse(ctx, sh[0][1]) if sh else None)
        )
    if info.kind == "swiglu" and len(dense) > 1:
        _clamped_later(ctx, dense, info)
    experts_clamp = clamp = None
    if source in ("dense", "shared_expert") and isinstance(experts_rec, ModuleRec):
        experts_clamp = _experts_clamp(ctx, experts_rec, info)
    if info.kind == "clamped_silu_glu" and mlp is not None:
        clamp = _mlp_clamp(ctx, mlp, info)
    shared_unclamped = False
    if source == "dense" and moes and mlp is not None:
        shared_unclamped = _shared_unclamped(ctx, moes[0][1], mlp, info, clamp)
    softcaps = None
    if info.kind == "softcapped_swiglu":
        holder = mlp if source in ("dense", "shared_expert") else experts_rec
        softcaps = softcap_fields(ctx, holder, info.softcaps) if holder is not None else None
        if softcaps is None:
            ctx.unsupported(
                "ffn.softcaps",
                "a softcapped SwiGLU whose caps are not each one config field: no rule yet",
                info.site,
            )
        ctx.cite("ffn.softcaps", info.site)
    act_fp32 = fp32_gated_product_site(ctx.model.project, mlp)
    experts_act_fp32 = fp32_gated_product_site(ctx.model.project, experts_rec)
    ctx.cite("ffn.act_fp32", act_fp32 or info.site)
    ctx.cite("ffn.experts_act_fp32", experts_act_fp32 or info.site)
    for key in ("ffn.activation", "ffn.fused_gate_up", "ffn.gate_up_layout"):
        ctx.cite(key, info.site)
    ctx.cite("ffn.activation_field", info.activation_site or info.site)
    # the dense MLP's width only: a package's intermediate_size is that one's, not the experts'
    width_field = info.width_field if source in ("dense", "inline") else None
    if width_field is not None:
        ctx.cite("ffn.width_field", f"{info.site} (config.{width_field})")
    ctx.cite("ffn.activation_by_name", info.activation_site or info.site)
    ctx.cite("ffn.kind", _kind_evidence(info))
    ctx.cite("ffn.bias", info.site)
    ctx.cite("ffn.sub_norm", info.sub_norm or info.site)
    if info.sub_norm and source not in ("dense", "inline"):
        ctx.unsupported("ffn.sub_norm", "a norm inside the shared or routed experts", info.sub_norm)
    for key, part in (("experts", routed), ("shared", shared_info)) if moes else ():
        where = (part.activation_site or part.site) if part else ctx.class_site(moes[0][1])
        ctx.cite(f"ffn.{key}_activation", where)
    shared["info"] = info
    names = _block_names(ctx, dense[0][1], dense[0][2], info) if dense else ()
    return (
        Ffn(
            block_names=names,
            kind=info.kind,
            activation=info.activation,
            activation_field=info.activation_field,
            activation_by_name=info.activation_by_name,
            bias=info.bias,
            fused_gate_up=info.fused,
            gate_up_layout=info.layout,
            intermediate_size=info.intermediate,
            width_field=width_field,
            source=source,
            sub_norm=bool(info.sub_norm) and source in ("dense", "inline"),
            act_fp32=act_fp32 is not None,
            experts_act_fp32=experts_act_fp32 is not None,
            experts_clamp=experts_clamp,
            clamp=clamp,
            shared_unclamped=shared_unclamped,
            softcaps=softcaps,
            experts_activation=_by_name(routed),
            shared_activation=_by_name(shared_info),
        ),
        shared,
    )


def _routed(ctx: Ctx, moe: ModuleRec) -> FfnInfo | None:
    """The MoE's routed experts, traced as one expert (a module list's first, the MoE's own
    gated product over stacked projections, or a module of stacked weights)."""
    _, experts = experts_of(ctx, moe)
    if isinstance(experts, ModuleListRec):
        return analyse(ctx, experts.items[0])
    if len(_projection_experts(ctx, moe)) >= 2:
        # the MoE runs its gated product itself over stacked projections; a parameter
        # added to its merged output is `moe.projections`' bias, not the experts'
        info = analyse(ctx, moe)
        info.bias = False
        return info
    if isinstance(experts, ModuleRec):
        return analyse_experts(ctx, experts)
    return None


def _by_name(info: FfnInfo | None) -> dict | None:
    """{"activation", "field"} where `info`'s activation is HF's ACT2FN entry looked up by a
    config field, else None (a hard-coded or model-local activation, no such module)."""
    if info is None or not info.activation_by_name or not info.activation_field:
        return None
    return {"activation": info.activation, "field": info.activation_field}


def _mlps_beside_moe(ctx: Ctx) -> list[tuple[int, ModuleRec, str]]:
    """Dense MLPs a layer holds in a module list beside its MoE (LongCat-Flash's `mlps`, one
    per attention sublayer, next to the shortcut MoE; not a shared MLP of the layer's own,
    granitemoehybrid's `shared_mlp`): (layer, record, path) of the first in each layer."""
    out = []
    for i, layer in enumerate(ctx.model.layers):
        slots = layer_slots(ctx.model, layer)
        listed = [(p, r) for p, r in slots.get(MLP, []) if p.rsplit(".", 1)[-1].isdigit()]
        if slots.get(MOE) and listed:
            path, rec = listed[0]
            out.append((i, rec, path))
    return out


def _block_names(ctx: Ctx, rec: ModuleRec, path: str, info: FfnInfo) -> tuple:
    """(canonical projection, its module path in the layer) of an ungated two-layer FFN: the
    linear called first is the up projection, the other the down one (CTRL's `ffn.0` and
    `ffn.2`, BERT's `intermediate.dense` and `output.dense`). An FFN written inline in the
    layer counts the linears outside the subtrees that hold the attention."""
    if info.layout != "none":
        return ()
    paths = dict(_ffn_linears(ctx, rec, f"{path}." if path else ""))
    order = []
    for t in ctx.trace(rec).terms:
        if t.op == "call" and id(t.module) in paths and paths[id(t.module)] not in order:
            order.append(paths[id(t.module)])
    if len(order) != 2 or len(paths) != 2:
        return ()
    return (("up_proj", order[0]), ("down_proj", order[1]))


def _ffn_linears(ctx: Ctx, rec: ModuleRec, prefix: str, depth: int = 0) -> list:
    """(id, path) of the linear modules under `rec`, skipping subtrees that hold attention."""
    out = []
    for name, child in rec.children():
        items = (
            [(f"{name}.{i}", x) for i, x in enumerate(child.items)]
            if isinstance(child, ModuleListRec)
            else [(name, child)]
        )
        for sub, item in items:
            if not isinstance(item, ModuleRec):
                continue
            role = ctx.roles.role(item)
            if role == LINEAR:
                out.append((id(item), prefix + sub))
            elif (
                depth < 2
                and role not in (MLP, MOE, EXPERTS, NORM)  # a feed-forward of its own is not
                and not _holds_mixer(ctx, item)  # part of this one (an adapter beside it)
            ):
                out += _ffn_linears(ctx, item, f"{prefix}{sub}.", depth + 1)
    return out


def _holds_mixer(ctx: Ctx, rec: ModuleRec, depth: int = 0) -> bool:
    if ctx.roles.role(rec) in (ATTENTION, MIXER):
        return True
    return depth < 2 and any(
        isinstance(c, ModuleRec) and _holds_mixer(ctx, c, depth + 1) for _, c in rec.children()
    )


def _kind_evidence(info: FfnInfo) -> str:
    """The site, and for a kind no rule names ("other") what it is instead."""
    if info.kind != "other":
        return info.site
    gated = "gated" if info.layout not in ("none", UNKNOWN) else "ungated"
    return f"{info.site} ({gated}, activation {info.activation})"


def analyse_experts(ctx: Ctx, experts: ModuleRec) -> FfnInfo:
    """Fused expert tensors: the forward loops over experts; trace one symbolic iteration."""
    info = analyse(ctx, experts)
    # an experts block that delegates to an inner MLP module (e.g. one GLU over stacked weights)
    if info.kind == UNKNOWN:
        for _, child in experts.children():
            if isinstance(child, ModuleRec) and ctx.roles.role(child) == MLP:
                inner = analyse(ctx, child)
                if inner.kind != UNKNOWN:
                    return inner
    return info


__all__ = [
    "FfnInfo",
    "analyse",
    "detect",
    "experts_of",
    "ffn_modules",
    "primary_input",
    "shared_mlps",
]
