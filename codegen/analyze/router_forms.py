"""Routing forms the MoE facts cannot state, each named with its evidence.

`detect_moe` reads one MoE block (the first layer's) into the router facts. Three forms it
would read wrongly or not at all, found on every MoE layer from the code's data flow:

* `moe.router_weights_module`: the router's output weights a module of the block besides
  the routed experts, in a form other than `moe.scored_shared` (a fact: a stacked set of n
  SwiGLU experts, as wide as a routed one, that the router scores with n rows past the
  routed experts', inkling's shared experts). The block's facts would count no shared
  expert at all and the router's rows as experts.
* `moe.table_routing`: the experts picked by looking a buffer up with an input of the
  router's own (DeepSeek-V4's hash layers: `tid2eid[input_ids]`), no top-k over the scores.
  A fact (`table_routed`'s dict) where the block picks that router by a per-layer config
  list (`self.gate = A(config) if config.X[layer_idx] == "v" else B(config)`), the table is
  built from config fields and its picks are weighted by an activation of the router's own
  logits, gathered, renormalised and scaled; any other form is named unsupported as
  `moe.table_picks` (a name of its own: the rule realising the fact would cover it).
* `moe.router_scores`: the scores an activation of the router logits other than softmax,
  sigmoid and those `detect_moe` reads as `moe.score_activation` in a sigmoid's place
  (DeepSeek-V4's `sqrtsoftplus`, from `config.scoring_func`).
* `moe.router_logits`: the scores computed from logits that no single projection of the
  hidden states gives: the router calls a module other than a projection on the way. One
  form is a fact, `moe.router_mlp` (zaya's): the logits an MLP computes (a norm, then
  linear layers with one activation between each) over a down-projection of the hidden
  states, to which the routers of the later layers add the previous layer's down-projected
  state (an input of the router's own) times a learned per-channel vector, the sum handed on
  to the next layer; the logits' rows score the experts and one skip class past them (a token
  picking it gets no expert). Any other form is named unsupported.
"""

from __future__ import annotations

import ast

import libcst as cst
import libcst.matchers as m

from codegen.analyze import detect_init
from codegen.analyze.attention_forms import build_shape, span
from codegen.analyze.config import attr
from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, walk
from codegen.analyze.detect_ffn import experts_of, ffn_modules
from codegen.analyze.detect_moe import SCORE_ACTIVATIONS
from codegen.analyze.evaluate import ModuleRec, ParamRec
from codegen.analyze.roles import ACT, EMBEDDING, LINEAR, MOE, NORM
from codegen.analyze.router_dtype import fp32_projection, half_activation

_SCORES = ("softmax", "log_softmax", "sigmoid")
_PICKS = ("topk", "argmax", "argsort", "sort", "max")


def detect(ctx: Ctx) -> tuple[dict | None, dict | None, dict | None]:
    """The unread routing forms are named unsupported; returns `moe.scored_shared`,
    `moe.router_mlp` and `moe.table_routing`."""
    scored = mlp = table = None
    seen: dict[tuple, tuple | None] = {}  # the block's classes -> its table-picking router
    tables: dict[tuple, tuple[str, list[int]]] = {}  # router -> (site, layers)
    for index, (role, moe, _) in sorted(ffn_modules(ctx).items()):
        if role != MOE or moe.cls is None:
            continue
        shape = build_shape(moe)
        if shape in seen:  # blocks built alike route alike: traced once
            if seen[shape] in tables:
                tables[seen[shape]][1].append(index)
            continue
        seen[shape] = None
        router = _router(ctx, moe)
        scored = _weighted_modules(ctx, moe, router) or scored
        if router is None or router.cls is None:
            continue
        terms = ctx.trace(router, inline=False).terms
        site = _table_picks(terms)
        if site is not None:
            seen[shape] = key = (moe.cls.name, router.cls.name)
            tables[key] = (site, [index])
            table = table or _table_routing(ctx, moe, router, terms)
        _score_activation(ctx, router, terms)
        mlp = _computed_logits(ctx, moe, router, terms) or mlp
    for (_, router), (site, layers) in tables.items():
        if table is not None and _typed(ctx, table, layers):
            table = {"layers": layers, **table}
            ctx.cite(
                "moe.table_routing",
                f"{site} ({router}, layers {span(layers)}: self.{table['buffer']}"
                f"[{table['input']}] of config.{table['rows']} x config.{table['cols']} expert"
                f" ids, picked where config.{table['switch']}[layer] == {table['value']!r};"
                f" weights {table['activation']} scores gathered"
                + (", renormalised" if table["renormalize"] else "")
                + (f", times config.{table['scale']}" if table["scale"] else "")
                + ")",
            )
            continue
        ctx.unsupported(
            "moe.table_picks",
            f"experts picked by looking up a fixed table ({router}, layers {span(layers)}):"
            " a buffer indexed by an input of the router's own, not a top-k of the scores:"
            " no rule yet",
            site,
        )
    return scored, mlp, table


