"""Mixture of experts: router maths, shared experts, dense layers, expert layout.

The MoE block's forward and its router's forward are traced. Router facts are read from the
terms derived from the router logits: softmax vs sigmoid scores, how many top-k selections
(two or more: group-limited selection), a parameter added to the scores before selection (a
correction bias used for choice only), a division of the selected weights by their sum
(renormalisation), a constant multiplying them (routed scaling).
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as cm

from codegen.analyze import detect_init, sparse_mixer, zero_experts
from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, first_output, strip, walk
from codegen.analyze.detect_ffn import experts_of, ffn_modules, shared_mlps
from codegen.analyze.evaluate import ModuleListRec, ModuleRec, ParamRec
from codegen.analyze.features import UNKNOWN, Moe
from codegen.analyze.model import linear_bias
from codegen.analyze.roles import CONTAINER, LINEAR, MLP, MOE, NORM, OTHER, ROUTER
from codegen.analyze.router_dtype import fp32_projection, half_activation, half_sigmoid_site
from codegen.analyze.switches import act_field
from codegen.analyze.walk import findall


def _last(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _fn(t: Term, *names: str) -> bool:
    return t.op == "fn" and _last(t.name) in names


# elementwise scores the sigmoid router's picking, renormalising and scaling carry over to
# unchanged: positive, monotone in the logits (DeepSeek-V4's sqrt(softplus(logits)))
SCORE_ACTIVATIONS = ("sqrtsoftplus",)


def _score_act(t: Term) -> str | None:
    """The name of a score activation of SCORE_ACTIVATIONS `t` applies (an `ACT2FN` module
    chosen by a config field), else None."""
    if t.op != "act":
        return None
    name = getattr(t.module, "name", None) or t.name
    return name if name in SCORE_ACTIVATIONS else None


def _added_constant(den: Term) -> float | None:
    """The positive number `den` adds to a sum (`weights.sum(...) + 1e-20`), else None."""
    if den.op != "add" or not any(_fn(x, "sum") for x in den.args if isinstance(x, Term)):
        return None
    consts = [a for a in den.args if isinstance(a, int | float) and not isinstance(a, bool)]
    return float(consts[0]) if len(consts) == 1 and consts[0] > 0 else None


_CLAMP = cm.Call(func=cm.Attribute(attr=cm.Name("clamp") | cm.Name("clamp_min")))
_CONFIG = cm.Name("config") | cm.Attribute(value=cm.Name("self"), attr=cm.Name("config"))


def _floor(den: Term, site) -> str | float | None:
    """What `den` clamps the sum of the picked weights to at least (`torch.clamp(w.sum(...),
    min=self.norm_min)`, Ernie-4.5's router): the config field the bound reads (`moe_norm_min`,
    through the `self.<attr> = config.<field>` of the class the division is in), or the
    number written there; None when `den` clamps no sum."""
    if not (_fn(den, "clamp", "clamp_min") and any(_fn(x, "sum") for x in walk(den))):
        return None
    calls = findall(site.node, _CLAMP) if site is not None else []
    if len(calls) == 1:
        field = _config_field_of(_bound(calls[0]), site.scope)
        if field is not None:
            return field
    bound = den.kwargs.get("min", den.args[1] if len(den.args) > 1 else None)
    return float(bound) if isinstance(bound, int | float) and not isinstance(bound, bool) else None


def _bound(call: cst.Call) -> cst.BaseExpression | None:
    """The lower bound a clamp call passes: `min=`, else its first positional argument after
    the tensor (`torch.clamp(x, b)`, `x.clamp(b)`)."""
    position = 1 if cm.matches(call.func, cm.Attribute(value=cm.Name("torch"))) else 0
    positional = [arg.value for arg in call.args if arg.keyword is None]
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value in ("min", "min_"):
            return arg.value
    return positional[position] if len(positional) > position else None


def _config_field_of(node, scope) -> str | None:
    """`config.<f>` / `self.config.<f>` -> f; `self.<attr>` -> the field of the one
    `self.<attr> = config.<f>` in `scope` (the class); else None."""
    if node is None:
        return None
    if cm.matches(node, cm.Attribute(value=_CONFIG)):
        return node.attr.value
    if scope is None or not cm.matches(node, cm.Attribute(value=cm.Name("self"))):
        return None
    target = cm.Attribute(value=cm.Name("self"), attr=cm.Name(node.attr.value))
    stores = findall(
        scope, cm.Assign(targets=[cm.AssignTarget(target)], value=cm.Attribute(value=_CONFIG))
    )
    return stores[0].value.attr.value if len(stores) == 1 else None


def _score_field(terms: list[Term]):
    """The config field an activation module among `terms` is looked up by
    (`ACT2FN[config.scoring_func]`) and where: the one the router's scores follow; None
    when they are a call the code names itself."""
    for t in terms:
        site = getattr(t.module, "site", None) if t.op == "act" else None
        field = act_field(site.node) if site is not None else None
        if field:
            return field, site
    return None, None


def _scores(t: Term, *names: str) -> bool:
    """A call of one of `names`, or an activation module resolved to one of them (the
    router's `ACT2FN[config.scoring_func]` where the config names sigmoid)."""
    if t.op == "act":
        return getattr(t.module, "name", None) in names
    return _fn(t, *names)


def _router(ctx: Ctx, moe: ModuleRec, skip: set) -> tuple[str | None, object]:
    roles = ctx.roles
    candidates = []
    for name, child in moe.children():
        if id(child) in skip:
            continue
        if isinstance(child, ModuleRec):
            role = roles.role(child)
            if role == ROUTER:
                return name, child
            # a child read as an MoE of its own beside the block's experts (its top-k over
            # scores an MLP computes: zaya's router) is the router
            if role == LINEAR or role in (CONTAINER, OTHER, MOE):
                candidates.append((name, child))
        elif isinstance(child, ParamRec) and child.kind == "parameter" and len(child.shape) == 2:
            candidates.append((name, child))
    for name, child in candidates:
        if isinstance(child, ModuleRec) and roles.role(child) == LINEAR:
            args = list(child.args)
            out = args[1] if len(args) > 1 else child.kwargs.get("out_features")
            if out != 1:
                return name, child
        elif isinstance(child, ModuleRec):
            if any(
                isinstance(g, ModuleRec) and roles.role(g) == LINEAR for _, g in child.children()
            ):
                return name, child
        else:
            return name, child
    return None, None


def _num_experts(ctx: Ctx, router, experts) -> int | str:
    if isinstance(router, ModuleRec):
        weight = router.attrs.get("weight")
        if isinstance(weight, ParamRec) and weight.shape and isinstance(weight.shape[0], int):
            return weight.shape[0]
        lin = router if ctx.roles.role(router) == LINEAR else None
        linears = [
            g
            for _, g in router.children()
            if isinstance(g, ModuleRec) and ctx.roles.role(g) == LINEAR
        ]
        computed = [  # zaya's router MLP: its logits' rows also score a skip class
            g for _, g in router.children() if isinstance(g, ModuleRec) and ctx.roles.role(g) == MLP
        ]
        if lin is None and len(linears) == 1 and not computed:
            lin = linears[0]
        if lin is not None:  # several, or an MLP: a computed router, counted by the experts
            args = list(lin.args)
            out = args[1] if len(args) > 1 else lin.kwargs.get("out_features")
            if isinstance(out, int):
                return out
    if isinstance(router, ParamRec) and router.shape and isinstance(router.shape[0], int):
        return router.shape[0]
    if isinstance(experts, ModuleListRec):
        return len(experts.items)
    if isinstance(experts, ModuleRec):
        for _, p in experts.children():
            if isinstance(p, ParamRec) and len(p.shape) == 3 and isinstance(p.shape[0], int):
                return p.shape[0]
    return UNKNOWN


def _weights_on(expert_calls: list[Term], router_calls: list[Term]) -> str:
    """`input` when the routing weights multiply what the experts are given (Llama4's
    `routed_in * router_scores`), else `output`."""
    for call in expert_calls:
        first = call.args[0] if call.args else None
        if isinstance(first, Term) and any(
            x.op == "mul" and any(any(y is rc for y in walk(x)) for rc in router_calls)
            for x in walk(first)
        ):
            return "input"
    return "output"


def _own_forward(ctx: Ctx, router: ModuleRec) -> bool:
    """A projection subclass that routes in a forward of its own (`class Router(nn.Linear)`
    whose forward picks the experts)."""
    return (
        router.cls is not None and ctx.model.project.find_method(router.cls, "forward") is not None
    )


def _int_arg(t: Term, index: int, key: str):
    value = t.args[index] if len(t.args) > index else t.kwargs.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def detect(ctx: Ctx) -> Moe | None:
    modules = ffn_modules(ctx)
    moes = [(i, rec, path) for i, (role, rec, path) in sorted(modules.items()) if role == MOE]
    if not moes:
        return None
    roles = ctx.roles
    # the router facts are a top-k router's: a block picking by table (moe.table_routing)
    # is read only where every block does
    from codegen.analyze.router_forms import table_routed  # it reads this module's names

    index, moe, moe_path = next((b for b in moes if not table_routed(ctx, b[1])), moes[0])
    exp_name, experts = experts_of(ctx, moe)
    shared = shared_mlps(ctx, moe)
    skip = {id(experts)} | {id(r) for _, r in shared}
    router_name, router = _router(ctx, moe, skip)
    moe_site = ctx.class_site(moe)

    # -- traces: the block, and the router when it is a module of its own ----------------------
    block = ctx.trace(moe)
    terms = list(block.terms)
    router_terms: list[Term] = []
    inside = {id(router)} | (
        {id(r) for _, r in _descendants(router)} if isinstance(router, ModuleRec) else set()
    )
    router_calls = [
        t for t in block.terms if t.op == "call" and router is not None and id(t.module) in inside
    ]
    if (
        isinstance(router, ModuleRec)
        and router.cls is not None
        and (roles.role(router) not in (LINEAR,) or _own_forward(ctx, router))
    ):
        rt = ctx.trace(router)
        router_terms = list(rt.terms)
    # terms derived from the router output inside the block
    derived = [t for t in terms if any(any(x is rc for x in walk(t)) for rc in router_calls)]
    if isinstance(router, ParamRec):
        derived = [t for t in terms if any(x.op == "param" and x.module is router for x in walk(t))]
    rterms = router_terms + derived
    shared_calls = [t for t in terms if t.op == "call" and any(t.module is r for _, r in shared)]
    rterms = [t for t in rterms if not any(any(x is sc for x in walk(t)) for sc in shared_calls)]
    topks = [t for t in rterms if _fn(t, "topk")]
    softmax = [t for t in rterms if _scores(t, "softmax", "log_softmax")]
    sigmoid = [t for t in rterms if _scores(t, "sigmoid")]
    activated = [t for t in rterms if _score_act(t)]
    score_activation = None
    if activated and not sigmoid and not softmax:
        # scored as a sigmoid router is, by another elementwise activation
        sigmoid, score_activation = activated, _score_act(activated[0])
    site = activated[0].site if activated else None
    ctx.cite("moe.score_activation", site.cite() if site else ctx.class_site(moe))
    score_field, field_site = _score_field(sigmoid + softmax)
    if score_field:
        ctx.cite("moe.score_field", field_site.cite())
    if softmax and not sigmoid:
        score = "softmax"
    elif sigmoid and not softmax:
        score = "sigmoid"
    elif softmax and sigmoid:
        score = "other"
    else:
        score = UNKNOWN if not topks else "other"
    grouped = len(topks) >= 2
    if grouped:
        router_kind = "grouped_topk"
    elif score == "sigmoid" and topks:
        router_kind = "sigmoid_topk"
    elif score == "softmax" and topks:
        router_kind = "softmax_topk"
    elif topks:
        router_kind = "other"
    else:
        router_kind = UNKNOWN
    mixer_picks = sparse_mixer.picks(rterms) if isinstance(router, ModuleRec) else 0
    jitter = None
    if mixer_picks:  # picks by chained max over masked logits (PhiMoE's sparsemixer)
        router_kind, score = "sparsemixer", "softmax"
        jitter = sparse_mixer.jitter_field(ctx.model.project, ctx.trace(router).tracer, router)
    where = (topks[-1].site.cite() if topks and topks[-1].site else None) or ctx.class_site(
        router if isinstance(router, ModuleRec) else moe
    )
    ctx.cite("moe.router", where)
    ctx.cite(
        "moe.score_func",
        (softmax or sigmoid or topks or [None])[0].site.cite()
        if (softmax or sigmoid) and (softmax or sigmoid)[0].site
        else where,
    )
    top_k: int | str = UNKNOWN
    if topks:
        value = _int_arg(topks[-1], 1, "k")
        top_k = value if value is not None else UNKNOWN
        ctx.cite("moe.top_k", where)
    elif mixer_picks:
        top_k = mixer_picks
        maxes = [t for t in rterms if _fn(t, "max") and t.site]
        ctx.cite("moe.router", maxes[-1].site.cite() if maxes else where)
        ctx.cite("moe.top_k", ctx.evidence["moe.router"])

    # -- selection-only bias, renormalisation, scaling --------------------------------------------
    router_bias: bool | str = False
    router_bias_on = "scores"
    bias_param = None
    for t in rterms:
        if t.op != "add":
            continue
        params = [a for a in t.args if isinstance(a, Term) and _param_like(a)]
        if not params and _passes_param(router_calls):  # `self.gate(x, self.bias)`
            params = [a for a in t.args if isinstance(a, Term) and _extra_input(a)]
        scored = [
            a
            for a in t.args
            if isinstance(a, Term)
            and any(_scores(x, "sigmoid", "softmax") or _score_act(x) for x in walk(a))
        ]
        picks = any(any(x is t for x in walk(k)) for k in topks)
        if params and scored and picks:
            router_bias = True
            unscored = [a for a in params if not any(a is b for b in scored)]
            bias_param = _bias_param(unscored, router_calls)
            ctx.cite("moe.router_bias", t.site.cite() if t.site else where)
            break
        tensors = [a for a in params if _only_tensors(a)]
        if tensors and picks and _scored_apart(t, softmax + sigmoid, topks):
            # added to the raw logits, which are scored apart from it (kolibri1): the bias
            # picks the experts, the unbiased logits weight them
            router_bias, router_bias_on = True, "logits"
            bias_param = _bias_param(tensors, router_calls)
            ctx.cite("moe.router_bias", t.site.cite() if t.site else where)
            ctx.cite("moe.router_bias_on", t.site.cite() if t.site else where)
            break
    if "moe.router_bias" not in ctx.evidence:
        ctx.cite("moe.router_bias", where)
    if "moe.router_bias_on" not in ctx.evidence:
        ctx.cite("moe.router_bias_on", ctx.evidence.get("moe.router_bias", where))
    norm, norm_by, norm_eps, norm_floor = False, "none", None, None
    for t in rterms:
        if t.op == "div" and topks:
            num, den = (t.args + (None, None))[:2]
            if isinstance(num, Term) and isinstance(den, Term):
                if any(any(x is k for x in walk(num)) for k in topks) and any(
                    _fn(x, "sum", "norm", "clamp") for x in walk(den)
                ):
                    norm, norm_by = True, "division"
                    ctx.cite("moe.norm_topk_prob", t.site.cite() if t.site else where)
                    norm_eps = _added_constant(den)
                    if norm_eps is not None:
                        ctx.cite("moe.norm_topk_eps", t.site.cite() if t.site else where)
                    norm_floor = _floor(den, t.site)
                    if norm_floor is not None:
                        ctx.cite("moe.norm_topk_floor", t.site.cite() if t.site else where)
                    break
    if not norm:
        for s in softmax:  # softmax over the selected logits
            if any(any(x is k for x in walk(s)) for k in topks):
                norm, norm_by = True, "softmax"
                ctx.cite("moe.norm_topk_prob", s.site.cite() if s.site else where)
    if "moe.norm_topk_prob" not in ctx.evidence:
        ctx.cite("moe.norm_topk_prob", where)
    ctx.cite("moe.norm_topk_by", ctx.evidence.get("moe.norm_topk_prob"))
    if "moe.norm_topk_eps" not in ctx.evidence:
        ctx.cite("moe.norm_topk_eps", ctx.evidence.get("moe.norm_topk_prob"))
    if "moe.norm_topk_floor" not in ctx.evidence:
        ctx.cite("moe.norm_topk_floor", ctx.evidence.get("moe.norm_topk_prob"))
    scaling, scaling_on = None, "weights"
    # the experts' output scaled as a whole scales every routed weight alike (minimax_m3's
    # `experts(...) * routed_scaling_factor`, taken before the shared expert joins)
    expert_calls = [
        t for t in terms if t.op == "call" and experts is not None and t.module is experts
    ]
    weights_on = _weights_on(expert_calls, router_calls)
    calls_at = [c.site.cite() for c in expert_calls if c.site]
    ctx.cite("moe.weights_on", calls_at[0] if calls_at else moe_site)
    for t in rterms:
        picked = topks and any(any(x is k for x in walk(t)) for k in topks)
        if t.op == "mul" and (picked or any(any(x is e for x in walk(t)) for e in expert_calls)):
            consts = [a for a in t.args if isinstance(a, int | float) and not isinstance(a, bool)]
            if consts:
                scaling = float(consts[0])
                scaling_on = "weights" if picked else "output"
                ctx.cite("moe.routed_scaling", t.site.cite() if t.site else where)
    linear_b: bool | str = False
    ctx.cite("moe.router_linear_bias", ctx.site(router) if isinstance(router, ModuleRec) else where)
    if isinstance(router, ModuleRec):
        if roles.role(router) == LINEAR:
            flag = linear_bias(router)
            linear_b = UNKNOWN if flag is None else flag
        else:
            biases = [
                p
                for n, p in router.children()
                if isinstance(p, ParamRec) and p.kind == "parameter" and len(p.shape) == 1
            ]
            used = [
                t
                for t in router_terms
                if _fn(t, "linear")
                and len([a for a in t.args if isinstance(a, Term | ParamRec)]) >= 3
            ]
            linear_b = bool(biases and used)
            if linear_b and used[0].site is not None:
                ctx.cite("moe.router_linear_bias", used[0].site.cite())

    fp32, fp32_site = _router_fp32(ctx, moe, router_name, router)
    zero_init = _router_zero_init(ctx, moe, router_name, router)
    ctx.cite("moe.router_zero_init", zero_init or where)
    ctx.cite("moe.router_fp32", fp32_site or where)
    # sigmoid scores in the logits' dtype (not upcast first): bf16 in a bf16 model
    half_scores = None
    if not fp32 and score == "sigmoid":
        owners = [router.cls if isinstance(router, ModuleRec) else None, moe.cls]
        half_scores = half_sigmoid_site(ctx.model.project, owners)
    if not fp32 and score_activation and activated[0].site is not None:
        half_scores = half_activation(activated[0].site)
    ctx.cite("moe.scores_fp32", half_scores or fp32_site or where)

    # -- shared experts ----------------------------------------------------------------------------
    shared_gate = False
    for name, child in moe.children():
        if isinstance(child, ModuleRec) and roles.role(child) == LINEAR and child is not router:
            args = list(child.args)
            out = args[1] if len(args) > 1 else child.kwargs.get("out_features")
            if out == 1:
                shared_gate = True
                ctx.cite("moe.shared_expert_gate", ctx.attr_site(moe, name))
    if shared:
        ctx.cite("moe.shared_experts", ctx.attr_site(moe, shared[0][0].split(".")[0]))
    else:
        ctx.cite("moe.shared_experts", moe_site)
    if not shared_gate:
        ctx.cite("moe.shared_expert_gate", moe_site)
    shared_combine = "sum"
    for t in terms:
        if _averages(t, shared_calls):
            shared_combine = "average"
            ctx.cite("moe.shared_combine", t.site.cite() if t.site else moe_site)
            break
    if "moe.shared_combine" not in ctx.evidence:
        ctx.cite("moe.shared_combine", ctx.evidence.get("moe.shared_experts", moe_site))

    output_norm = _output_norm(ctx, moe, block)
    ctx.cite("moe.output_norm", output_norm[1] if output_norm else moe_site)

    # -- dense layers ------------------------------------------------------------------------------
    dense = tuple(i for i, (role, _, _) in sorted(modules.items()) if role in (MLP, "inline"))
    rule = _dense_rule(ctx)
    if dense:
        ctx.cite("moe.dense_layers", rule[1] if rule else moe_site)
    else:
        ctx.cite("moe.dense_layers", rule[1] if rule else ctx.class_site(ctx.model.layers[0]))
    # the condition is read where the layer builds its feed-forward slot; without one, that
    # slot is built unconditionally: the MoE block in every layer
    slot, _ = _layer_slot_site(ctx)
    if slot is not None:
        ctx.cite("moe.layer_condition", slot.cite())
    else:
        ctx.cite("moe.layer_condition", rule[1] if rule else ctx.evidence["moe.dense_layers"])
    if shared:  # the width is read from the shared expert's construction
        ctx.cite("moe.shared_size", ctx.evidence["moe.shared_experts"])

    # -- layout ------------------------------------------------------------------------------------
    module_layout: str = UNKNOWN
    expert_bias: bool | str = False
    if isinstance(experts, ModuleListRec):
        module_layout = "per_expert"
        items = [x for x in experts.items if isinstance(x, ModuleRec)]
        if items:
            flags = [
                linear_bias(c)
                for _, c in items[0].children()
                if isinstance(c, ModuleRec) and roles.role(c) == LINEAR
            ]
            expert_bias = any(f for f in flags if f)
    elif isinstance(experts, ModuleRec):
        params = _all_params(experts)
        stacked = [p for p in params if len(p.shape) == 3]
        module_layout = "fused"
        if stacked:
            n = stacked[0].shape[0]
            expert_bias = any(len(p.shape) == 2 and p.shape[0] == n for p in params)
        ctx.cite("moe.module_layout", ctx.attr_site(moe, exp_name))
    ctx.cite(
        "moe.expert_bias", ctx.class_site(experts) if isinstance(experts, ModuleRec) else moe_site
    )
    for key in ("moe.top_k", "moe.routed_scaling", "moe.module_layout"):
        if key not in ctx.evidence:
            ctx.cite(
                key, where if key != "moe.module_layout" else ctx.attr_site(moe, exp_name or "")
            )
    num_experts = _num_experts(ctx, router, experts)
    ctx.cite(
        "moe.num_experts",
        ctx.site(router)
        if isinstance(router, ModuleRec)
        else (router.site.cite() if isinstance(router, ParamRec) and router.site else moe_site),
    )
    _ = (index, moe_path)
    zero = zero_experts.detect(ctx, router, experts, num_experts)
    return Moe(
        zero_experts=zero,
        num_experts=num_experts,
        top_k=top_k,
        router=router_kind,
        score_func=score,
        score_activation=score_activation,
        score_field=score_field,
        router_bias=router_bias,
        router_bias_on=router_bias_on,
        router_linear_bias=linear_b,
        router_jitter=jitter,
        weights_on=weights_on,
        router_zero_init=zero_init is not None,
        router_fp32=fp32,
        scores_fp32=half_scores is None,
        norm_topk_prob=norm,
        norm_topk_by=norm_by,
        norm_topk_eps=norm_eps,
        norm_topk_floor=norm_floor,
        routed_scaling=scaling,
        routed_scaling_on=scaling_on,
        shared_experts=len(shared),
        shared_expert_gate=shared_gate,
        shared_combine=shared_combine,
        output_norm=output_norm[0] if output_norm else None,
        dense_layers=dense,
        dense_rule=rule[0] if rule else None,
        layer_condition=_moe_condition(ctx, moe) if rule else None,
        shared_size=_shared_size(ctx, moe, shared[0][1]) if shared else None,
        shared_optional=bool(shared) and _built_under_if(ctx, moe, shared[0][0].split(".")[0]),
        router_bias_key=_path_in(moe, bias_param) if bias_param is not None else None,
        router_bias_shape=tuple(bias_param.shape) if bias_param is not None else (),
        expert_layout=UNKNOWN,  # decided from checkpoint keys (see state_dict)
        module_layout=module_layout,
        expert_bias=expert_bias,
    )


def _output_norm(ctx: Ctx, moe: ModuleRec, block) -> tuple[str, str] | None:
    """(attribute, site) of a norm module of the block that its returned value is the output
    of: `return self.post_mlp_layernorm(routed + shared)`."""
    out = strip(first_output(block.result))
    if not (
        isinstance(out, Term)
        and out.op == "call"
        and isinstance(out.module, ModuleRec)
        and ctx.roles.role(out.module) == NORM
    ):
        return None
    name = next((n for n, child in moe.children() if child is out.module), None)
    if name is None:
        return None
    return name, out.site.cite() if out.site else ctx.attr_site(moe, name)


def _averages(term: Term, shared_calls: list[Term]) -> bool:
    """`(routed + shared) / 2`: a sum holding a shared expert's output, halved."""
    if term.op != "div" or len(term.args) != 2:
        return False
    total, by = term.args
    return (
        isinstance(total, Term)
        and total.op == "add"
        and by == 2
        and not isinstance(by, bool)
        and any(any(x is call for x in walk(total)) for call in shared_calls)
    )


def _router_zero_init(ctx: Ctx, moe: ModuleRec, name, router) -> str | None:
    """Where HF's `_init_weights` starts the router's projection weight at zero (AFMoE's
    `init.zeros_(module.gate.weight)` for its router class), else None."""
    if isinstance(router, ParamRec) or (
        isinstance(router, ModuleRec) and ctx.roles.role(router) == LINEAR
    ):
        owner, path = moe.cls, f"{name}.weight" if isinstance(router, ModuleRec) else name
    elif isinstance(router, ModuleRec):
        owner = router.cls
        inner = [n for n, c in router.children() if isinstance(c, ModuleRec)]
        weights = [n for n, c in router.children() if isinstance(c, ParamRec) and len(c.shape) == 2]
        path = f"{inner[0]}.weight" if len(inner) == 1 else (weights[0] if weights else None)
    else:
        return None
    if owner is None or path is None:
        return None
    return detect_init.zeroed_by_init(ctx, owner.name, path)


def _router_fp32(ctx: Ctx, moe: ModuleRec, name, router) -> tuple[bool, str | None]:
    """Whether the router's logits are computed in fp32 (its projection's input upcast, in
    the router's forward or where the MoE block calls it), with the site of that projection."""
    project = ctx.model.project
    if router is None:
        return False, None
    places = []
    if (
        isinstance(router, ModuleRec)
        and router.cls is not None
        and ctx.roles.role(router) != LINEAR
    ):
        linears = frozenset(
            n
            for n, c in router.children()
            if isinstance(c, ModuleRec) and ctx.roles.role(c) == LINEAR
        )
        places.append((router.cls, linears, None))
    if moe.cls is not None:
        own = frozenset({name}) if isinstance(router, ModuleRec) and name else frozenset()
        places.append((moe.cls, own, name))
    for cls, projections, weight_of in places:
        found = project.find_method(cls, "forward")
        if not found:
            continue
        owner, fn = found
        call = fp32_projection(fn, projections)
        if call is not None and weight_of and not _reads_self(call, weight_of, projections):
            call = None  # an F.linear of the block that is not the router's
        if call is not None:
            return True, owner.cite(call)
    return False, None


def _reads_self(call: cst.Call, name: str, projections: frozenset) -> bool:
    """The call is a router module call, or reads `self.<name>` in its arguments."""
    func = call.func
    if isinstance(func, cst.Attribute) and func.attr.value in projections:
        return True
    attr = cm.Attribute(value=cm.Name("self"), attr=cm.Name(name))
    return any(findall(a.value, attr) or cm.matches(a.value, attr) for a in call.args[1:])


def _only_tensors(term: Term) -> bool:
    """A parameter or buffer (perhaps reshaped or cast), no input flowing into it."""
    found = list(walk(term))
    return any(x.op == "param" for x in found) and not any(
        x.op in ("input", "call", "act") for x in found
    )


def _scored_apart(add: Term, scorers: list[Term], topks: list[Term]) -> bool:
    """Some sigmoid/softmax scores the logits and none reads `add` other than through the
    indices a top-k picked (`logits.gather(1, indices).sigmoid()`): the biased logits only
    pick."""
    return bool(scorers) and not any(_reads(s, add, topks) for s in scorers)


def _reads(term, target: Term, stops: list[Term]) -> bool:
    """`term` is computed from `target` without passing through one of `stops`."""
    seen: set[int] = set()
    todo = [term]
    while todo:
        x = todo.pop()
        if not isinstance(x, Term) or id(x) in seen or any(x is s for s in stops):
            continue
        if x is target:
            return True
        seen.add(id(x))
        todo.extend(x.args)
        todo.extend(x.kwargs.values())
    return False


def _bias_param(params: list[Term], calls: list[Term]) -> ParamRec | None:
    """The parameter or buffer behind the selection bias: read in the added term, or passed
    into the router module (`self.gate(x, self.e_score_correction_bias)`)."""
    for term in params:
        for x in walk(term):
            if x.op == "param" and isinstance(x.module, ParamRec):
                return x.module
    for call in calls:
        for a in list(call.args) + list(call.kwargs.values()):
            if isinstance(a, ParamRec):
                return a
            if isinstance(a, Term):
                found = _bias_param([a], [])
                if found is not None:
                    return found
    return None


def _path_in(rec: ModuleRec, target) -> str | None:
    """The shortest dotted attribute path of `target` under module `rec` (a tensor two
    modules share is saved under the outer one: `moe_statics.bias`, not `gate.moe_statics.bias`)."""
    level = [("", rec)]
    while level:
        below = []
        for prefix, module in level:
            for name, child in module.children():
                path = f"{prefix}{name}"
                if child is target:
                    return path
                if isinstance(child, ModuleRec):
                    below.append((f"{path}.", child))
        level = below
    return None


def _passes_param(calls: list[Term]) -> bool:
    """A router module called with a parameter or buffer besides the hidden states."""
    return any(
        isinstance(a, ParamRec) or (isinstance(a, Term) and _param_like(a))
        for call in calls
        for a in list(call.args) + list(call.kwargs.values())
    )


def _extra_input(term: Term) -> bool:
    """An argument of the router's forward other than the hidden states."""
    return term.op == "input" and not term.kwargs.get("primary")


def _param_like(term: Term) -> bool:
    for x in walk(term):
        if x.op == "param":
            return True
        if x.op in ("call", "input", "act"):
            return False
    return False


def _descendants(rec: ModuleRec):
    for name, child in rec.children():
        yield name, child
        if isinstance(child, ModuleRec):
            yield from _descendants(child)


def _all_params(rec: ModuleRec) -> list[ParamRec]:
    out = []
    for _, child in rec.children():
        if isinstance(child, ParamRec):
            out.append(child)
        elif isinstance(child, ModuleRec):
            out.extend(_all_params(child))
    return out


def _dense_rule(ctx: Ctx):
    """The source condition choosing MoE vs dense FFN in the decoder layer, if any."""
    layer = ctx.model.layers[0] if ctx.model.layers else None
    if layer is None or layer.cls is None:
        return None
    for name in ("mlp", "feed_forward", "ffn", "block_sparse_moe", "moe"):
        site = layer.assign_sites.get(name)
        if site is not None:
            break
    else:
        slots = [
            n
            for n, c in layer.children()
            if isinstance(c, ModuleRec) and ctx.roles.role(c) in (MLP, MOE)
        ]
        site = layer.assign_sites.get(slots[0]) if slots else None
    if site is None:
        return None
    code = site.sf.code(site.node)
    if " if " in code:
        cond = code.split(" if ", 1)[1].split(" else ", 1)[0]
        return " ".join(cond.split()), site.cite()
    found = layer.cls.sf and ctx.model.project.find_method(layer.cls, "__init__")
    if found:
        owner, fn = found
        test, _ = _enclosing_test(fn, site.node)
        if test is not None:
            return " ".join(owner.sf.code(test).split()), owner.cite(test)
    return None


def _shared_size(ctx: Ctx, moe: ModuleRec, shared: ModuleRec) -> str:
    """The shared expert's inner size as HF computes it, over `config` fields
    (`config.moe_intermediate_size * config.num_shared_experts`): among the config
    expressions (a field, or a product of fields and numbers) written in the MoE block's and
    the shared expert's `__init__`, one whose value under this config is the width the
    shared expert was built with; one reading a `shared` field first, then a product.
    "unknown" when none has that value."""
    width = _inner_width(ctx, shared)
    if width is None:
        return UNKNOWN
    candidates = []
    for rec in (moe, shared):
        found = rec.cls and ctx.model.project.find_method(rec.cls, "__init__")
        if not found:
            continue
        params = [p.name.value for p in found[1].params.params][1:]
        if not params:
            continue
        restate = _Restate(params[0], "", {})
        for node in findall(found[1].body, cm.BinaryOperation() | cm.Attribute()):
            expr = node.visit(restate)
            if _config_product(expr) and _value(ctx, expr) == width:
                candidates.append(" ".join(cst.Module([]).code_for_node(expr).split()))
    if not candidates:
        return UNKNOWN
    candidates.sort(key=lambda c: ("shared" not in c, " * " not in c))
    return candidates[0]


def _built_under_if(ctx: Ctx, moe: ModuleRec, name: str) -> bool:
    """Whether the MoE block's `__init__` builds `self.<name>` inside an `if` (ernie's
    `if config.moe_num_shared_experts > 0:`): some configs have no such module."""
    site = moe.assign_sites.get(name)
    found = moe.cls and ctx.model.project.find_method(moe.cls, "__init__")
    if site is None or not found:
        return False
    return _enclosing_test(found[1], site.node)[0] is not None


def _inner_width(ctx: Ctx, mlp: ModuleRec) -> int | None:
    """The out_features of the shared expert's first projection; half of it when that
    projection is a fused gate/up whose halves the down projection's input matches
    (minimax_m3's `gate_up_proj` of width 2 x inner)."""
    sizes = []
    for _, child in mlp.children():
        if isinstance(child, ModuleRec) and ctx.roles.role(child) == LINEAR:
            args = list(child.args)
            size_in = args[0] if args else child.kwargs.get("in_features")
            size_out = args[1] if len(args) > 1 else child.kwargs.get("out_features")
            sizes.append((size_in, size_out))
    out = next((o for _, o in sizes if isinstance(o, int)), None)
    inputs = [i for i, _ in sizes[1:]]
    if out is not None and out not in inputs and out % 2 == 0 and out // 2 in inputs:
        return out // 2
    return out


def _config_product(expr) -> bool:
    """`config.X`, or a product of such fields and integers."""
    if isinstance(expr, cst.Attribute):
        return cm.matches(expr.value, cm.Name("config"))
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Multiply):
        sides = (expr.left, expr.right)
        return all(isinstance(x, cst.Integer) or _config_product(x) for x in sides) and any(
            not isinstance(x, cst.Integer) for x in sides
        )
    return False


