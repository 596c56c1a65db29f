"""Attention: kind (MHA/GQA/MQA/MLA), QK-norm, biases, fused QKV, sliding window, sinks, softcap.

The attention forward is traced (`dataflow`): the arguments of the attention kernel call
(`attention_interface(self, q, k, v, ...)`, `eager_attention_forward`, `sdpa`) are q, k and v;
the linear layers each of them depends on are its projections; a norm applied after the last
q/k projection is a QK-norm; a linear -> norm -> linear chain on the key path is MLA's
compressed KV. Per-layer facts (sliding window, RoPE on/off) come from tracing each distinct
attention instance, so `layer_types` patterns are seen as the model would run them.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from codegen.analyze import (
    backbone_mask,
    differential,
    dynamic_mask,
    fused_q_gate,
    logn_scale,
    mask_window,
    norm_eps,
    qk_norm_scope,
    short_conv,
    size_fields,
    supplied_inputs,
    type_block,
)
from codegen.analyze.attention_shapes import _init_assignments
from codegen.analyze.config import attr
from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, primary_input, strip, terms_in, walk
from codegen.analyze.evaluate import FuncRef, ModuleRec, ParamRec
from codegen.analyze.features import UNKNOWN, Attention
from codegen.analyze.last_layer_bias import last_layer_o_bias
from codegen.analyze.latent_extras import latent_norms, up_projected_part
from codegen.analyze.layer_rule import init_rule
from codegen.analyze.model import layer_slots, linear_bias
from codegen.analyze.roles import ATTENTION, LINEAR, MIXER, NORM, ROTARY
from codegen.analyze.router_dtype import upcast
from codegen.analyze.walk import findall


@dataclass
class AttnInfo:
    """What one attention instance does (internal to the detectors)."""

    rec: ModuleRec
    path: str
    kernel: Term | None = None
    q_lins: list | None = None
    k_lins: list | None = None
    v_lins: list | None = None
    o_lin: ModuleRec | None = None
    q_norm: ModuleRec | None = None
    k_norm: ModuleRec | None = None
    mla: bool = False
    window: object = None  # int | None | "unknown"
    rope_fn: object = None  # FuncRef applying RoPE, or ModuleRec rotary, or None
    # the rotation reached only with optional inputs the stack supplies: that trace, and the
    # term the stack computes for each such input
    rope_trace: object = None
    rope_inputs: dict | None = None
    rope_call_site: str | None = None
    trace: object = None


def layer_mixers(ctx: Ctx) -> list[tuple[int, str, ModuleRec | None, str]]:
    """(layer index, role, token-mixer record, path) for every decoder layer."""
    out = []
    for i, layer in enumerate(ctx.model.layers):
        slots = layer_slots(ctx.model, layer)
        if slots.get(ATTENTION):
            path, rec = _token_attention(ctx, slots[ATTENTION])
            out.append((i, ATTENTION, rec, path))
        elif slots.get(MIXER):
            path, rec = slots[MIXER][0]
            out.append((i, MIXER, rec, path))
        else:
            out.append((i, "none", None, ""))
    return out


def _token_attention(ctx: Ctx, slots: list) -> tuple[str, ModuleRec]:
    """The layer's attention over its tokens: of several attention modules, the first that
    projects its input with a linear layer of its own (an attention of learned queries over
    stored layer outputs, Inkling-2's block residuals, projects nothing), else the first."""
    for path, rec in slots:
        if any(ctx.roles.role(child) == LINEAR for _, child in rec.children()):
            return path, rec
    return slots[0]


def _projected(ctx: Ctx, term: Term) -> bool:
    """`term` reads the output of a linear layer (sink logits computed per token)."""
    return any(
        t.op == "call" and isinstance(t.module, ModuleRec) and ctx.roles.role(t.module) == LINEAR
        for t in walk(term)
    )


def _sink_projection(ctx: Ctx, rep, sinks: Term) -> str:
    """The attention's projection whose output, one logit per head, is the kernel's per-token
    sinks where it projects the attention's first input; "other" otherwise (another input,
    another width, anything between the projection and the kernel but a reshape)."""
    calls = [
        t
        for t in walk(sinks)
        if t.op == "call" and isinstance(t.module, ModuleRec) and ctx.roles.role(t.module) == LINEAR
    ]
    inputs = [t for t in rep.trace.terms if t.op == "input"]
    if len(calls) != 1 or sinks is not calls[0] or not inputs:
        return "other"
    (call,) = calls
    heads = rep.rec.attrs.get("num_heads")
    name = next((n for n, c in rep.rec.children() if c is call.module), None)
    if name is None or not call.args or call.args[0] is not inputs[0]:
        return "other"
    if len(call.module.args) < 2 or call.module.args[1] != heads:
        return "other"
    return name


def mixer_kind(ctx: Ctx, rec: ModuleRec) -> str:
    """Name of a non-attention token mixer, from structure: short_conv | ssm |
    linear_attention | recurrent."""
    if rec.cls is None:
        return "recurrent" if rec.kind in ("LSTM", "GRU", "RNN") else "mixer"
    if short_conv.read(ctx, rec) is not None:
        return "short_conv"
    sig = ctx.roles.method_signals(rec.cls)
    convs = [c for _, c in rec.children() if isinstance(c, ModuleRec) and c.kind == "Conv1d"]
    params = {n for n, c in rec.children() if isinstance(c, ParamRec)}
    text = " ".join(sig.ops | sig.functions).lower()
    if "A_log" in params or "scan" in text or "ssd" in text or "mamba" in text:
        return "ssm"
    if convs and "delta" not in text and "chunk" not in text:
        return "ssm"
    return "linear_attention"


def _linears(term: Term, ctx: Ctx) -> list:
    out = []
    for t in walk(term):
        if (
            t.op == "call"
            and isinstance(t.module, ModuleRec)
            and ctx.roles.role(t.module) == LINEAR
        ):
            out.append(t)
    return out


def _norm_calls(term: Term, ctx: Ctx) -> list:
    return [
        t
        for t in walk(term)
        if t.op == "call" and isinstance(t.module, ModuleRec) and ctx.roles.role(t.module) == NORM
    ]


def _qk_norm(term: Term, ctx: Ctx) -> ModuleRec | None:
    """A norm applied after the last projection on this path (none of the path's linears
    consumes its output)."""
    lins = _linears(term, ctx)
    for n in _norm_calls(term, ctx):
        if not any(any(x is n for x in walk(lin)) for lin in lins):
            if any(any(x is lin for x in walk(n)) for lin in lins):
                return n.module
    return None


def _low_rank_chain(term: Term, ctx: Ctx) -> bool:
    """linear -> norm -> linear on this path (MLA's compressed latent)."""
    for lin in _linears(term, ctx):
        inp = primary_input(lin)
        if inp is None:
            continue
        for n in _norm_calls(inp, ctx):
            if _linears(n, ctx):
                return True
    return False


def _kernel(trace) -> Term | None:
    kernels = [t for t in trace.terms if t.op == "attn"]
    if kernels:
        return kernels[-1]
    return _manual_kernel(trace)


def _is_matmul(t: Term) -> bool:
    return t.op == "matmul" or (
        t.op == "fn" and t.name.rsplit(".", 1)[-1] in ("matmul", "bmm", "baddbmm", "einsum")
    )


def _operands(t: Term) -> list[Term]:
    """Matrix operands of a product (`baddbmm(input, batch1=, batch2=)` uses the batches)."""
    if t.op == "fn" and t.name.rsplit(".", 1)[-1] == "baddbmm":
        batches = [t.kwargs.get("batch1"), t.kwargs.get("batch2")]
        if all(isinstance(b, Term) for b in batches):
            return batches
        return [a for a in t.args if isinstance(a, Term)][1:3]
    return [a for a in t.args if isinstance(a, Term)]


def _manual_kernel(trace) -> Term | None:
    """softmax(q @ k^T) @ v written inline: a synthetic kernel term over (q, k, v)."""
    for out in trace.terms:
        if not _is_matmul(out):
            continue
        operands = _operands(out)
        if len(operands) != 2:
            continue
        for i, probs in enumerate(operands):
            softmaxes = [
                t for t in walk(probs) if t.op == "fn" and t.name.rsplit(".", 1)[-1] == "softmax"
            ]
            for sm in softmaxes:
                scores = [t for t in walk(sm) if _is_matmul(t) and t is not out]
                if not scores:
                    continue
                qk = _operands(scores[0])
                if len(qk) != 2:
                    continue
                v = operands[1 - i]
                kernel = Term(
                    "attn", (qk[0], qk[1], v), name="<inline softmax attention>", site=sm.site
                )
                kernel.kwargs["_anchor"] = out
                kernel.kwargs["_softmax"], kernel.kwargs["_qk"] = sm, scores[0]
                return kernel
    return None


# ops a score passes through between q @ k^T and the softmax without being scaled: a mask
# added or selected (`torch.where(mask, scores, min)`), an index
_MASKING = {"add", "sub", "index"}


def _unscaled_inline(kernel: Term) -> bool:
    """An inline `softmax(q @ k^T)` kernel whose scores reach the softmax unscaled: from the
    q @ k^T product to the softmax only masks are added or selected, and neither q nor k is
    multiplied or divided by a number on its way from its projection (GPT-Neo)."""
    softmax, qk = kernel.kwargs.get("_softmax"), kernel.kwargs.get("_qk")
    if softmax is None or qk is None:
        return False
    term = next((a for a in softmax.args if isinstance(a, Term)), None)
    while term is not None and term is not qk:
        on_path = [a for a in term.args if isinstance(a, Term) and depends(a, qk)]
        where = term.op == "fn" and term.name.rsplit(".", 1)[-1] == "where"
        if len(on_path) != 1 or not (term.op in _MASKING or where):
            return False
        if term.op == "sub" and term.args and term.args[0] is not on_path[0]:
            return False  # mask - scores negates them
        term = on_path[0]
    if term is None or qk.kwargs.get("alpha", 1) != 1:  # baddbmm(..., alpha=scale)
        return False
    for operand in _operands(qk):
        for t in _above_projections(operand):
            if t.op in ("mul", "div", "pow") and any(
                isinstance(a, int | float) and not isinstance(a, bool) for a in t.args
            ):
                return False
            if t.op == "fn" and t.name.rsplit(".", 1)[-1] in ("sqrt", "rsqrt"):
                return False
    return True


_FP32 = m.Attribute(value=m.Name("torch"), attr=m.Name("float32"))


def _scores_upcast(kernel: Term) -> str | None:
    """Where the eager attention function the interface falls back to (`get_interface(impl,
    eager_attention_forward)`) takes its query (the parameter after the module) to fp32:
    `query.float()`, `query.to(torch.float32)`. The scores and softmax then run in fp32."""
    fn = kernel.kwargs.get("_default")
    if not isinstance(fn, FuncRef) or not isinstance(fn.node, cst.FunctionDef):
        return None
    params = fn.node.params.params
    if len(params) < 3:
        return None
    query = m.Name(params[1].name.value)
    upcasts = m.Call(func=m.Attribute(value=query, attr=m.Name("float")), args=[]) | m.Call(
        func=m.Attribute(value=query, attr=m.Name("to")), args=[m.Arg(value=_FP32)]
    )
    found = findall(fn.node, upcasts)
    return fn.sf.cite(found[0]) if found else None


def _above_projections(term: Term):
    """`term` and what it is computed from, down to (not into) module calls."""
    seen, stack = set(), [term]
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        yield t
        if t.op != "call":
            stack.extend(terms_in(list(t.args)))


def _mask_buffer_windows(ctx: Ctx, per_layer: list[dict]) -> tuple[str | None, str | None]:
    """Layers whose own causal-mask buffer is cut to a window in `__init__` (GPT-Neo's local
    layers) slide: their per-layer entry gets the window. Returns the rule deciding which
    layers do, over `hf_config` and `i`, and the window's config field (None, None when no
    attention builds such a buffer or either cannot be restated)."""
    layers = [p for p in per_layer if p["type"] == "full" and p["info"].window is None]
    if not layers or len(layers) != sum(p["type"] in ("full", "sliding") for p in per_layer):
        return None, None
    cut = mask_window.find_cut(ctx, layers[0]["info"].rec)
    if cut is None:
        return None, None
    found = []
    for p in layers:
        rec = p["info"].rec
        same = mask_window.find_cut(ctx, rec)
        result = mask_window.windows(ctx, cut, rec) if same is not None else None
        if result is None:
            return None, None
        found.append((p["index"], rec, result[0], result[1]))
    if not any(taken for _, _, taken, _ in found):
        return None, None
    rule = mask_window.layer_rule(ctx, cut, [(i, rec, taken) for i, rec, taken, _ in found])
    for p, (_, _, taken, window) in zip(layers, found, strict=True):
        if taken:
            p["info"].window = window
            p["type"], p["window"] = "sliding", window
    return rule, mask_window.window_field(cut)


def _typed_windows(ctx: Ctx, per_layer: list[dict]) -> str | None:
    """Where the config types its layers with names of its own (inkling's "hybrid_sliding"
    beside "hybrid"), the condition under which a layer slides, restated over `hf_config`
    and `i` from the attention's `self.<window> = <config field> if <test> else None` and
    true exactly on the analysed sliding layers; None otherwise (standard names are read as
    they are)."""
    types = attr(ctx.model.config, "layer_types")
    if not isinstance(types, list | tuple) or "sliding_attention" in types:
        return None  # the sliding layers (if any) typed as a package reads them
    layers = [p for p in per_layer if p["type"] in ("full", "sliding")]
    if not layers:
        return None
    # where no analysed layer slides (zaya's default "hybrid" layers), the condition still
    # holds for the other setting of layer_types ("hybrid_sliding"): restated all the same,
    # unless it names the type a package reads natively
    none_slide = len({p["type"] for p in layers}) < 2
    if none_slide and any(p["type"] == "sliding" for p in layers):
        return None
    rec = layers[0]["info"].rec
    sliding = {p["index"]: p["type"] == "sliding" for p in layers}
    built = [(p["index"], p["info"].rec) for p in layers]
    for value in _init_assignments(ctx, rec).values():
        if not (isinstance(value, cst.IfExp) and m.matches(value.orelse, m.Name("None"))):
            continue
        rule = init_rule(ctx, rec, value.test, built, lambda i, v: bool(v) == sliding[i])
        if rule is not None and none_slide and ("sliding_attention" in rule or "==" not in rule):
            continue  # the standard name, or a test no config typed otherwise makes true
        if rule is not None:
            ctx.cite("attention.window_rule", f"{ctx.class_site(rec) or '?'} (slides where {rule})")
            return rule
    return None


def _qkv(kernel: Term) -> list[Term]:
    return [strip(t) for t in kernel.args if isinstance(t, Term)][:3]


def _is_rope_function(ctx: Ctx, func) -> bool:
    sig = ctx.roles.function_signals(func.sf, func.node) if hasattr(func.node, "body") else None
    if sig is None:
        return False
    names = sig.names | sig.params
    if {"cos", "sin"} <= names or {"cos", "sin"} <= sig.ops:
        return True
    return bool(sig.ops & {"view_as_complex", "polar", "rotate_half"})


def analyse_instance(ctx: Ctx, rec: ModuleRec, path: str) -> AttnInfo:
    info = AttnInfo(rec=rec, path=path)
    trace = ctx.trace(rec)
    info.trace = trace
    roles = ctx.roles
    kernel = _kernel(trace)
    info.kernel = kernel
    if kernel is not None:
        qkv = _qkv(kernel)
        if len(qkv) == 3:
            q, k, v = qkv
            info.q_lins = _linears(q, ctx)
            info.k_lins = _linears(k, ctx)
            info.v_lins = _linears(v, ctx)
            qn, kn = _qk_norm(q, ctx), _qk_norm(k, ctx)
            info.mla = _low_rank_chain(k, ctx) and _low_rank_chain(v, ctx)
            if not info.mla and _low_rank_chain(q, ctx):
                qn = None  # a latent query's head norm is its own (attention.low_rank_q)
            info.q_norm, info.k_norm = qn, kn
        used = {
            id(t.module) for t in (info.q_lins or []) + (info.k_lins or []) + (info.v_lins or [])
        }
        anchor = kernel.kwargs.get("_anchor", kernel)
        after = [
            t
            for t in trace.terms
            if t.op == "call"
            and isinstance(t.module, ModuleRec)
            and roles.role(t.module) == LINEAR
            and id(t.module) not in used
            and any(x is anchor for x in walk(t))
        ]
        if after:
            info.o_lin = after[0].module
        window = kernel.kwargs.get("sliding_window", "absent")
        info.window = window
    if info.window in (None, "absent") or kernel is None:
        own = rec.attrs.get("sliding_window")
        if (
            isinstance(own, int)
            and not isinstance(own, bool)
            and (kernel is None or info.window == "absent")
        ):
            info.window = own
        elif info.window == "absent":
            info.window = None
    # RoPE applied inside this attention?
    # (a method of this attention that merely calls the rotation, such as a `project` helper
    # holding cos and sin, is not the rotation itself: a function it calls is preferred)
    candidates = [f for f, _args in trace.tracer.func_calls if _is_rope_function(ctx, f)]
    own = [f for f in candidates if f.bound is rec]
    info.rope_fn = next((f for f in candidates if f.bound is not rec), None) or next(
        iter(own), None
    )
    if info.rope_fn is None:
        for t in trace.terms:
            if (
                t.op == "call"
                and isinstance(t.module, ModuleRec)
                and roles.role(t.module) == ROTARY
            ):
                info.rope_fn = t.module
                break
    if info.rope_fn is None and rec.cls is not None and kernel is not None:
        # cos/sin computed and applied inline in the attention's own forward
        if {"cos", "sin"} <= roles.method_signals(rec.cls).ops:
            info.rope_fn = rec
    if info.rope_fn is None and kernel is not None and _has_rope_method(ctx, rec):
        _rope_of_supplied_inputs(ctx, info)
    return info


def _rope_withheld(ctx: Ctx, per_layer: list[dict]) -> None:
    """Layers whose attention rotates with an input the stack hands it as None: NoPE layers
    (`rope` False). The attention is traced alone, with every input present; the stack's
    trace says, layer by layer, which inputs it leaves at None (beam's full-attention layers,
    whose layer type has no RoPE parameters)."""
    owner = ctx.model.stack_owner
    if owner is None or not ctx.model.layers:
        return
    stack = None
    for p in per_layer:
        info = p.get("info")
        if not p.get("rope") or info is None or p["index"] >= len(ctx.model.layers):
            continue
        names = _rope_input_names(info)
        if not names:
            continue
        layer = ctx.model.layers[p["index"]]
        stack = stack or ctx.trace(owner)
        calls = [t for t in stack.terms if t.op == "call" and t.module is layer]
        attention = [t for t in ctx.trace(layer).terms if t.op == "call" and t.module is info.rec]
        if len(calls) != 1 or len(attention) != 1:
            continue
        given = supplied_inputs.bind(ctx, layer, calls[0])
        handed = supplied_inputs.bind(ctx, info.rec, attention[0])
        for name in names:
            value = handed.get(name)
            if isinstance(value, Term) and value.op == "input" and value.name in given:
                if given[value.name] is None:
                    p["rope"] = False


def _rope_input_names(info: AttnInfo) -> set[str]:
    """The attention's own inputs (other than the hidden states) its rotation reads."""
    trace = info.rope_trace or info.trace
    if trace is None or info.rope_fn is None:
        return set()
    names: set[str] = set()
    for func, args in trace.tracer.func_calls:
        if func is not info.rope_fn:
            continue
        for arg in terms_in(args):
            names |= {t.name for t in walk(arg) if t.op == "input" and not t.kwargs.get("primary")}
    return names


def _has_rope_method(ctx: Ctx, rec: ModuleRec) -> bool:
    """A method of the attention's class rotates with cos and sin (whether or not the
    default call reaches it)."""
    if rec.cls is None:
        return False
    return any(
        _is_rope_function(ctx, FuncRef(cls.sf, fn, owner=cls))
        for cls in ctx.model.project.mro(rec.cls)
        for fn in cls.methods.values()
    )


def _rope_of_supplied_inputs(ctx: Ctx, info: AttnInfo) -> None:
    """The rotation applied only when an optional input is given, which the stack does give
    (RoFormer's `sinusoidal_pos`): the attention traced again with those inputs present."""
    given = supplied_inputs.supplied(ctx, info.rec)
    if not given:
        return
    trace = supplied_inputs.trace_with(ctx, info.rec, given)
    found = [f for f, _args in trace.tracer.func_calls if _is_rope_function(ctx, f)]
    if found:
        info.rope_fn = found[0]
        info.rope_trace = trace
        info.rope_inputs = given


def _dims(rec: ModuleRec | None) -> tuple:
    if rec is None:
        return (None, None)
    args = list(rec.args)
    if rec.kind == "Conv1D":  # transformers' Conv1D(nf=out, nx=in)
        args = args[1:2] + args[:1]
    inp = args[0] if args else rec.kwargs.get("in_features")
    out = args[1] if len(args) > 1 else rec.kwargs.get("out_features")
    return (inp if isinstance(inp, int) else None, out if isinstance(out, int) else None)


def _int_attr(rec: ModuleRec, *names):
    for name in names:
        value = rec.attrs.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _normed_side(ctx: Ctx, rep: AttnInfo, norm: ModuleRec, kind: str) -> str:
    """`both` where q and k each pass a norm after their projection, `keys` where only k
    does (DeepSeek-V4's `kv_norm`; a latent query's own head norm is `attention.low_rank_q`'s,
    not one of these), `queries` where only q does; cited at the norm with its width and the
    config field of its epsilon."""
    side = "both"
    if rep.q_norm is None:
        side = "keys"
    elif rep.k_norm is None:
        side = "queries"
    eps = norm_eps.eps_field(ctx, norm)
    said = f"{kind} norm on {'q and k' if side == 'both' else side}"
    said += f", eps=config.{eps}" if eps else ""
    ctx.cite("attention.qk_norm_on", f"{ctx.site(norm)} ({said})")
    return side


def _norm_dim(norm: ModuleRec) -> int | None:
    args = list(norm.args)
    value = args[0] if args else None
    for key in ("hidden_size", "normalized_shape", "dim", "d_model", "features", "num_features"):
        if value is None:
            value = norm.kwargs.get(key)
    if isinstance(value, tuple | list) and value:
        value = value[-1]
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    for v in norm.attrs.values():
        if isinstance(v, ParamRec) and v.shape and isinstance(v.shape[-1], int):
            return v.shape[-1]
    return None


def _weightless(norm: ModuleRec) -> bool:
    """The norm module holds no parameter (and no child module that could)."""
    return not any(isinstance(v, ParamRec | ModuleRec) for v in norm.attrs.values())


def _viewed_per_head(rep: AttnInfo, head_dim) -> bool:
    """The q projection's output is viewed with head_dim as its last axis."""
    if not isinstance(head_dim, int) or rep.trace is None:
        return False
    views = rep.trace.tracer.views
    return any(
        shape and shape[-1] == head_dim for t in rep.q_lins or [] for shape in views.get(id(t), [])
    )


def _output_in_parent(ctx: Ctx, layer: ModuleRec, rec: ModuleRec, path: str):
    """The output projection applied by the module holding the attention, when the attention
    returns before it (BERT's `attention.self`, whose sibling `attention.output` projects):
    the first linear of the parent's forward that takes the attention's output."""
    if "." not in path:
        return None
    parent = layer
    for part in path.split(".")[:-1]:
        parent = parent.attrs.get(part) if isinstance(parent, ModuleRec) else None
    if not isinstance(parent, ModuleRec) or parent is rec:
        return None
    terms = ctx.trace(parent).terms
    calls = [t for t in terms if t.op == "call" and t.module is rec]
    for t in terms:
        if (
            t.op == "call"
            and isinstance(t.module, ModuleRec)
            and ctx.roles.role(t.module) == LINEAR
            and not _under(t.module, rec)
            and any(x is c for c in calls for x in walk(t) if x is not t)
        ):
            return t.module
    return None


def _under(module: ModuleRec, rec: ModuleRec, depth: int = 0) -> bool:
    """`module` is `rec` or one of its submodules."""
    if module is rec:
        return True
    return depth < 3 and any(
        isinstance(c, ModuleRec) and _under(module, c, depth + 1) for _, c in rec.children()
    )


def detect(ctx: Ctx) -> tuple[Attention, dict]:
    """Returns the Attention feature and per-layer facts shared with other detectors."""
    model = ctx.model
    mixers = layer_mixers(ctx)
    infos: dict[int, AttnInfo] = {}
    per_layer: list[dict] = []
    for i, role, rec, path in mixers:
        if rec is None:
            per_layer.append({"index": i, "type": "none"})
            continue
        if role == MIXER:
            kind = mixer_kind(ctx, rec)
            per_layer.append({"index": i, "type": "mixer", "mixer": kind, "rec": rec, "path": path})
            continue
        if id(rec) not in infos:
            infos[id(rec)] = analyse_instance(ctx, rec, path)
            if infos[id(rec)].o_lin is None and infos[id(rec)].kernel is not None:
                infos[id(rec)].o_lin = _output_in_parent(ctx, model.layers[i], rec, path)
        info = infos[id(rec)]
        win = info.window
        per_layer.append(
            {
                "index": i,
                "type": "sliding" if isinstance(win, int) and not isinstance(win, bool) else "full",
                "window": win,
                "rope": info.rope_fn is not None,
                "info": info,
                "path": path,
            }
        )
    _rope_withheld(ctx, per_layer)
    shared = {"per_layer": per_layer, "infos": infos}
    window_rule, window_field = _mask_buffer_windows(ctx, per_layer)
    if window_rule is None:
        window_rule = _typed_windows(ctx, per_layer)
    attn_layers = [p for p in per_layer if p["type"] in ("full", "sliding")]
    if not attn_layers:
        return Attention(kind=UNKNOWN, sliding_window="none"), shared
    rep: AttnInfo = attn_layers[0]["info"]
    shared["rep"] = rep
    rec = rep.rec
    cite_rec = ctx.class_site(rec)

    # -- projections ------------------------------------------------------------------------------
    q_mods = [t.module for t in rep.q_lins or []]
    k_mods = [t.module for t in rep.k_lins or []]
    v_mods = [t.module for t in rep.v_lins or []]
    fused = [m for m in q_mods if any(m is x for x in k_mods) and any(m is x for x in v_mods)]
    fused_qkv: bool | str = bool(fused) if rep.kernel is not None else UNKNOWN
    q_last = _last_projection(rep.q_lins, ctx)
    k_last = _last_projection(rep.k_lins, ctx)
    v_last = _last_projection(rep.v_lins, ctx)
    if rep.kernel is not None:
        ctx.cite("attention.fused_qkv", rep.kernel.site.cite() if rep.kernel.site else cite_rec)
        if fused:
            ctx.cite("attention.fused_qkv", ctx.site(fused[0]))

    # -- biases -----------------------------------------------------------------------------------
    qkv_bias: bool | str = UNKNOWN
    projections = [m for m in (q_last, k_last, v_last) if m is not None]
    if projections:
        flags = [linear_bias(m) for m in projections]
        first_lin = [m for m in q_mods + k_mods + v_mods]
        if rep.mla:
            flags = [linear_bias(m) for m in first_lin if m is not None]
        if any(f is None for f in flags):
            qkv_bias = UNKNOWN
        else:
            qkv_bias = any(flags)
            if qkv_bias and not all(flags):
                ctx.notes.append("attention: only some of the q/k/v projections have a bias")
        ctx.cite("attention.qkv_bias", ctx.site(projections[0]))
    o_bias: bool | str = UNKNOWN
    if rep.o_lin is not None:
        flag = linear_bias(rep.o_lin)
        o_bias = UNKNOWN if flag is None else flag
        ctx.cite("attention.o_bias", ctx.site(rep.o_lin))

    # -- heads ------------------------------------------------------------------------------------
    head_dim = _int_attr(rec, "head_dim", "head_size", "attention_head_size")
    num_heads = _int_attr(rec, "num_heads", "num_attention_heads", "n_heads")
    num_kv = _int_attr(rec, "num_key_value_heads", "num_kv_heads", "n_kv_heads", "kv_n_heads")
    groups = _int_attr(rec, "num_key_value_groups", "num_kv_groups")
    cfg = rec.attrs.get("config")
    if not hasattr(cfg, "attrs"):
        cfg = model.config
    q_out0 = _dims(q_last)[1] if q_last is not None and not fused else None
    gate = _output_gate(ctx, rep, q_mods)
    gate_rows = _dims(rep.o_lin)[0] if gate.get("gate_layout", UNKNOWN) != UNKNOWN else None
    if q_out0 and _size(gate_rows):  # the query projection's rows hold the gate's too
        q_out0 -= gate_rows
    if num_heads is None and head_dim and q_out0:
        num_heads = q_out0 // head_dim
    if num_heads is None:
        value = attr(cfg, "num_attention_heads")
        num_heads = value if isinstance(value, int) else None
    q_out = q_out0
    k_out = _dims(k_last)[1] if k_last is not None and not fused else None
    if head_dim is None and q_out and num_heads:
        head_dim = q_out // num_heads
    if num_kv is None and groups and num_heads:
        num_kv = num_heads // groups
    if num_kv is None and k_out and head_dim and not rep.mla:
        num_kv = k_out // head_dim
    shared["q_head_dim"] = (q_out // num_heads) if (q_out and num_heads) else head_dim
    same = not fused and size_fields.same_width(q_last, k_last)
    size_reads = size_fields.head_fields(num_heads, num_kv, head_dim, q_out, k_out, same)
    for name, field in zip(
        ("heads_field", "kv_heads_field", "head_dim_field"), size_reads, strict=True
    ):
        if field is not None:
            ctx.cite(f"attention.{name}", f"{cite_rec} (config.{field})")
    if num_kv is None and fused and head_dim and num_heads:
        fused_out = _dims(fused[0])[1]
        if fused_out:
            num_kv = (fused_out // head_dim - num_heads) // 2
    if num_kv is None:
        value = attr(cfg, "num_key_value_heads")
        num_kv = value if isinstance(value, int) else None
    if (num_kv is None or head_dim is None) and fused and num_heads and num_kv in (None, num_heads):
        width = _equal_thirds(rep, fused[0])
        if width and width % num_heads == 0:  # q, k and v as wide: as many kv heads as heads
            head_dim = head_dim or width // num_heads
            num_kv = num_heads if width == num_heads * head_dim else num_kv
    if rep.mla:
        kind = "mla"
        ctx.cite("attention.kind", ctx.site(rep.k_lins[0].module) if rep.k_lins else cite_rec)
    elif num_heads is None or num_kv is None:
        kind = UNKNOWN
        ctx.cite("attention.kind", cite_rec)
    elif num_kv == num_heads:
        kind = "mha"
    elif num_kv == 1:
        kind = "mqa"
    else:
        kind = "gqa"
    if kind in ("mha", "mqa", "gqa"):
        where = ctx.site(k_last) if k_last is not None and not fused else cite_rec
        ctx.cite("attention.kind", f"{where} ({num_heads} heads, {num_kv} kv heads)")

    qkv_layout = UNKNOWN if fused_qkv == UNKNOWN else "none"
    qkv_blocks, qkv_order = 1, "qkv"
    if fused:
        fused_terms = [t for t in rep.q_lins or [] if t.module is fused[0]]
        views = [v for t in fused_terms for v in rep.trace.tracer.views.get(id(t), [])]
        qkv_layout = _qkv_layout(views, num_heads, num_kv, head_dim)
        blocked = _blocked(rep, fused_terms, views, num_heads, num_kv)
        if qkv_layout == UNKNOWN and blocked is not None:
            qkv_layout = "blocked"
            qkv_blocks, qkv_order = blocked
        shapes = ", ".join(
            "(" + ", ".join(str(d) if isinstance(d, int | str) else "?" for d in v) + ")"
            for v in views
        )
        shapes = shapes or "no head axis"
        ctx.cite("attention.qkv_layout", f"{ctx.site(fused[0])} (output viewed as {shapes})")
    elif fused_qkv is False:
        ctx.cite("attention.qkv_layout", ctx.evidence.get("attention.fused_qkv", cite_rec))

    # -- QK norm ----------------------------------------------------------------------------------
    qk_norm, qk_norm_on = "none", None
    norm = rep.q_norm or rep.k_norm
    if rep.kernel is None:
        qk_norm = UNKNOWN
        ctx.cite("attention.qk_norm", cite_rec)
    elif norm is not None:
        dim = _norm_dim(norm)
        if dim is not None and head_dim is not None and dim == head_dim:
            qk_norm = "per_head"
        elif (
            dim is not None
            and head_dim is not None
            and num_heads
            and dim >= head_dim * min(num_kv or num_heads, num_heads)
        ):
            qk_norm = "full"
        elif dim is None and _weightless(norm) and _viewed_per_head(rep, head_dim):
            # no size to read (nanochat's parameter-free RMSNorm): it norms the last axis of
            # q after the view to heads, so each head on its own
            qk_norm = "per_head"
        else:
            qk_norm = UNKNOWN
        qk_norm_on = _normed_side(ctx, rep, norm, qk_norm)
        ctx.cite("attention.qk_norm", ctx.site(norm))
        ctx.cite("attention.qk_norm_weight", ctx.class_site(norm) or ctx.site(norm))
        ctx.cite("attention.qk_norm_layers", ctx.site(norm))
    else:
        ctx.cite("attention.qk_norm", rep.kernel.site.cite() if rep.kernel.site else cite_rec)

    # -- sliding window ---------------------------------------------------------------------------
    windows = [p.get("window") for p in attn_layers]
    cfg_window = attr(cfg, "sliding_window")
    if (
        all(w is None for w in windows)
        and isinstance(cfg_window, int)
        and not isinstance(cfg_window, bool)
    ):
        if backbone_mask.window_everywhere(ctx):  # the window lives in the one mask (phimoe)
            windows = [cfg_window] * len(windows)
    chunked = backbone_mask.chunk_field(ctx, attr(cfg, "layer_types"))
    ctx.cite(
        "attention.chunked",
        f"{ctx.class_site(backbone_mask.backbone(ctx))}; config:layer_types"
        if chunked
        else cite_rec,
    )
    sliding = [w for w in windows if isinstance(w, int) and not isinstance(w, bool)]
    if any(w == UNKNOWN or (w is not None and not isinstance(w, int)) for w in windows):
        sliding_window = UNKNOWN
    elif not sliding:
        sliding_window = "none"
    elif len(sliding) == len(windows):
        sliding_window = "all"
    else:
        sliding_window = "pattern"
    window = max(sliding) if sliding else None
    where = rep.kernel.site.cite() if rep.kernel is not None and rep.kernel.site else cite_rec
    ctx.cite(
        "attention.sliding_window",
        f"{where}; {ctx.cite_config('sliding_window', cfg_window)}"
        + ("; config:layer_types" if isinstance(attr(cfg, "layer_types"), list) else "")
        + (f"; mask buffer cut where {window_rule}" if window_rule else ""),
    )

    # -- sinks, softcap, scale --------------------------------------------------------------------
    sinks: bool | str = False
    sink_projection = None
    softcap: bool | str = False
    scale = "default"
    if rep.kernel is not None:
        s_aux = rep.kernel.kwargs.get("s_aux", rep.kernel.kwargs.get("sinks"))
        if isinstance(s_aux, ParamRec) or (isinstance(s_aux, Term) and s_aux.op == "param"):
            sinks = True
            ctx.cite(
                "attention.sinks", s_aux.site.cite() if getattr(s_aux, "site", None) else where
            )
        elif isinstance(s_aux, Term) and _projected(ctx, s_aux):
            sinks = "per_token"  # each token's sink logits projected from its input
            sink_site = next((t.site for t in walk(s_aux) if t.site is not None), None)
            sink_projection = _sink_projection(ctx, rep, s_aux)
            if sink_projection == "other":
                ctx.unsupported(
                    "attention.sink_projection",
                    "per-token attention sinks not one projection (a logit per head) of the"
                    " attention's input: no rule yet",
                    sink_site.cite() if sink_site else where,
                )
            ctx.cite(
                "attention.sinks",
                (sink_site.cite() if sink_site else where)
                + (
                    f" ({sink_projection} of the attention's input, one logit per head)"
                    if sink_projection != "other"
                    else " (projected from another tensor than the attention's input)"
                ),
            )
        cap = rep.kernel.kwargs.get("softcap")
        if isinstance(cap, int | float) and not isinstance(cap, bool):
            softcap = True
            ctx.cite("attention.softcap", f"{where} (softcap={cap})")
        elif cap is not None and not isinstance(cap, int | float):
            softcap = UNKNOWN
            ctx.cite("attention.softcap", where)
        scaling = rep.kernel.kwargs.get("scaling")
        unscaled = scaling is None and _unscaled_inline(rep.kernel)
        if unscaled:
            scaling = 1.0  # softmax(q @ k^T) written out with no factor on the scores
        qkv = _qkv(rep.kernel)
        if isinstance(scaling, int | float) and qkv:
            # parts of a latent's up-projection times a number are the latent scaled
            # (attention.latent_scale: LongCat-Flash's q_pass, q_rot * mla_scale_q_lora)
            latent = latent_norms(ctx, rep.rec) if rep.mla else {}
            for t in walk(qkv[0]):  # OPT-style: q_proj(x) * scaling, kernel scaling=1.0
                if t.op == "mul" and not any(up_projected_part(a, latent) for a in t.args):
                    consts = [
                        a for a in t.args if isinstance(a, int | float) and not isinstance(a, bool)
                    ]
                    # the queries themselves, not a factor of a multiplier, nor a latent
                    # the query up-projection still reads (MLA's rescaled query latent)
                    on_q = any(
                        isinstance(a, Term)
                        and rep.q_lins
                        and all(depends(a, lin) for lin in rep.q_lins)
                        for a in t.args
                    )
                    if len(consts) == 1 and len(t.args) == 2 and on_q:
                        scaling = scaling * consts[0]
        q_head = (q_out // num_heads) if (q_out and num_heads) else head_dim
        if isinstance(scaling, int | float) and q_head:
            if abs(scaling - q_head**-0.5) > 1e-6 * max(1.0, abs(scaling)):
                # a config value that happens to be 1.0 (granite's attention_multiplier) is
                # still a custom scale; only scores written out with no factor are unscaled
                scale = "none" if unscaled and scaling == 1.0 else "custom"
                ctx.cite("attention.scale", f"{where} (scaling={scaling:.6g}, head_dim {q_head})")
        elif scaling is not None and not isinstance(scaling, int | float):
            scale = UNKNOWN
    else:
        sinks = softcap = UNKNOWN
        scale = UNKNOWN
    # manual tanh on scores (eager attention written inline)
    if softcap is False and rep.trace is not None:
        for t in rep.trace.terms:
            if t.op == "fn" and t.name.endswith("tanh") and rep.q_lins:
                if any(any(x is lin for x in walk(t)) for lin in rep.q_lins):
                    softcap = True
                    ctx.cite("attention.softcap", t.site.cite() if t.site else cite_rec)
    if "attention.sinks" not in ctx.evidence:
        ctx.cite("attention.sinks", where)
    if "attention.softcap" not in ctx.evidence:
        ctx.cite("attention.softcap", where)
    if "attention.scale" not in ctx.evidence:
        ctx.cite("attention.scale", where)

    upcast = _scores_upcast(rep.kernel) if rep.kernel is not None else None
    ctx.cite("attention.scores_fp32", f"{upcast} (q, k in fp32)" if upcast else where)
    normed = _sub_norm(ctx, rep)
    logn, diff = _extras(ctx, rep, head_dim, normed)
    if logn is None and diff is None:
        logn = _nope_logn(ctx, attn_layers, head_dim, normed)
    sub_norm = normed is not None and diff is None  # the differential's norm is its own
    if not sub_norm:
        ctx.cite("attention.sub_norm", where)
    if diff is None:
        ctx.cite("attention.differential", where)
    alibi = _alibi(ctx, rep)
    dynamic = dynamic_mask.detect(ctx, rep)
    if dynamic is None:
        ctx.cite(dynamic_mask.FEATURE, where)
    types = type_block.detect(ctx)
    layer_types = tuple(
        p["type"] if p["type"] != "mixer" else p.get("mixer", "mixer") for p in per_layer
    )
    return (
        Attention(
            kind=kind,
            qk_norm=qk_norm,
            qk_norm_weight=qk_norm_scope.has_weight(norm) if qk_norm != "none" else True,
            qk_norm_layers=qk_norm_scope.layers(per_layer) if qk_norm != "none" else "all",
            qk_norm_on=qk_norm_on,
            chunked=chunked,
            qkv_bias=qkv_bias,
            o_bias=o_bias,
            fused_qkv=fused_qkv,
            qkv_layout=qkv_layout,
            qkv_blocks=qkv_blocks,
            qkv_order=qkv_order,
            last_layer_o_bias=last_layer_o_bias(ctx, per_layer),
            sliding_window=sliding_window,
            sinks=sinks,
            sink_projection=sink_projection,
            softcap=softcap,
            scale=scale,
            num_heads=num_heads,
            num_kv_heads=num_kv,
            head_dim=head_dim,
            heads_field=size_reads[0],
            kv_heads_field=size_reads[1],
            head_dim_field=size_reads[2],
            window=window,
            window_rule=window_rule,
            window_field=window_field,
            layer_types=layer_types,
            logn=logn,
            alibi=alibi,
            dynamic_mask=dynamic,
            type_block=types,
            sub_norm=sub_norm,
            scores_fp32=upcast is not None,
            differential=diff,
            q_latent_raw=fused_q_gate.latent_and_raw(ctx, rep.q_lins),
            **gate,
        ),
        shared,
    )


def _output_gate(ctx: Ctx, rep: AttnInfo, q_mods: list) -> dict:
    """The attention output multiplied by `sigmoid(gate)` before the output projection.

    `sigmoid` when the gate is a projection of its own of the attention input (AFMoE's
    `gate_proj`), optionally plus a learned per-head bias added before the sigmoid;
    `sigmoid_fused_q` when the gate comes out of the query projection (its rows' layout read
    by `fused_q_gate`); `other` for a gate
    of another shape. Read from the data flow, so any attribute names do."""
    trace = rep.trace
    if trace is None or rep.kernel is None:
        ctx.cite("attention.output_gate", ctx.class_site(rep.rec))
        return {"output_gate": UNKNOWN}
    where = rep.kernel.site.cite() if rep.kernel.site else ctx.class_site(rep.rec)
    gates = []
    for oc in (t for t in trace.terms if t.op == "call" and t.module is rep.o_lin):
        for t in walk(oc):
            if t.op != "mul" or not any(x is rep.kernel for x in walk(t)):
                continue
            for a in t.args:
                if not isinstance(a, Term) or depends(a, rep.kernel):
                    continue
                sig = [x for x in walk(a) if x.op == "fn" and x.name.endswith(_GATE_FNS)]
                if sig:
                    gates.append((t, sig[0]))
    if not gates:
        ctx.cite("attention.output_gate", where)
        return {"output_gate": "none"}
    mul, sig = gates[0]
    ctx.cite("attention.output_gate", mul.site.cite() if mul.site else where)
    lins = _linears(sig, ctx)
    fused = [lin for lin in lins if any(lin.module is q for q in q_mods)]
    if fused:
        names = {id(c): n for n, c in rep.rec.children()}
        return {
            "output_gate": "sigmoid_fused_q",
            "gate_proj": names.get(id(fused[0].module)),
            **fused_q_gate.read(rep, sig, fused[0]),
        }
    names = {id(c): n for n, c in rep.rec.children()}
    if len(lins) != 1 or id(lins[0].module) not in names:
        return {"output_gate": "other"}
    gate = lins[0].module
    # what else reaches the sigmoid: nothing, or one per-head parameter added to the gate
    head_bias = None
    for t in walk(sig):
        if t.op == "param":
            param = t.module
            shape = getattr(param, "shape", ())
            name = names.get(id(param))
            if (
                name is None
                or len(shape) != 1
                or not any(x.op == "add" and any(y is t for y in walk(x)) for x in walk(sig))
            ):
                return {"output_gate": "other"}
            head_bias = name
        elif t.op in ("mul", "div", "sub", "matmul", "call") and t is not lins[0]:
            if t.op != "call" or any(x is lins[0] for x in walk(t)):
                return {"output_gate": "other"}
    bias = linear_bias(gate)
    ctx.cite("attention.gate_proj", ctx.site(gate))
    return {
        "output_gate": "softplus" if sig.name.endswith("softplus") else "sigmoid",
        "gate_proj": names[id(gate)],
        "gate_bias": UNKNOWN if bias is None else bias,
        "gate_head_bias": head_bias,
        "gate_per_head": _per_head_gate(gate, rep.o_lin),
        "gate_fp32": fused_q_gate.gate_upcast(sig),
    }


# activations an output gate goes through: sigmoid (AFMoE), softplus (laguna)
_GATE_FNS = ("sigmoid", "softplus")


def _per_head_gate(gate: ModuleRec, o_lin: ModuleRec | None) -> bool:
    """One gate per head: the gate projection has fewer outputs than the output projection
    has inputs, a whole fraction of them (laguna's `num_heads` against heads * head_dim)."""
    out = gate.args[1] if len(gate.args) > 1 else gate.kwargs.get("out_features")
    width = None
    if o_lin is not None:
        width = o_lin.args[0] if o_lin.args else o_lin.kwargs.get("in_features")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (out, width)):
        return False
    return out < width and width % out == 0


def _qkv_layout(views: list[tuple], heads, kv, head_dim) -> str:
    """Row layout of a fused q/k/v projection, from the shapes its output is viewed as
    before the split (read from the last axes, whatever the leading ones): none with a head
    axis -> contiguous `[q | k | v]`; `(heads + 2 * kv, d)` -> contiguous by heads;
    `(kv, group + 2, d)` -> grouped per kv head; `(heads, 3, d)` or `(heads, 3 * d)` ->
    interleaved per head."""
    if not all(isinstance(n, int) for n in (heads, kv, head_dim)) or not kv:
        return UNKNOWN
    group = heads // kv
    for shape in views:
        if shape and shape[0] == "unflatten":
            sizes = [d for d in shape[2:] if isinstance(d, int)]
            if sizes and sizes[0] == 3 and len(sizes) == 2:
                return "contiguous"  # (3, hidden): the three blocks one after another
            shape = tuple(shape[2:])
        dims = [d if isinstance(d, int) and not isinstance(d, bool) else None for d in shape]
        last = dims[-1] if dims else None
        before = dims[-2] if len(dims) >= 2 else None
        if last == head_dim and before == heads + 2 * kv:
            return "contiguous"
        if kv != heads and (
            (last == head_dim and before == group + 2) or last == (group + 2) * head_dim
        ):
            return "grouped"
        if kv == heads and ((last == head_dim and before == 3) or last == 3 * head_dim):
            return "interleaved"
        if _size(before) and before > 1 and not (_size(last) and last > 0):
            # `(4, -1)`: blocks of rows, each split on its own (codegen's mp_num blocks of
            # q|v|k); only three whole blocks of equal heads are the plain [q | k | v]
            return "contiguous" if before == 3 and kv == heads else UNKNOWN
    if any(len(shape) >= 4 for shape in views):
        return UNKNOWN  # a head axis this reading does not know
    if any(not any(_size(d) for d in shape) for shape in views):
        # viewed as a shape none of whose sizes was evaluated (`x.size()[:-1] + (4, -1)`):
        # some split the reading cannot see, not the plain [q | k | v]
        return UNKNOWN
    return "contiguous"


def _blocked(rep: AttnInfo, calls: list, views: list[tuple], heads, kv):
    """(blocks, part order) of a fused projection whose output is viewed as `(B, -1)` row
    blocks, each then split on its last axis into three equal parts, one of each of q, k, v
    (codegen: 4 blocks of q | v | k -> (4, "qvk")); None for anything else."""
    if not (_size(heads) and heads == kv) or rep.kernel is None or rep.trace is None:
        return None
    blocks = {
        v[-2]
        for v in views
        if len(v) >= 2 and _size(v[-2]) and v[-2] > 1 and not (_size(v[-1]) and v[-1] > 0)
    }
    out = _dims(calls[0].module)[1] if calls else None
    if len(blocks) != 1 or not out:
        return None
    count = blocks.pop()
    parts = [a for a in rep.kernel.args if isinstance(a, Term)][:3]
    for t in rep.trace.terms:
        if not (t.op == "split" or (t.op == "fn" and t.name.rsplit(".", 1)[-1] == "split")):
            continue
        if not t.args or not any(strip(t.args[0]) is c for c in calls) or len(parts) != 3:
            continue
        if not (len(t.args) > 1 and _size(t.args[1]) and t.args[1] * 3 * count == out):
            return None
        order = {}
        for role, part in zip("qkv", parts, strict=True):
            found = {
                int(x.name)
                for x in walk(part)
                if x.op == "index" and x.args and x.args[0] is t and x.name in ("0", "1", "2")
            }
            if len(found) != 1:
                return None
            order[role] = found.pop()
        if sorted(order.values()) != [0, 1, 2]:
            return None
        return count, "".join(sorted(order, key=order.get))
    return None


def _equal_thirds(rep: AttnInfo, fused: ModuleRec) -> int | None:
    """The width of each part when the fused projection's output is split into three equal
    ones (`x.split(n_state, dim=2)` of a `3 * n_state` output, `x.chunk(3, -1)`), else None."""
    out = _dims(fused)[1]
    if not out or rep.trace is None:
        return None
    calls = [t for t in rep.q_lins or [] if t.module is fused]
    for t in rep.trace.terms:
        if t.op != "split" or not t.args or not any(strip(t.args[0]) is c for c in calls):
            continue
        size = t.args[1] if len(t.args) > 1 else None
        if not _size(size) or size <= 0:
            continue
        if t.name == "chunk" and size == 3 and out % 3 == 0:
            return out // 3
        if t.name == "split" and size * 3 == out:
            return size
    return None


def _size(dim) -> bool:
    return isinstance(dim, int) and not isinstance(dim, bool)


def _last_projection(lins, ctx: Ctx) -> ModuleRec | None:
    """The projection applied last on a path (the one no other projection consumes)."""
    if not lins:
        return None
    for t in lins:
        if not any(other is not t and any(x is t for x in walk(other)) for other in lins):
            return t.module
    return lins[0].module


def _sub_norm(ctx: Ctx, rep: AttnInfo) -> ModuleRec | None:
    """The norm module applied to the attention output before the output projection
    (BitNet's attn_sub_norm), cited where it is called."""
    trace = rep.trace
    if trace is None or rep.kernel is None:
        return None
    roles = ctx.roles
    for oc in (t for t in trace.terms if t.op == "call" and t.module is rep.o_lin):
        normed = [
            t
            for t in walk(oc)
            if t is not oc
            and t.op == "call"
            and isinstance(t.module, ModuleRec)
            and roles.role(t.module) == NORM
            and depends(t, rep.kernel)
        ]
        if normed:
            where = normed[0].site.cite() if normed[0].site else ctx.class_site(rep.rec)
            ctx.cite("attention.sub_norm", where)
            return normed[0].module
    return None


def _extras(ctx: Ctx, rep: AttnInfo, head_dim, normed: ModuleRec | None):
    """Attention features that no field represents; returns the logn query scale (its
    constants as config fields) where the queries have one of the form `logn_scale` reads,
    and the differential attention's lambdas (`differential.read`) where it has them."""
    trace = rep.trace
    logn = None
    if trace is None or rep.kernel is None:
        return logn, None
    # differential attention: one part of the attention output subtracted from another
    for t in trace.terms:
        if t.op == "sub" and all(
            isinstance(a, Term) and depends(a, rep.kernel) for a in t.args[:2]
        ):
            where = t.site.cite() if t.site else ctx.class_site(rep.rec)
            found = differential.read(ctx, rep.rec, head_dim)
            if found is not None and normed is not None and _weightless(normed):
                ctx.cite("attention.differential", where)
                return logn, found
            ctx.unsupported(
                "attention.differential",
                "differential attention: one part of the attention output (scaled by learned "
                "parameters) subtracted from the other",
                where,
            )
            break
    # clipping of q/k/v
    for t in trace.terms:
        bounds = [t.kwargs.get("min"), t.kwargs.get("max"), *t.args[1:]]
        if all(b is None for b in bounds):
            continue  # clamp(min=None, max=None): configured off
        if t.op == "fn" and t.name in ("clamp", "clamp_", "clip") and rep.q_lins:
            if any(any(x is lin for x in walk(t)) for lin in rep.q_lins):
                ctx.unsupported(
                    "attention.qkv_clip",
                    "q/k/v activations clamped",
                    t.site.cite() if t.site else None,
                )
                break
    # alibi / relative position biases passed to the kernel
    # (`position_bias`: a learned relative bias, read across layers by relative_bias.py)
    for key in ("alibi", "relative_position_bias"):
        if key in rep.kernel.kwargs and rep.kernel.kwargs[key] is not None:
            ctx.unsupported(
                "attention.position_bias", key, rep.kernel.site.cite() if rep.kernel.site else None
            )
    # logn scaling: queries multiplied by a log of the positions (not data-dependent)
    q = _qkv(rep.kernel)[0] if len(_qkv(rep.kernel)) == 3 else None
    if q is not None and rep.q_lins:
        for t in walk(q):
            if t.op != "mul" or not any(
                isinstance(a, Term) and any(depends(a, lin) for lin in rep.q_lins) for a in t.args
            ):
                continue  # not a product with the queries (a factor inside the multiplier)
            for a in t.args:
                if not isinstance(a, Term) or any(depends(a, lin) for lin in rep.q_lins):
                    continue
                if any(x.op == "fn" and x.name.rsplit(".", 1)[-1] in _LOGS for x in walk(a)):
                    where = t.site.cite() if t.site else ctx.class_site(rep.rec)
                    init = rep.rec.cls and ctx.model.project.find_method(rep.rec.cls, "__init__")
                    logn = _logn(ctx, a, where, t.site, *([init[1]] if init else []))
                    if logn is None:
                        ctx.unsupported(
                            "attention.logn_scale",
                            "queries scaled by a log of the position (logn attention)",
                            where,
                        )
                    break
    return logn, None


def _alibi(ctx: Ctx, rep: AttnInfo) -> bool:
    """An ALiBi bias on the scores: an `alibi` input of the kernel, or, where the file computes
    ALiBi slopes and applies no rotary, an input added to the scores (cited at the kernel)."""
    if rep.trace is None or rep.kernel is None:
        return False
    slopes = _alibi_slopes(ctx) if rep.rope_fn is None else None
    if any(
        isinstance(a, Term) and a.op == "input" and a.name == "alibi"
        for a in terms_in(list(rep.kernel.args))
    ) or (slopes and _score_bias_inputs(rep)):
        where = rep.kernel.site.cite() if rep.kernel.site else ctx.class_site(rep.rec)
        ctx.cite("attention.alibi", where + (f" (per-head slopes at {slopes})" if slopes else ""))
        return True
    return False


def _logn(ctx: Ctx, scale: Term, where: str, site, *more) -> dict | None:
    """The query multiplier as `logn_scale` reads it, with its constants named by the config
    reads of the method that multiplies holding them; None when either part is missing."""
    parsed = logn_scale.parse(scale)
    if parsed is None or site is None:
        return None
    beta, period, offset = parsed
    method = site.method or site.scope or site.node
    # `more`: the attention's __init__, where the constants may be read into attributes
    reads = logn_scale.config_reads(ctx.model.config, method, *more)
    fields = [logn_scale.config_field(value, reads) for value in (beta, period)]
    if None in fields:
        return None
    # the fields stay out of the evidence: it becomes the package's prose, and a key may
    # carry another model's name (Ministral3's "llama_4_scaling_beta")
    ctx.cite("attention.logn", f"{where} (q * (1 + beta * log(1 + floor(position / period))))")
    found = {"beta": fields[0], "period": fields[1], "offset": offset}
    if logn_scale.positions_of(scale) == "index":  # arange(seq), not the position ids
        found["positions"] = "index"
    return found


def _nope_logn(ctx: Ctx, attn_layers: list[dict], head_dim, normed) -> dict | None:
    """A logn query scale that only the layers without RoPE apply (Llama4's temperature
    tuning on its NoPE layers), read from the first of them; None otherwise."""
    nope = [p for p in attn_layers if not p["rope"] and p.get("info") is not None]
    if not nope or len(nope) == len(attn_layers):
        return None
    found, _ = _extras(ctx, nope[0]["info"], head_dim, normed)
    if found is None:
        found = _supplied_query_scale(ctx, nope[0])
    return {**found, "layers": "nope"} if found else None


def _supplied_query_scale(ctx: Ctx, layer_facts: dict) -> dict | None:
    """A query multiplier the stack computes and hands the layer (beam: `(1 + (pos + 1) /
    2048) ** 0.1` for its NoPE layers), as `logn_scale.parse_power` reads it with the
    stack traced as verify runs it (position ids given); its constants named by the config
    reads of the stack's forward holding them, else the code's own numbers. None where the
    queries are multiplied by no input, or by one of another form (named unsupported)."""
    info: AttnInfo = layer_facts["info"]
    owner = ctx.model.stack_owner
    if not info.q_lins or owner is None:
        return None
    layer = ctx.model.layers[layer_facts["index"]]
    stack = supplied_inputs.trace_with(ctx, owner, ["position_ids"])
    calls = [t for t in stack.terms if t.op == "call" and t.module is layer]
    attention = [t for t in ctx.trace(layer).terms if t.op == "call" and t.module is info.rec]
    if len(calls) != 1 or len(attention) != 1:
        return None
    given = supplied_inputs.bind(ctx, layer, calls[0])
    optional = supplied_inputs.optional(ctx, info.rec)
    present = {}  # optional inputs of the attention the stack computes for this layer
    for name, handed in supplied_inputs.bind(ctx, info.rec, attention[0]).items():
        if name in optional and isinstance(handed, Term) and handed.op == "input":
            if isinstance(given.get(handed.name), Term):
                present[name] = given[handed.name]
    if not present:
        return None
    q_modules = [t.module for t in info.q_lins]
    product = scale = None
    for t in supplied_inputs.trace_with(ctx, info.rec, present).terms:
        if t.op != "mul":
            continue
        inputs = [strip(a) for a in t.args if isinstance(strip(a), Term)]
        named = [a for a in inputs if a.op == "input" and a.name in present]
        queries = any(
            x.op == "call" and any(x.module is q for q in q_modules)
            for a in t.args
            if isinstance(a, Term)
            for x in walk(a)
        )
        if named and queries:
            product, scale = t, present[named[0].name]
            break
    if product is None:
        return None
    where = product.site.cite() if product.site else ctx.class_site(info.rec)
    parsed = logn_scale.parse_power(scale)
    if parsed is None:
        ctx.unsupported(
            "attention.logn_scale",
            "queries scaled by a position-dependent factor the stack computes, of no form read yet",
            where,
        )
        return None
    exponent, period, offset, positions = parsed
    method = scale.site.method or scale.site.scope or scale.site.node if scale.site else None
    reads = logn_scale.config_reads(ctx.model.config, method) if method is not None else {}
    named = [logn_scale.config_field(value, reads) or value for value in (exponent, period)]
    node = product.site.node if product.site else None
    fp32 = isinstance(node, cst.BinaryOperation) and any(
        upcast(side) for side in (node.left, node.right)
    )
    ctx.cite(
        "attention.logn",
        f"{where} (q * (1 + (position + offset) / period) ** exponent"
        f"{', in fp32' if fp32 else ''})",
    )
    return {
        "form": "power",
        "exponent": named[0],
        "period": named[1],
        "offset": offset,
        "positions": positions,
        "fp32": fp32,
    }


_LOGS = ("log", "log2", "log1p", "log10")


def _score_bias_inputs(rep: AttnInfo) -> list[Term]:
    """Inputs of the attention (other than the hidden states) added to its scores or handed
    to the kernel as its mask."""
    kernel = rep.kernel
    out = []
    if kernel.name == "<inline softmax attention>":
        for t in walk(kernel.kwargs.get("_anchor", kernel)):
            if t.op == "add":
                # a bias cropped to the query/key lengths first (`bias[:, q0:, k0:]`) is that input
                out += [
                    a for a in map(_unsliced, t.args) if isinstance(a, Term) and a.op == "input"
                ]
    else:
        out += [a for a in terms_in(list(kernel.args)[3:]) if a.op == "input"]
        out += [a for a in terms_in(list(kernel.kwargs.values())) if a.op == "input"]
    return [a for a in out if not a.kwargs.get("primary")]


def _unsliced(term):
    """The tensor a chain of subscripts (`x[:, a:, b:]`) reads from."""
    while isinstance(term, Term) and term.op == "index" and term.args:
        term = term.args[0]
    return term


def _alibi_slopes(ctx: Ctx) -> str | None:
    """A function of the modeling file computing ALiBi slopes: powers of two from log2 of the
    head count over a range (`2 ** (-8 / n * arange(1, n + 1))` and its variants)."""
    sf = ctx.model.modeling
    functions = list(sf.functions.values())
    for cls in sf.classes.values():
        functions += list(cls.methods.values())
    for fn in functions:
        sig = ctx.roles.function_signals(sf, fn)
        if "arange" in sig.ops and "log2" in sig.ops and (sig.power or "pow" in sig.ops):
            return sf.cite(fn)
    return None


def depends(term: Term, target: Term) -> bool:
    return any(x is target for x in walk(term))