def table_routed(ctx: Ctx, moe: ModuleRec) -> bool:
    """The block's router picks its experts from a table (see `_table_picks`)."""
    router = _router(ctx, moe)
    if router is None or router.cls is None:
        return False
    return _table_picks(ctx.trace(router, inline=False).terms) is not None


def _table_routing(ctx: Ctx, moe: ModuleRec, router: ModuleRec, terms: list[Term]) -> dict | None:
    """`moe.table_routing`: {"layers" (the MoE layers routed by table), "switch"/"value"
    (the per-layer config list and the entry picking the table router there), "buffer" (the
    table's attribute), "rows"/"cols" (the config fields sizing it), "input" (the router's
    input indexing it), "activation" (of the logits, the weights' scores), "fp32" (the
    logits projected from an upcast input and weight), "scores_fp32" (the activation taken
    in fp32: of fp32 logits, or of the logits upcast), "renormalize"
    (the gathered scores over their sum), "eps" (added to that sum), "scale" (the config
    field they are multiplied by, else None)}; None where any part has another form."""
    picked = next((t for t in terms if _table_index(t)), None)
    if picked is None:
        return None
    buffer = _attribute(router, picked.args[0].module)
    inputs = [t for t in terms if t.op == "input" and not t.kwargs.get("primary")]
    sized = _table_size(ctx, router, buffer)
    chosen = _chosen_by(ctx, moe, router)
    gathers = [t for t in terms if t.op == "fn" and t.name.rsplit(".", 1)[-1] == "gather"]
    gathered = [g for g in gathers if any(x is picked for x in walk(g))]
    acts = [t for t in terms if t.op == "act" and any(_within(t, g) for g in gathered)]
    if not (buffer and len(inputs) == 1 and sized and chosen and gathered and len(acts) == 1):
        return None
    if not _embedded_by_stack(ctx, inputs[0].name):
        return None
    name = getattr(acts[0].module, "name", None) or acts[0].name
    if not isinstance(name, str) or name not in (*_SCORES, *SCORE_ACTIVATIONS):
        return None
    renorm, eps = _renormalised(terms, gathered[0])
    found = ctx.model.project.find_method(router.cls, "forward")
    fp32 = found is not None and fp32_projection(found[1], frozenset()) is not None
    scale = _scaled_by(ctx, router, terms)
    scores_fp32 = fp32 or (acts[0].site is not None and half_activation(acts[0].site) is None)
    return {
        "switch": chosen[0],
        "value": chosen[1],
        "buffer": buffer,
        "rows": sized[0],
        "cols": sized[1],
        "input": inputs[0].name,
        "activation": name,
        "fp32": fp32,
        "scores_fp32": scores_fp32,
        "renormalize": renorm,
        "eps": eps,
        "scale": scale,
    }


def _embedded_by_stack(ctx: Ctx, name: str) -> bool:
    """`name` is the decoder stack's token ids: a parameter of its owner's forward that the
    forward hands to one of its embedding modules (`self.embed_tokens(input_ids)`)."""
    owner = ctx.model.stack_owner
    found = ctx.model.project.find_method(owner.cls, "forward") if owner and owner.cls else None
    if found is None or name not in {p.name.value for p in found[1].params.params}:
        return False
    embeddings = {n for n, c in owner.children() if ctx.roles.role(c) == EMBEDDING}
    call = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name()), args=[m.Arg(m.Name(name))])
    return any(node.func.attr.value in embeddings for node in m.findall(found[1], call))