def _value(ctx: Ctx, expr):
    """A config product's value under the analysed config (None if a field is unset)."""
    if isinstance(expr, cst.Integer):
        return int(expr.value)
    if isinstance(expr, cst.Attribute):
        config = ctx.model.config
        value = config.attrs.get(config.key(expr.attr.value))
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    left, right = _value(ctx, expr.left), _value(ctx, expr.right)
    return None if left is None or right is None else left * right


def _layer_slot_site(ctx: Ctx):
    """The decoder layer's assignment of its feed-forward slot, and the layer's __init__."""
    layer = ctx.model.layers[0] if ctx.model.layers else None
    if layer is None or layer.cls is None:
        return None, None
    sites = [layer.assign_sites.get(n) for n in ("mlp", "feed_forward", "ffn", "block_sparse_moe")]
    sites += [
        layer.assign_sites.get(n)
        for n, c in layer.children()
        if isinstance(c, ModuleRec) and ctx.roles.role(c) in (MLP, MOE)
    ]
    site = next((s for s in sites if s is not None), None)
    found = ctx.model.project.find_method(layer.cls, "__init__")
    return site, (found[1] if found else None)


def _moe_condition(ctx: Ctx, moe: ModuleRec) -> str:
    """HF's choice of MoE vs dense feed-forward restated as "layer `layer_idx` is MoE", over
    `config` fields (`config.mlp_layer_types[layer_idx] == "sparse"`): the side of the
    condition that builds the MoE class decides its polarity, a `self.X` flag the same
    `__init__` assigned earlier is replaced by its expression. "unknown" when the condition
    reads anything else (the package could not evaluate it from its ModelArgs)."""
    site, fn = _layer_slot_site(ctx)
    if site is None or fn is None or moe.cls is None:
        return UNKNOWN
    params = [p.name.value for p in fn.params.params][1:]
    if len(params) < 2:
        return UNKNOWN
    config, layer_idx = params[0], params[1]
    ternary = findall(site.node, cm.IfExp())
    if ternary:
        test = ternary[0].test
        polarity = _builds(ternary[0].body, moe.cls.name)
        if polarity is None:
            other = _builds(ternary[0].orelse, moe.cls.name)
            polarity = None if other is None else not other
    else:
        test, in_body = _enclosing_test(fn, site.node)
        built = findall(site.node, cm.Call())
        moe_here = _builds(built[0], moe.cls.name) if built else None
        polarity = None if in_body is None or moe_here is None else in_body == moe_here
    if test is None or polarity is None:
        return UNKNOWN
    flags = {
        t.target.attr.value: a.value
        for a in findall(
            fn.body, cm.Assign(targets=[cm.AssignTarget(cm.Attribute(cm.Name("self")))])
        )
        for t in a.targets
    }
    restated = test.visit(_Restate(config, layer_idx, flags))
    attrs = {id(a.attr) for a in findall(restated, cm.Attribute())}
    names = {n.value for n in findall(restated, cm.Name()) if id(n) not in attrs}
    if names - {"config", "layer_idx", "len", "True", "False", "None"}:
        return UNKNOWN
    if any(not cm.matches(a.value, cm.Name("config")) for a in findall(restated, cm.Attribute())):
        return UNKNOWN
    if not polarity:
        restated = _negate(restated)
    return " ".join(cst.Module([]).code_for_node(restated).split())