def _typed(ctx: Ctx, table: dict, layers: list[int]) -> bool:
    """The config's per-layer list types exactly `layers` of the MoE layers as table-routed."""
    types = attr(ctx.model.config, table["switch"])
    if not isinstance(types, list | tuple):
        return False
    moes = [i for i, (role, _, _) in sorted(ffn_modules(ctx).items()) if role == MOE]
    return [i for i in moes if i < len(types) and types[i] == table["value"]] == layers


def _within(part: Term, whole: Term) -> bool:
    return any(x is part for x in walk(whole))


def _table_index(t: Term) -> bool:
    base = t.args[0] if t.op == "index" and t.args else None
    return (
        isinstance(base, Term)
        and base.op == "param"
        and isinstance(base.module, ParamRec)
        and base.module.kind == "buffer"
    )


def _renormalised(terms: list[Term], gathered: Term) -> tuple[bool, float]:
    """(the gathered scores divided by their sum, the constant added to that sum)."""
    for t in terms:
        if t.op != "div" or len(t.args) < 2 or t.args[0] is not gathered:
            continue
        den = t.args[1]
        if not isinstance(den, Term) or not any(
            x.op == "fn" and x.name.rsplit(".", 1)[-1] == "sum" and _within(gathered, x)
            for x in walk(den)
        ):
            continue
        consts = [a for a in den.args if isinstance(a, float | int) and not isinstance(a, bool)]
        return True, float(consts[0]) if den.op == "add" and consts else 0.0
    return False, 0.0


def _self_aliases(ctx: Ctx, cls) -> dict[str, str]:
    """`self.x = config.y` in the class's `__init__` (its first along the mro): x -> y."""
    for base in ctx.model.project.mro(cls):
        fn = base.methods.get("__init__")
        if fn is None:
            continue
        aliases = {}
        for node in m.findall(fn, m.Assign(targets=[m.AssignTarget(m.Attribute(m.Name("self")))])):
            if m.matches(node.value, m.Attribute(value=m.Name("config"), attr=m.Name())):
                aliases[node.targets[0].target.attr.value] = node.value.attr.value
        return aliases
    return {}


def _config_field(node, aliases: dict[str, str]) -> str | None:
    if m.matches(node, m.Attribute(value=m.Name("config"), attr=m.Name())):
        return node.attr.value
    if m.matches(node, m.Attribute(value=m.Name("self"), attr=m.Name())):
        return aliases.get(node.attr.value)
    return None


def _table_size(ctx: Ctx, router: ModuleRec, buffer: str | None) -> tuple[str, str] | None:
    """The config fields of the table's two dimensions at its building call."""
    param = router.attrs.get(buffer) if buffer else None
    if not isinstance(param, ParamRec) or param.site is None or len(param.shape) != 2:
        return None
    aliases = _self_aliases(ctx, router.cls)
    for call in m.findall(param.site.node, m.Call(func=m.Attribute(value=m.Name("torch")))):
        dims = [_config_field(a.value, aliases) for a in call.args if a.keyword is None]
        if len(dims) == 2 and None not in dims:
            return dims[0], dims[1]
    return None


def _scaled_by(ctx: Ctx, router: ModuleRec, terms: list[Term]) -> str | None:
    """The config field the returned weights are multiplied by (`weights * self.f`, `self.f
    = config.f`), else None."""
    aliases = _self_aliases(ctx, router.cls)
    for base in ctx.model.project.mro(router.cls):
        fn = base.methods.get("forward")
        if fn is None:
            continue
        for node in m.findall(fn, m.Return()):
            for mul in m.findall(node, m.BinaryOperation(operator=m.Multiply())):
                field = _config_field(mul.right, aliases)
                if field is not None:
                    return field
        return None
    return None


def _chosen_by(ctx: Ctx, moe: ModuleRec, router: ModuleRec) -> tuple[str, object] | None:
    """(config list field, entry) where the block's `__init__` builds this router's class
    when `config.<field>[layer_idx] == <entry>` (directly or through `self.<flag>`) and
    another router otherwise; else None."""
    attr = _attribute(moe, router)
    for base in ctx.model.project.mro(moe.cls):
        fn = base.methods.get("__init__")
        if fn is None:
            continue
        flags = {}
        for node in m.findall(fn, m.Assign(targets=[m.AssignTarget(m.Attribute(m.Name("self")))])):
            flags[node.targets[0].target.attr.value] = node.value
        built = flags.get(attr)
        if not isinstance(built, cst.IfExp):
            return None
        test = built.test
        if m.matches(test, m.Attribute(value=m.Name("self"), attr=m.Name())):
            test = flags.get(test.attr.value)
        per_layer = m.Comparison(
            left=m.Subscript(value=m.Attribute(value=m.Name("config"), attr=m.Name())),
            comparisons=[m.ComparisonTarget(operator=m.Equal(), comparator=m.SimpleString())],
        )
        if not m.matches(test, per_layer):
            return None
        here = m.Call(func=m.Name(router.cls.name))
        if not m.matches(built.body, here) or m.matches(built.orelse, here):
            return None
        return test.left.value.attr.value, ast.literal_eval(test.comparisons[0].comparator.value)
    return None


def _router(ctx: Ctx, moe: ModuleRec) -> ModuleRec | None:
    """The child the block calls first with its input whose output the experts read."""
    exp_name, experts = experts_of(ctx, moe)
    terms = ctx.trace(moe, inline=False).terms
    calls = [t for t in terms if t.op == "call" and isinstance(t.module, ModuleRec)]
    for call in calls:
        if call.module is experts or _attribute(moe, call.module) is None:
            continue
        if any(call.module is e.module or _reads(e, call) for e in calls if e.module is experts):
            return call.module
    return None


def _weighted_modules(ctx: Ctx, moe: ModuleRec, router: ModuleRec | None) -> dict | None:
    """`moe.scored_shared` where the router scores a stacked set of SwiGLU experts of the
    block beside the routed ones (its last rows, one per expert); any other module the
    router's output weights is named unsupported."""
    if router is None:
        return None
    _, experts = experts_of(ctx, moe)
    terms = ctx.trace(moe, inline=False).terms
    routed = [t for t in terms if t.op == "call" and t.module is router]
    # a module reading the experts' output is part of them (JetMoE's output projections)
    expert_calls = [t for t in terms if t.op == "call" and t.module is experts]
    for call in terms:
        module = call.module
        if call.op != "call" or not isinstance(module, ModuleRec):
            continue
        if module is router or module is experts or ctx.roles.role(module) == LINEAR:
            continue
        name = _attribute(moe, module)
        if name is None or not any(_reads(call, r) for r in routed):
            continue
        if any(_reads(call, e) for e in expert_calls):
            continue
        rows = _rows(router)
        count = _count(ctx, experts)
        scored = _scored_shared(ctx, module, name, rows, count, experts)
        if scored is not None:
            ctx.cite("moe.scored_shared", call.site.cite() if call.site else ctx.class_site(moe))
            return scored
        sized = (
            f" (its {rows} rows score the {count} routed experts and these)"
            if isinstance(rows, int) and isinstance(count, int) and rows != count
            else ""
        )
        ctx.unsupported(
            "moe.router_weights_module",
            f"the router's output also weights {name} ({_describe(module)}), a module of the"
            f" block beside the routed experts{sized}: shared experts scored by the router,"
            " one weight each: no rule yet",
            call.site.cite() if call.site else ctx.class_site(moe),
        )
        return None
    return None