def _builds(expr, class_name: str) -> bool | None:
    """True when `expr` is a call of `class_name`, False for another call, None otherwise."""
    if not isinstance(expr, cst.Call):
        return None
    func = expr.func
    name = func.attr.value if isinstance(func, cst.Attribute) else getattr(func, "value", None)
    return name == class_name


_INVERSE = {
    "Equal": "NotEqual",
    "NotEqual": "Equal",
    "In": "NotIn",
    "NotIn": "In",
    "LessThan": "GreaterThanEqual",
    "GreaterThanEqual": "LessThan",
    "GreaterThan": "LessThanEqual",
    "LessThanEqual": "GreaterThan",
}


def _negate(expr):
    """`not expr`, a single comparison by its inverse operator."""
    if isinstance(expr, cst.Comparison) and len(expr.comparisons) == 1 and not expr.lpar:
        target = expr.comparisons[0]
        inverse = _INVERSE.get(type(target.operator).__name__)
        if inverse is not None:
            operator = getattr(cst, inverse)()
            return expr.with_changes(comparisons=[target.with_changes(operator=operator)])
    return cst.UnaryOperation(
        operator=cst.Not(),
        expression=expr.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()]),
    )


class _Restate(cst.CSTTransformer):
    """Config and layer-index parameters renamed `config` / `layer_idx`; `self.X` flags
    replaced by their (restated) expression."""

    def __init__(self, config: str, layer_idx: str, flags: dict) -> None:
        super().__init__()
        self.config, self.layer_idx, self.flags = config, layer_idx, flags

    def leave_Attribute(self, original, updated):
        if isinstance(updated.value, cst.Name) and updated.value.value == "self":
            flag = self.flags.get(updated.attr.value)
            if flag is not None:
                restated = flag.visit(_Restate(self.config, self.layer_idx, {}))
                return restated.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        return updated

    def leave_Name(self, original, updated):
        if updated.value == self.config:
            return updated.with_changes(value="config")
        if updated.value == self.layer_idx:
            return updated.with_changes(value="layer_idx")
        return updated


def _enclosing_test(fn, target):
    """The test of the innermost `if` around `target` in `fn`, and whether `target` sits in
    its body (True) or its else branch (False); (None, None) outside any `if`."""
    import libcst as cst

    result = []

    class V(cst.CSTVisitor):
        def __init__(self):
            self.stack = []

        def visit_If(self, node):
            self.stack.append(node)

        def leave_If(self, node):
            self.stack.pop()

        def on_visit(self, node):
            if node is target and self.stack:
                result.append(self.stack[-1])
            return super().on_visit(node)

    fn.body.visit(V())
    if not result:
        return None, None
    node = result[0]
    inside = []

    class Find(cst.CSTVisitor):
        def on_visit(self, n):
            if n is target:
                inside.append(True)
            return not inside

    node.body.visit(Find())
    return node.test, bool(inside)