def _scored_shared(ctx: Ctx, module: ModuleRec, name: str, rows, count, experts) -> dict | None:
    """{"module", "count", "gate", "up", "down"} of a stacked set of n SwiGLU experts the
    router scores with n rows past its `count` routed ones, each as wide as a routed expert:
    its attribute in the block, the config field its stack is sized by, and its three
    stacked weights (gate: the one whose product goes through the activation; down: the one
    mapping the inner width back)."""
    stacked = [(n, p) for n, p in module.children() if _stacked(p)]
    if len(stacked) != 3 or not isinstance(rows, int) or not isinstance(count, int):
        return None
    n, inner, dim = stacked[0][1].shape
    if not all(isinstance(d, int) for d in (n, inner, dim)) or rows != count + n:
        return None
    if not _as_wide(experts, dim, inner):
        return None
    down = [a for a, p in stacked if p.shape == (n, dim, inner)]
    ins = [a for a, p in stacked if p.shape == (n, inner, dim)]
    if len(down) != 1 or len(ins) != 2:
        return None
    terms = ctx.trace(module, inline=False).terms
    acts = [t for t in terms if t.op in ("act", "fn") and _activation(t)]
    gate = [a for a in ins if any(_reads_param(t, module.attrs[a]) for t in acts for t in walk(t))]
    field = _sized_by(stacked[0][1])
    if len(gate) != 1 or field is None:
        return None
    up = next(a for a in ins if a != gate[0])
    return {
        "module": name,
        "count": field,
        "gate": gate[0],
        "up": up,
        "down": down[0],
        "routed": count,
    }


def _activation(t: Term) -> bool:
    name = getattr(t.module, "name", None) if t.op == "act" else t.name.rsplit(".", 1)[-1]
    return isinstance(name, str) and name in ("silu", "swish")


def _reads_param(t: Term, param) -> bool:
    return t.op == "param" and t.module is param


def _stacked(p) -> bool:
    return isinstance(p, ParamRec) and isinstance(p.shape, tuple) and len(p.shape) == 3


def _as_wide(experts, dim: int, inner: int) -> bool:
    """The routed experts hold a down weight mapping `inner` back to `dim`: as wide."""
    if not isinstance(experts, ModuleRec):
        return False
    return any(_stacked(p) and p.shape[1:] == (dim, inner) for _, p in experts.children())


def _sized_by(param: ParamRec) -> str | None:
    """`config.X` where the stack's first dimension is that field at its building call
    (`torch.empty(config.n_shared_experts, ...)`), else None."""
    if param.site is None:
        return None
    for call in m.findall(param.site.node, m.Call(func=m.Attribute(attr=m.Name("empty")))):
        first = call.args[0].value if call.args else None
        if m.matches(first, m.Attribute(value=m.Name("config"), attr=m.Name())):
            return f"config.{first.attr.value}"
    return None


def _table_picks(terms: list[Term]) -> str | None:
    """The site of indices read from a buffer, in a router whose forward takes an input
    besides the hidden states and picks nothing over its scores; else None."""
    if any(t.op == "fn" and t.name.rsplit(".", 1)[-1] in _PICKS for t in terms):
        return None
    if not any(t.op == "input" and not t.kwargs.get("primary") for t in terms):
        return None
    for t in terms:
        base = t.args[0] if t.op == "index" and t.args else None
        if isinstance(base, Term) and base.op == "param" and t.site is not None:
            if isinstance(base.module, ParamRec) and base.module.kind == "buffer":
                return t.site.cite()
    return None


def _score_activation(ctx: Ctx, router: ModuleRec, terms: list[Term]) -> None:
    logits = [t for t in terms if _projection(ctx, t)]
    for t in terms:
        if t.op != "act" or not any(any(x is p for x in walk(t)) for p in logits):
            continue
        name = getattr(t.module, "name", None) or t.name
        # SCORE_ACTIVATIONS are moe.score_activation (a rule realises them; in a router that
        # picks by table, moe.table_routing names the router)
        if isinstance(name, str) and name not in (*_SCORES, *SCORE_ACTIVATIONS):
            ctx.unsupported(
                "moe.router_scores",
                f"the router scores its logits by {name} ({_describe(router)}), neither"
                " softmax nor sigmoid: no rule yet",
                t.site.cite() if t.site else ctx.class_site(router),
            )
            return


def _projection(ctx: Ctx, t: Term) -> bool:
    if t.op == "fn" and t.name.rsplit(".", 1)[-1] in ("linear", "matmul"):
        return True
    return t.op == "call" and isinstance(t.module, ModuleRec) and ctx.roles.role(t.module) == LINEAR


def _reads(call: Term, source: Term) -> bool:
    values = list(call.args) + list(call.kwargs.values())
    return any(isinstance(v, Term) and any(x is source for x in walk(v)) for v in values)


def _attribute(owner: ModuleRec, value) -> str | None:
    return next((n for n, child in owner.attrs.items() if child is value), None)


def _rows(router: ModuleRec):
    weight = router.attrs.get("weight")
    if isinstance(weight, ParamRec) and weight.shape:
        return weight.shape[0]
    return None


def _count(ctx: Ctx, experts):
    if isinstance(experts, ModuleRec):
        for _, p in experts.children():
            if isinstance(p, ParamRec) and len(p.shape) == 3:
                return p.shape[0]
    items = getattr(experts, "items", None)
    return len(items) if items else None


def _describe(rec: ModuleRec) -> str:
    if rec.cls is None:
        return rec.kind
    stacked = [p for _, p in rec.children() if isinstance(p, ParamRec) and len(p.shape) == 3]
    if stacked and isinstance(stacked[0].shape[0], int):
        return f"{rec.cls.name}, {stacked[0].shape[0]} stacked"
    return rec.cls.name


def _computed_logits(ctx: Ctx, moe: ModuleRec, router: ModuleRec, terms: list[Term]) -> dict | None:
    """The scores read logits a module other than a projection computed (an MLP): the
    `moe.router_mlp` fact where it has zaya's form, else named unsupported."""
    scores = [t for t in terms if t.op == "fn" and t.name.rsplit(".", 1)[-1] in _SCORES]
    if not scores or not scores[0].args:
        return None
    chain = [x for x in walk(scores[0].args[0]) if x.op == "call" and x.module is not None]
    computed = [x for x in chain if ctx.roles.role(x.module) != LINEAR]
    if not computed:
        return None
    names = {id(v): k for k, v in router.children()}
    parts = [f"{names.get(id(x.module), '?')} ({_describe(x.module)})" for x in computed]
    projections = [
        names[id(x.module)] for x in chain if x not in computed and id(x.module) in names
    ]
    extra = [t.name for t in terms if t.op == "input" and not t.kwargs.get("primary")]
    rows, count = _out_rows(ctx, computed[-1].module), _count(ctx, experts_of(ctx, moe)[1])
    found = _router_mlp(ctx, moe, router, chain, computed, rows, count)
    if found is not None:
        where = scores[0].site.cite() if scores[0].site else ctx.class_site(router)
        ctx.cite(
            "moe.router_mlp",
            f"{where} ({found['mlp']} over {found['down']}, the previous layer's state times"
            f" {found['state_scale']} from layer {found['carried_from']}, {rows} rows for"
            f" {count} experts: a skip class)",
        )
        return found
    ctx.unsupported(
        "moe.router_logits",
        f"the router's logits come from {', '.join(parts)}"
        + (f" over {', '.join(projections)}" if projections else "")
        + (f", with a further input ({', '.join(extra)})" if extra else "")
        + (
            f", {rows} rows for {count} routed experts (a skip class)"
            if isinstance(rows, int) and isinstance(count, int) and rows != count
            else ""
        )
        + ", not one projection of the hidden states: no rule yet",
        scores[0].site.cite() if scores[0].site else ctx.class_site(router),
    )


def _out_rows(ctx: Ctx, module: ModuleRec):
    """The output width of the last projection `module` holds (its logits' rows)."""
    linears = [
        g for _, g in module.children() if isinstance(g, ModuleRec) and ctx.roles.role(g) == LINEAR
    ]
    args = list(linears[-1].args) if linears else []
    return args[1] if len(args) > 1 else None


def _router_mlp(ctx: Ctx, moe, router, chain, computed, rows, count) -> dict | None:
    """zaya's router: {"router" (its attribute in the block), "down" (the projection of the
    hidden states, its width's config field in "width", its bias in "down_bias"), "mlp" (the
    module computing the logits over it), "norm", "linears" (the MLP's linear layers in call order),
    "biases" (theirs), "activation", "state_scale" (the later layers' per-channel vector on
    the carried state), "skip_bias_init" (what the router's `__init__` sets the last row of a
    buffer to: the skip class's selection bias, else 0.0), "skip_bias_on_load" (the number
    HF's `_init_weights` writes there by item assignment where transformers runs it after
    loading a checkpoint, its own installed models: the checkpoint's value is never routed
    with; None for remote code, whose modules with every tensor loaded it skips, or where
    `_init_weights` writes no such number), "carried_from" (the first layer whose router
    holds it)}; None for another form."""
    if len(computed) != 1 or not (isinstance(rows, int) and isinstance(count, int)):
        return None
    if rows != count + 1:  # the experts' rows and one skip class
        return None
    mlp = computed[0].module
    downs = [x for x in chain if x is not computed[0] and ctx.roles.role(x.module) == LINEAR]
    if len(downs) != 1 or not any(t.op == "input" for t in walk(downs[0])):
        return None
    names = {id(v): k for k, v in router.children()}
    parts = {id(v): k for k, v in mlp.children()}
    mlp_terms = ctx.trace(mlp, inline=False).terms
    calls = [t for t in mlp_terms if t.op == "call" and id(t.module) in parts]
    kinds = [ctx.roles.role(t.module) for t in calls]
    linears = [parts[id(t.module)] for t in calls if ctx.roles.role(t.module) == LINEAR]
    acts = {_activation_of(t.module) for t in calls if ctx.roles.role(t.module) == ACT}
    expected = ["norm"] + ["linear", "act"] * (len(linears) - 1) + ["linear"]
    if kinds != expected or len(acts) != 1 or None in acts or len(linears) < 2:
        return None
    carried = _carried_state(ctx, moe, router)
    if carried is None:
        return None
    scale, first = carried
    width = _width_field(ctx, router, names[id(downs[0].module)])
    if width is None:
        return None
    norm = next(parts[id(t.module)] for t in calls if ctx.roles.role(t.module) == NORM)
    return {
        "router": _attribute(moe, router) or "",
        "down": names[id(downs[0].module)],
        "down_bias": bool(downs[0].module.kwargs.get("bias", True)),
        "width": width,
        "mlp": names[id(mlp)],
        "norm": norm,
        "linears": tuple(linears),
        "biases": tuple(bool(mlp.attrs[n].kwargs.get("bias", True)) for n in linears),
        "activation": next(iter(acts)),
        "state_scale": scale,
        "carried_from": first,
        "skip_bias_init": _skip_bias_init(ctx, router),
        "skip_bias_on_load": _skip_bias_on_load(ctx, router),
    }


def _carried_state(ctx: Ctx, moe: ModuleRec, router: ModuleRec) -> tuple[str, int] | None:
    """(the per-channel parameter the routers of later layers multiply the carried state
    by, the first layer whose router holds it) where the router's forward adds an input of
    its own times that parameter (`x = x + state * self.scale`); else None. Read from the
    source: the traced first layer's router skips that add (it holds no such parameter)."""
    block = next((k for k, v in ctx.model.layers[0].attrs.items() if v is moe), None)
    name = _attribute(moe, router)
    scaled = None
    for base in ctx.model.project.mro(router.cls):
        fn = base.methods.get("forward")
        if fn is not None:
            scaled = _scaled_input(fn)
            break
    if scaled is None or block is None or name is None:
        return None
    for index, layer in enumerate(ctx.model.layers or ()):
        rec = layer.attrs.get(block) if isinstance(layer, ModuleRec) else None
        later = rec.attrs.get(name) if isinstance(rec, ModuleRec) else None
        param = later.attrs.get(scaled) if isinstance(later, ModuleRec) else None
        if isinstance(param, ParamRec) and param.kind == "parameter" and len(param.shape) == 1:
            return scaled, index
    return None


def _skip_bias_init(ctx: Ctx, router: ModuleRec) -> float:
    """`self.<buffer>[-1] = <number>` in the router's `__init__` (zaya's
    `balancing_biases[-1] = -1.0`): the number, else 0.0."""
    found = _skip_buffer(ctx, router)
    return found[1] if found else 0.0


def _skip_bias_on_load(ctx: Ctx, router: ModuleRec) -> float | None:
    """The number HF's `_init_weights` writes into the last entry of the skip class's
    buffer after a checkpoint is loaded (see `_router_mlp`), cited as
    `moe.router_mlp.skip_bias_on_load`; None where it is the checkpoint's value that routes."""
    found = _skip_buffer(ctx, router)
    if found is None or not ctx.model.target.installed:
        return None
    written = detect_init.last_entry_written(ctx, router.cls.name, found[0])
    if written is None:
        return None
    ctx.cite("moe.router_mlp.skip_bias_on_load", written[1])
    return written[0]


def _skip_buffer(ctx: Ctx, router: ModuleRec) -> tuple[str, float] | None:
    """(the buffer, the number) of `self.<buffer>[-1] = <number>` in the router's
    `__init__`, else None."""
    last = m.Subscript(
        value=m.Attribute(value=m.Name("self"), attr=m.Name()),
        slice=[m.SubscriptElement(m.Index(m.UnaryOperation(m.Minus(), m.Integer("1"))))],
    )
    for base in ctx.model.project.mro(router.cls):
        fn = base.methods.get("__init__")
        if fn is None:
            continue
        for node in m.findall(fn, m.Assign(targets=[m.AssignTarget(last)])):
            name = node.targets[0].target.value.attr.value
            buffer = router.attrs.get(name)
            if not (isinstance(buffer, ParamRec) and buffer.kind == "buffer"):
                continue
            try:
                return name, float(ast.literal_eval(cst.Module([]).code_for_node(node.value)))
            except (ValueError, SyntaxError):
                return None
        return None
    return None


def _width_field(ctx: Ctx, router: ModuleRec, down: str) -> str | None:
    """The config field the down-projection's output width reads in the router's
    `__init__` (`nn.Linear(h, self.w, ...)` with `self.w = config.w`, or `config.w` itself)."""
    for base in ctx.model.project.mro(router.cls):
        fn = base.methods.get("__init__")
        if fn is None:
            continue
        aliases = {}
        for node in m.findall(fn, m.Assign(targets=[m.AssignTarget(m.Attribute(m.Name("self")))])):
            value = node.value
            if m.matches(value, m.Attribute(value=m.Name("config"), attr=m.Name())):
                aliases[node.targets[0].target.attr.value] = value.attr.value
            target = node.targets[0].target.attr.value
            if target == down and isinstance(value, cst.Call) and len(value.args) >= 2:
                width = value.args[1].value
                if m.matches(width, m.Attribute(value=m.Name("config"), attr=m.Name())):
                    return width.attr.value
                if m.matches(width, m.Attribute(value=m.Name("self"), attr=m.Name())):
                    return aliases.get(width.attr.value)
        return None
    return None


def _scaled_input(fn) -> str | None:
    """`y = y + <input> * self.<attr>` in `fn`, `<input>` a parameter of `fn` after the
    hidden states: the attribute."""
    inputs = {p.name.value for p in fn.params.params[2:]}
    for node in m.findall(
        fn,
        m.BinaryOperation(
            operator=m.Add(),
            right=m.BinaryOperation(
                operator=m.Multiply(),
                left=m.Name(),
                right=m.Attribute(value=m.Name("self"), attr=m.Name()),
            ),
        ),
    ):
        if node.right.left.value in inputs:
            return node.right.right.attr.value
    return None


_ACTIVATIONS = {"GELU": "gelu", "SiLU": "silu", "ReLU": "relu"}


def _activation_of(rec) -> str | None:
    """The activation a router MLP applies: an nn module (exact GELU, SiLU, ReLU) or a
    config name of these."""
    if isinstance(rec, ModuleRec):
        if rec.kind == "GELU" and rec.kwargs.get("approximate", "none") != "none":
            return None
        return _ACTIVATIONS.get(rec.kind)
    name = getattr(rec, "name", None)
    return name if name in _ACTIVATIONS.values() else None
