"""RoPE: type, partial rotary fraction, interleaving, layers without RoPE.

* applied or not: the traced attention forward calls a function that rotates with cos/sin
  (or a complex `view_as_complex`/`polar` product), or a rotary module, per layer;
* type: `rope_parameters.rope_type` of the config, when the rotary module dispatches on it
  (transformers' rope-init table, or the code compares with the configured type's name);
* partial rotary: the rotary dimension is evaluated from the rotary module's inverse-frequency
  `torch.arange(0, dim, 2)` with the config, and divided by the attention head dim (the q/k
  head dim that RoPE is applied to);
* interleaved: the rotation works on even/odd pairs (`x[..., ::2]`, `repeat_interleave`,
  complex views, `view(..., d // 2, 2)`) rather than on halves (`rotate_half`).
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.config import attr
from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term
from codegen.analyze.evaluate import ConfigObj, Frame, FuncRef, ModuleRec, Unknown
from codegen.analyze.features import UNKNOWN, Rope, layer_ranges
from codegen.analyze.layer_rope_bases import layer_bases
from codegen.analyze.layer_rule import guard_rule, init_rule
from codegen.analyze.model import walk_tree
from codegen.analyze.roles import ATTENTION, ROTARY
from codegen.analyze.source import dotted
from codegen.analyze.walk import findall

KNOWN_TYPES = ("default", "linear", "dynamic", "yarn", "llama3", "longrope", "proportional")


def _rotary_modules(ctx: Ctx) -> list[tuple[str, ModuleRec]]:
    out = []
    for path, rec in walk_tree(ctx.model.entry):
        if isinstance(rec, ModuleRec) and ctx.roles.role(rec) == ROTARY:
            out.append((path, rec))
    return out


def _arange_end(fn: cst.FunctionDef) -> cst.BaseExpression | None:
    """The `dim` of `torch.arange(0, dim, 2)` (inverse frequencies), if present."""
    found: list[cst.BaseExpression] = []

    class V(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            name = dotted(node.func) or ""
            if name.endswith("arange") and len(node.args) >= 3:
                step = node.args[2].value
                if isinstance(step, cst.Integer) and step.value == "2":
                    found.append(node.args[1].value)

    fn.body.visit(V())
    return found[0] if found else None


def rotary_dim(ctx: Ctx, rotary: ModuleRec, cfg: ConfigObj, layer_type: str | None) -> int | None:
    """Evaluate the rotary module's inverse-frequency dimension with the config."""
    project = ctx.model.project
    if rotary.cls is None:
        return None
    for cls in project.mro(rotary.cls):
        for name, fn in cls.methods.items():
            end = _arange_end(fn)
            if end is None:
                continue
            func = FuncRef(cls.sf, fn, owner=cls)
            kwargs = {}
            params = {p.name.value for p in fn.params.params} | {
                p.name.value for p in fn.params.kwonly_params
            }
            if "layer_type" in params and layer_type is not None:
                kwargs["layer_type"] = layer_type
            interp = ctx.model.interp
            first = fn.params.params[0].name.value if fn.params.params else None
            is_method = first == "self" or name == "__init__"
            if is_method and name != "__init__":
                calls = [([rotary], kwargs)]  # e.g. `arange(0, self.dim, 2)` in forward
            else:
                calls = [([rotary, cfg] if is_method else [cfg], kwargs)]
            if name == "__init__" and (rotary.args or rotary.kwargs):
                # built from explicit sizes (`Rotary(head_dim, base=theta)`): its own arguments
                calls.insert(0, ([rotary, *rotary.args], dict(rotary.kwargs)))
            value = None
            for args, call_kwargs in calls:
                try:
                    frame = interp.capture(func, args, call_kwargs)
                    value = interp.eval(end, frame)
                except Unknown:
                    continue
                if isinstance(value, int | float) and not isinstance(value, bool):
                    break
            if not (isinstance(value, int | float) and not isinstance(value, bool)):
                try:
                    value = interp.eval(end, Frame(cls.sf, dict(rotary.attrs), owner=cls))
                except Unknown:
                    continue
            if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                return int(value)
    return None


def _rope_params(cfg: ConfigObj) -> dict:
    value = attr(cfg, "rope_parameters")
    return value if isinstance(value, dict) else {}


def _uses_rope_type(ctx: Ctx, rotary: ModuleRec) -> bool:
    if rotary.cls is None:
        return False
    sig = ctx.roles.method_signals(rotary.cls, "__init__")
    return "ROPE_INIT_FUNCTIONS" in sig.names or "rope_type" in sig.self_attrs


def _runtime_ntk(ctx: Ctx, rotary: ModuleRec | None) -> str | None:
    """Where a method of the rotary module that runs after `__init__` raises something to the
    NTK exponent `dim / (dim - 2)`: the base rescaled at run time (dynamic NTK)."""
    if rotary is None or rotary.cls is None:
        return None
    found: list[cst.CSTNode] = []

    class V(cst.CSTVisitor):
        def visit_BinaryOperation(self, node: cst.BinaryOperation) -> None:
            exponent = node.right
            if (
                isinstance(node.operator, cst.Power)
                and isinstance(exponent, cst.BinaryOperation)
                and isinstance(exponent.operator, cst.Divide)
                and isinstance(exponent.right, cst.BinaryOperation)
                and isinstance(exponent.right.operator, cst.Subtract)
                and isinstance(exponent.right.right, cst.Integer)
                and exponent.right.right.value == "2"
            ):
                found.append(node)

    # methods `__init__` refers to (`rope_init_fn = self.compute_..._parameters`) build the
    # frequencies once: a base raised there is a fixed NTK factor (an `alpha`), not dynamic
    at_init = {"__init__"} | ctx.roles.method_signals(rotary.cls, "__init__").self_attrs
    for cls in ctx.model.project.mro(rotary.cls):
        for name, fn in cls.methods.items():
            if name not in at_init:
                fn.body.visit(V())
                if found:
                    return cls.sf.cite(found[0])
    return None


def _fixed_ntk_key(ctx: Ctx, rotary: ModuleRec | None) -> tuple[str, str] | None:
    """The `rope_parameters` key whose value stretches the base once, at init, by the NTK
    exponent (`theta * rope_parameters["alpha"] ** (dim / (dim - 2))`, HunYuan's fixed-alpha
    "dynamic" rope), with where; None when no init-time method of the rotary module does."""
    if rotary is None or rotary.cls is None:
        return None
    key = m.Subscript(
        value=m.Attribute(attr=m.Name("rope_parameters")),
        slice=[m.SubscriptElement(slice=m.Index(value=m.SimpleString()))],
    )
    power = m.BinaryOperation(
        left=key,
        operator=m.Power(),
        right=m.BinaryOperation(
            operator=m.Divide(),
            right=m.BinaryOperation(operator=m.Subtract(), right=m.Integer("2")),
        ),
    )
    at_init = ctx.roles.method_signals(rotary.cls, "__init__").self_attrs
    for cls in ctx.model.project.mro(rotary.cls):
        for name, fn in cls.methods.items():
            if name not in at_init:
                continue
            for node in findall(fn, power):
                return node.left.slice[0].slice.value.evaluated_value, cls.sf.cite(node)
    return None


def _compares_to(ctx: Ctx, value: str) -> str | None:
    """Where the modeling code compares something with the string `value`
    (`scaling["type"] == "dynamic"`, `kind in ("linear", "dynamic")`): remote code that
    dispatches on the configured rope type by hand."""
    sf = ctx.model.modeling
    found: list[cst.CSTNode] = []

    def literal(node) -> bool:
        if isinstance(node, cst.SimpleString):
            return node.evaluated_value == value
        if isinstance(node, cst.Tuple | cst.List | cst.Set):
            return any(literal(el.value) for el in node.elements)
        return False

    class V(cst.CSTVisitor):
        def visit_Comparison(self, node: cst.Comparison) -> None:
            if literal(node.left) or any(literal(c.comparator) for c in node.comparisons):
                found.append(node)

    sf.module.visit(V())
    return sf.cite(found[0]) if found else None


# `torch.cat((a, b), dim=-1)`: the halves of the rotation helper put back together
_CAT_PAIR = m.Call(
    func=m.Attribute(attr=m.Name("cat")) | m.Name("cat"),
    args=[m.Arg(m.Tuple(elements=[m.Element(), m.Element()])), m.ZeroOrMore()],
)
_NEGATED = m.UnaryOperation(operator=m.Minus())


def _reversed(fn) -> str | None:
    """Where the half-rotation helper the RoPE function calls returns `cat((x2, -x1))`
    (turning by -angle, nanochat) instead of llama's `cat((-x2, x1))`; else None."""
    if not isinstance(fn, FuncRef) or not isinstance(fn.node, cst.FunctionDef):
        return None
    for call in findall(fn.node, m.Call(func=m.Name())):
        helper = fn.sf.functions.get(call.func.value)
        if helper is None or helper is fn.node:
            continue
        for cat in findall(helper, _CAT_PAIR):
            first, second = (e.value for e in cat.args[0].value.elements)
            if m.matches(second, _NEGATED) and not m.matches(first, _NEGATED):
                return fn.sf.cite(cat)
    return None


_FP32 = m.Attribute(value=m.Name("torch"), attr=m.Name("float32") | m.Name("float"))


def _upcast(fn) -> str | None:
    """Where the RoPE function takes its first argument (q) to fp32 before turning it
    (`q = q.float()`, `q.to(torch.float32)`), or the slice of it that turns (`nope, rope =
    x[..., :-d], x[..., -d:]` then `rope.float() * cos`): the rotation's maths runs in fp32
    (cohere, DeepSeek-V4)."""
    if not isinstance(fn, FuncRef) or not isinstance(fn.node, cst.FunctionDef):
        return None
    params = fn.node.params.params
    if not params:
        return None
    names = {params[0].name.value} | _slices_of(fn.node, params[0].name.value)
    first = m.Name(m.MatchIfTrue(lambda name: name in names))
    upcasts = m.Call(func=m.Attribute(value=first, attr=m.Name("float")), args=[]) | m.Call(
        func=m.Attribute(value=first, attr=m.Name("to")),
        args=[m.Arg(value=_FP32)],
    )
    found = findall(fn.node, upcasts)
    return fn.sf.cite(found[0]) if found else None


def _slices_of(function: cst.FunctionDef, name: str) -> set[str]:
    """The names `function` binds to a slice of its parameter `name` (`rope = x[..., -d:]`,
    or one target of `nope, rope = x[..., :-d], x[..., -d:]`)."""
    sliced = m.Subscript(value=m.Name(name))
    found = set()
    for node in findall(function, m.Assign(targets=[m.AssignTarget()])):
        target, value = node.targets[0].target, node.value
        pairs = [(target, value)]
        if isinstance(target, cst.Tuple) and isinstance(value, cst.Tuple):
            if len(target.elements) == len(value.elements):
                pairs = [
                    (t.value, v.value) for t, v in zip(target.elements, value.elements, strict=True)
                ]
        for bound, expr in pairs:
            if isinstance(bound, cst.Name) and m.matches(expr, sliced):
                found.add(bound.value)
    return found


def _fp32_types(ctx: Ctx, rotary) -> tuple[str, ...]:
    """The layer types whose cos/sin the backbone computes from fp32 inputs
    (`self.rotary_emb(x.float() if layer_type == "indexed_attention" else x, ...)`, dots3):
    the rotary module casts its tables to its input's dtype, so those layers' tables stay
    fp32 and their q/k turn in fp32 (cast back by the attention)."""
    owner = ctx.model.stack_owner
    if not (isinstance(rotary, ModuleRec) and isinstance(owner, ModuleRec) and owner.cls):
        return ()
    found = ctx.model.project.find_method(owner.cls, "forward")
    if found is None:
        return ()
    cls, forward = found
    upcast = m.IfExp(
        test=m.Comparison(
            left=m.Name(),
            comparisons=[m.ComparisonTarget(operator=m.Equal(), comparator=m.SimpleString())],
        ),
        body=m.Call(func=m.Attribute(attr=m.Name("float")), args=[]),
    )
    call = m.Call(func=m.Attribute(value=m.Name("self")), args=[m.Arg(upcast), m.ZeroOrMore()])
    types = []
    for node in findall(forward, call):
        test = node.args[0].value.test
        types.append(test.comparisons[0].comparator.evaluated_value)
        ctx.cite("rope.fp32_types", f"{cls.sf.cite(node)} (tables from fp32 inputs)")
    return tuple(types)


def _fp32_tables(ctx: Ctx, rotary, fn) -> str | None:
    """Where the rotary module hands its cos/sin on in fp32 (its forward casts them to no
    dtype), the RoPE function casts no table to q's dtype and casts the rotated q/k back
    (`.to(q_type)`, `.type_as(q)`): q times an fp32 table is fp32, so the rotation's maths
    runs in fp32 on unrounded tables (beam; ERNIE-4.5 and DeepSeek-V2, which also upcast q
    themselves, DeepSeek-V2 through complex `freqs_cis`)."""
    if not (isinstance(rotary, ModuleRec) and rotary.cls is not None):
        return None
    if not isinstance(fn, FuncRef) or not isinstance(fn.node, cst.FunctionDef):
        return None
    found = ctx.model.project.find_method(rotary.cls, "forward")
    if found is None:
        return None
    owner, forward = found
    if findall(forward, _CAST_TO_INPUT):
        return None
    returns = findall(fn.node, m.Return())
    outputs = [
        e.value
        for r in returns
        for e in (r.value.elements if isinstance(r.value, cst.Tuple) else [])
    ]
    tables = _tables(fn.node, len(outputs))
    if any(_rooted_at(call, tables) for call in findall(fn.node, _CAST_TO_INPUT)):
        return None
    assigned = {
        a.targets[0].target.value: a.value
        for a in findall(fn.node, m.Assign(targets=[m.AssignTarget(target=m.Name())]))
    }
    outputs = [assigned.get(o.value, o) if isinstance(o, cst.Name) else o for o in outputs]
    if not outputs or not all(m.matches(o, _CAST_TO_INPUT) for o in outputs):
        return None
    return owner.sf.cite(forward)


# a cast to an input's dtype (`cos.to(dtype=x.dtype)`, `.to(original_dtype)`, `.type_as(x)`),
# not `.to(torch.float)` nor `.to(x.device)`
_INPUT_DTYPE = m.Attribute(attr=m.Name("dtype")) | m.Name(
    m.MatchIfTrue(lambda name: name.endswith(("dtype", "_type")))
)
_CAST_TO_INPUT = m.Call(
    func=m.Attribute(attr=m.Name("to")),
    args=[
        m.ZeroOrMore(),
        m.Arg(value=_INPUT_DTYPE),
        m.ZeroOrMore(),
    ],
) | m.Call(func=m.Attribute(attr=m.Name("type_as")))


def _tables(function: cst.FunctionDef, rotated: int) -> set[str]:
    """The function's table parameters: those after the `rotated` tensors it returns turned
    (q and k, or one x)."""
    return {p.name.value for p in function.params.params[max(rotated, 1) :]}


def _rooted_at(call: cst.Call, names: set[str]) -> bool:
    """The cast's receiver is, through attribute, call and index chains, one of `names`."""
    node = call.func.value if isinstance(call.func, cst.Attribute) else call.func
    while True:
        if isinstance(node, cst.Call):
            node = node.func
        elif isinstance(node, cst.Attribute | cst.Subscript):
            node = node.value
        else:
            return isinstance(node, cst.Name) and node.value in names


def _interleaved(ctx: Ctx, fn) -> bool:
    pair_ops = {"repeat_interleave", "view_as_complex", "polar"}
    if isinstance(fn, FuncRef):
        sig = ctx.roles.function_signals(fn.sf, fn.node)
    elif isinstance(fn, ModuleRec) and fn.cls is not None:
        sig = ctx.roles.method_signals(fn.cls)
        if ctx.roles.role(fn) == ATTENTION:  # RoPE inline: repeat_interleave expands kv heads
            pair_ops = pair_ops - {"repeat_interleave"}
    else:
        return False
    if sig.step2 or sig.pairs or sig.ops & pair_ops:
        return True
    return {"stack", "flatten"} <= sig.ops


def detect(ctx: Ctx, shared: dict) -> Rope:
    model = ctx.model
    per_layer = [p for p in shared["per_layer"] if p["type"] in ("full", "sliding")]
    if not per_layer:
        return Rope(type=UNKNOWN, partial_rotary=UNKNOWN, interleaved=UNKNOWN, nope_layers=UNKNOWN)
    rep = shared["rep"]
    cfg = rep.rec.attrs.get("config")
    if not isinstance(cfg, ConfigObj):
        cfg = model.config
    with_rope = [p for p in per_layer if p["rope"]]
    rotaries = _rotary_modules(ctx)
    if not with_rope:
        where = ctx.class_site(rep.rec)
        alibi = "attention.alibi" in ctx.evidence
        why = (
            "positions by ALiBi, no rotary embedding"
            if alibi
            else "no rotary position embedding applied"
        )
        for key in (
            "rope.type",
            "rope.partial_rotary",
            "rope.interleaved",
            "rope.nope_layers",
            "rope.per_layer_type",
        ):
            ctx.cite(key, f"{where} ({why})")
        # absolute positions added to the embeddings: `embedding.positions` (detect_embedding)
        return Rope(type="none", partial_rotary=1.0, interleaved=False, nope_layers=False)

    info = with_rope[0]["info"]
    fn = info.rope_fn
    fn_site = None
    if isinstance(fn, FuncRef):
        fn_site = fn.sf.cite(fn.node)
    elif isinstance(fn, ModuleRec):
        fn_site = ctx.class_site(fn)

    # -- type -----------------------------------------------------------------------------
    params = _rope_params(cfg)
    layer_types = attr(cfg, "layer_types")
    nested = {
        k: v
        for k, v in params.items()
        if isinstance(v, dict) and isinstance(layer_types, list) and k in layer_types
    }
    # rope parameters grouped under labels that are not layer types (DeepSeek-V4's "main" /
    # "compress"): the group the attention layers pick
    labelled = {k: v for k, v in params.items() if isinstance(v, dict)} if not nested else {}
    picked, layer_groups = _picked_group(ctx, per_layer, labelled) if labelled else (None, None)
    groups = nested or ({"all": params} if params else {})
    if picked in labelled:
        groups = {picked: labelled[picked]}
    types = {k: v.get("rope_type", v.get("type", "default")) for k, v in groups.items()}
    rotary = rotaries[0][1] if rotaries else None
    if rotary is None and isinstance(fn, ModuleRec) and ctx.roles.role(fn) == ATTENTION:
        rotary = fn  # RoPE computed inline: its frequencies are evaluated in the attention
    honours = rotary is not None and _uses_rope_type(ctx, rotary)
    if not types:
        rope_type = "default"
        ctx.cite("rope.type", f"{fn_site} (no rope_parameters in the config)")
    else:
        chosen = types.get("full_attention", next(iter(types.values())))
        if len(set(types.values())) > 1:
            ctx.notes.append(f"rope: rope_type differs per layer type: {types}")
        rope_type = chosen if chosen in KNOWN_TYPES else "other"
        dispatch = None if honours or rope_type == "default" else _compares_to(ctx, chosen)
        if dispatch is not None:
            honours = True
            ctx.notes.append(f"rope: rope_type={chosen!r} dispatched by hand at {dispatch}")
        if not honours and rope_type != "default":
            ctx.notes.append(
                f"rope: config rope_type={chosen!r} but the rotary module does not dispatch on it"
            )
            rope_type = UNKNOWN
        named = "full_attention" if "full_attention" in types else next(iter(types))
        key = f"rope_parameters.{named}.rope_type" if nested else "rope_parameters.rope_type"
        if picked in labelled:
            key = f"rope_parameters.{picked}.rope_type"
        ctx.cite("rope.type", ctx.cite_config(key, chosen))
    ctx.cite(
        "rope.per_layer_type",
        ctx.cite_config("rope_parameters", sorted(nested)) if nested else fn_site,
    )
    if rope_type == "default":
        ntk = _runtime_ntk(ctx, rotary)
        if ntk is not None:
            # the base grows with the sequence length in the code itself (a use_dynamic_ntk
            # flag, not rope_scaling): no rope type of the references computes it this way
            rope_type = "other"
            ctx.notes.append(f"rope: the base is rescaled with the sequence length at {ntk}")
            ctx.cite("rope.type", f"{ntk} (dynamic NTK written in the code)")
    theta = None
    group = groups.get("full_attention") or next(iter(groups.values()), {})
    if isinstance(group, dict) and isinstance(group.get("rope_theta"), int | float):
        theta = float(group["rope_theta"])

    # -- partial rotary -------------------------------------------------------------------------
    partial: float | str = UNKNOWN
    q_head = rep_head_dim(ctx, shared)
    layer_type = _table_layer_type(nested, layer_types, with_rope[0]["index"])
    dim = rotary_dim(ctx, rotary, cfg, layer_type) if rotary is not None else None
    sliced_at = None
    if dim is None:
        dim, sliced_at = _sliced_rotary_dim(info)
    if dim is None:
        dim, sliced_at = _supplied_table_width(ctx, info)
    table_path = _table_path(ctx, info, fn_site)
    if dim is not None and q_head:
        partial = round(dim / q_head, 6)
        if partial > 1:
            partial = UNKNOWN
        ctx.cite(
            "rope.partial_rotary",
            f"{sliced_at or ctx.class_site(rotary)} (rotary dim {dim} of head dim {q_head})",
        )
    else:
        factor = group.get("partial_rotary_factor") if isinstance(group, dict) else None
        key = f"rope_parameters.{picked}.partial_rotary_factor"
        if picked not in labelled:
            key = "partial_rotary_factor"
        # rope parameters grouped under labels that are not layer types (DeepSeek-V4's
        # "main" / "compress") where the layers' pick is not read: one factor if all agree
        factors = {v.get(key) for v in labelled.values()}
        if factor is None and labelled and len(factors) == 1:
            factor = factors.pop()
            key = f"rope_parameters.{next(iter(labelled))}.{key}"
        if isinstance(factor, int | float):
            partial = float(factor)
            ctx.cite("rope.partial_rotary", ctx.cite_config(key, factor))
        else:
            ctx.cite(
                "rope.partial_rotary",
                f"{ctx.class_site(rotary) if rotary else fn_site} (rotary dim not evaluated)",
            )
    if rope_type == "proportional" and partial != 1.0:
        # the factor zeroes the tail of a whole-head frequency table: every dim goes through
        # the rotation (the tail at frequency zero), none is passed around it
        partial = 1.0
        ctx.cite("rope.partial_rotary", ctx.evidence["rope.type"] + " (table spans the head)")
    configured = group.get("partial_rotary_factor") if isinstance(group, dict) else None
    if (
        rope_type != "proportional"
        and isinstance(configured, int | float)
        and isinstance(partial, float)
    ):
        if abs(configured - partial) > 1e-6 and not (rep.mla):
            ctx.notes.append(
                f"rope: config partial_rotary_factor={configured} "
                f"but the code rotates {partial} of the head"
            )

    # -- interleaving, the rotated slice, per-layer -----------------------------------------------
    interleaved = _interleaved(ctx, fn)
    glued = _glued_slices(fn) if isinstance(fn, FuncRef) else None
    rotated_slice = glued[0] if glued else "leading"
    if glued:
        where = "in front" if glued[0] == "trailing" else "after"
        ctx.cite("rope.rotated_slice", f"{fn.sf.cite(glued[1])} (the passed slice glued {where})")
    else:
        ctx.cite("rope.rotated_slice", fn_site)
    ctx.cite("rope.interleaved", fn_site)
    turned_back = _reversed(fn) if not interleaved else None
    upcast = _upcast(fn)
    tables = _fp32_tables(ctx, rotary, fn)
    if tables:
        ctx.cite("rope.fp32", f"{tables} (cos/sin handed on in fp32: q/k turn in fp32)")
    else:
        ctx.cite("rope.fp32", f"{upcast} (q/k turned in fp32)" if upcast else fn_site)
    ctx.cite("rope.reversed", f"{turned_back} (cat((x2, -x1)))" if turned_back else fn_site)
    no_rope = [p["index"] for p in per_layer if not p["rope"]]
    nope_layers = bool(no_rope)
    bases = layer_bases(ctx)
    nope_rule = None
    if nope_layers:
        ctx.cite(
            "rope.nope_layers",
            f"{ctx.class_site(rep.rec)} (layers without RoPE: {layer_ranges(no_rope)})",
        )
        nope_rule = _nope_rule(ctx, per_layer, fn) or _rope_of_nonzero_base(ctx, per_layer, bases)
        ctx.cite("rope.nope_rule", f"{fn_site} (RoPE where {nope_rule or 'not restated'})")
    else:
        ctx.cite("rope.nope_layers", fn_site)
    fixed_ntk = _fixed_ntk_key(ctx, rotary)
    if fixed_ntk is not None:
        ctx.cite(
            "rope.ntk_alpha",
            f"{fixed_ntk[1]} (base * rope_parameters[{fixed_ntk[0]!r}]"
            " ** (d / (d - 2)), once at init)",
        )
    after = _norm_after_rope(rep)
    if after:
        ctx.cite("rope.qk_norm_after_rope", f"{after} (the q/k norm takes the rotated q/k)")
    elif rep.q_norm is not None or rep.k_norm is not None:
        ctx.cite("rope.qk_norm_after_rope", ctx.evidence.get("attention.qk_norm", fn_site))
    return Rope(
        type=rope_type,
        partial_rotary=partial,
        interleaved=interleaved,
        reversed=turned_back is not None,
        fp32=upcast is not None or tables is not None,
        tables_fp32=tables is not None,
        fp32_types=_fp32_types(ctx, rotary),
        nope_layers=nope_layers,
        nope_rule=nope_rule,
        per_layer_type=bool(nested),
        theta=theta,
        parameters=params,
        qk_norm_after_rope=bool(after),
        ntk_alpha=fixed_ntk[0] if fixed_ntk else None,
        table=table_path,
        rotated_slice=rotated_slice,
        group=picked,
        layer_groups=layer_groups,
        layer_bases=bases,
    )


def _picked_group(ctx: Ctx, per_layer: list[dict], labelled: dict) -> tuple[str, dict | None]:
    """The label of `rope_parameters` whose tables the attention layers rotate with: the key
    their forward indexes its position embeddings with (`position_embeddings[self.X]`, X
    evaluated per layer, or a literal key); "other" where no pick is read or a key is no
    label. Where the layers pick two labels through one attribute that `__init__` sets to
    one label or the other (`self.X = "a" if <test> else "b"`, the test over the config and
    the layer index), the first layer's label and the fact `rope.layer_groups`: the other
    label and the test restated over `hf_config` and `i` for the layers that pick it
    (checked against every analysed layer); else "other". Cited at the pick and at X's
    assignment."""
    picks: dict[str, str] = {}
    by_layer: list[tuple[int, object, str, str | None]] = []  # (index, rec, label, attr)
    for p in per_layer:
        rec = p["info"].rec
        found = ctx.model.project.find_method(rec.cls, "forward") if rec.cls else None
        if found is None:
            return "other", None
        owner, forward = found
        params = {q.name.value for q in forward.params.params} - {"self"}
        keys = []
        for sub in findall(forward, m.Subscript(value=m.Name(m.MatchIfTrue(params.__contains__)))):
            index = sub.slice[0].slice if len(sub.slice) == 1 else None
            index = getattr(index, "value", None)
            if isinstance(index, cst.SimpleString):
                keys.append((index.evaluated_value, owner.sf.cite(sub), None))
            elif m.matches(index, m.Attribute(value=m.Name("self"))):
                value = rec.attrs.get(index.attr.value)
                where = ctx.attr_site(rec, index.attr.value) or owner.sf.cite(sub)
                keys.append((value, f"{owner.sf.cite(sub)}, {where}", index.attr.value))
        labels = [k for k in keys if isinstance(k[0], str) and k[0] in labelled]
        if len(labels) != 1:
            return "other", None
        picks.setdefault(labels[0][0], labels[0][1])
        by_layer.append((p["index"], rec, labels[0][0], labels[0][2]))
    if len(picks) == 1:
        ((label, where),) = picks.items()
        # the pick may still be a test this config's layers all fail (DeepSeek-V4's
        # default has no sliding layer, the one kind that picks "main")
        groups = _layer_groups(ctx, by_layer, labelled) if by_layer else None
        if groups is None:
            every = f"every attention layer's tables: rope_parameters[{label!r}]"
            ctx.cite("rope.group", f"{where} ({every})")
            return label, None
        ctx.cite("rope.group", f"{where} (the first layer's tables: rope_parameters[{label!r}])")
        ctx.cite(
            "rope.layer_groups",
            f"{where} (rope_parameters[{groups['other']!r}] where {groups['test']}:"
            " no layer of this config)",
        )
        return label, groups
    detail = ", ".join(f"{k!r} ({w})" for k, w in picks.items()) or "no pick read"
    groups = _layer_groups(ctx, by_layer, labelled) if len(picks) == 2 else None
    if groups is None:
        ctx.cite("rope.group", f"{detail}: the layers rotate with several groups")
        return "other", None
    first = by_layer[0][2]
    ctx.cite("rope.group", f"{picks[first]} (the first layer's tables: rope_parameters[{first!r}])")
    ctx.cite(
        "rope.layer_groups",
        f"{detail} (rope_parameters[{groups['other']!r}] where {groups['test']})",
    )
    return first, groups


def _layer_groups(ctx: Ctx, by_layer: list, labelled: dict) -> dict | None:
    """{"other": the label the first layer does not pick, "test": the condition over
    `hf_config` and `i` under which a layer picks it}: the pick attribute's assignment in
    `__init__`, `"a" if <test> else "b"` (a and b two labels of `labelled`), restated over
    the config and the layer index and giving every analysed layer its label (the other
    label may be picked by none of them: the config decides); else None."""
    recs = [rec for _, rec, _, _ in by_layer]
    names = {name for _, _, _, name in by_layer}
    if len(names) != 1 or None in names or any(r.cls is not recs[0].cls for r in recs):
        return None
    label_of = {index: label for index, _, label, _ in by_layer}
    first = by_layer[0][2]
    pick = cst.parse_expression(f"self.{names.pop()}")
    layers = [(index, rec) for index, rec, _, _ in by_layer]
    restated = init_rule(ctx, recs[0], pick, layers, lambda i, v: v == label_of[i])
    if restated is None:
        return None
    node = cst.parse_expression(restated)
    if not isinstance(node, cst.IfExp):
        return None
    branches = [getattr(b, "evaluated_value", None) for b in (node.body, node.orelse)]
    if not all(isinstance(b, cst.SimpleString) for b in (node.body, node.orelse)):
        return None
    others = set(branches) - {first}
    if first not in branches or len(others) != 1 or not others <= set(labelled):
        return None
    (other,) = others
    test = node.test.with_changes(lpar=[], rpar=[])
    if branches[1] == other:  # the other label is the else branch: the test negated
        test = _negated(test)
    return {"other": other, "test": cst.Module([]).code_for_node(test)}


def _negated(test: cst.BaseExpression) -> cst.BaseExpression:
    """`a == b` -> `a != b` (and back); anything else -> `not (test)`."""
    flips = {cst.Equal: cst.NotEqual, cst.NotEqual: cst.Equal, cst.In: cst.NotIn}
    flips[cst.NotIn] = cst.In
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
        (target,) = test.comparisons
        flip = flips.get(type(target.operator))
        if flip is not None:
            operator = flip()
            return test.with_changes(comparisons=[target.with_changes(operator=operator)])
    inner = test.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    if isinstance(test, cst.Name | cst.Attribute | cst.Call | cst.Subscript):
        inner = test
    return cst.UnaryOperation(operator=cst.Not(), expression=inner)


def _glued_slices(fn: FuncRef) -> tuple[str, cst.Call] | None:
    """("trailing", the cat) where the rotation function glues a slice of its input that it
    passes unturned in front of the turned part (`cat([x[..., :-d], turned])`), ("leading",
    the cat) where after it (`cat([turned, x[..., d:]])`); None where it glues nothing."""
    node = fn.node
    if not isinstance(node, cst.FunctionDef):
        return None
    inputs = {p.name.value for p in node.params.params}
    bound: dict[str, cst.BaseExpression] = {}
    for assign in findall(node, m.Assign()):
        for target in assign.targets:
            names, values = target.target, assign.value
            if isinstance(names, cst.Name):
                bound[names.value] = values
            elif isinstance(names, cst.Tuple) and isinstance(values, cst.Tuple):
                if len(names.elements) == len(values.elements):
                    for n, v in zip(names.elements, values.elements, strict=True):
                        if isinstance(n.value, cst.Name):
                            bound[n.value.value] = v.value

    def passed(element) -> bool:
        value = bound.get(element.value.value) if isinstance(element.value, cst.Name) else None
        if value is None:
            value = element.value
        return m.matches(value, m.Subscript(value=m.Name(m.MatchIfTrue(inputs.__contains__))))

    cat = m.Call(func=m.Attribute(attr=m.Name("cat")) | m.Name("cat"))
    for call in findall(node, cat):
        parts = call.args[0].value if call.args else None
        if not isinstance(parts, cst.List | cst.Tuple) or len(parts.elements) != 2:
            continue
        first, second = (passed(e) for e in parts.elements)
        if first != second:
            return ("trailing" if first else "leading"), call
    return None


def _norm_after_rope(rep) -> str | None:
    """Where a q/k norm is applied to the rotated q/k: the norm's input carries an input of
    the attention other than its hidden states (the position embeddings or ids)."""
    from codegen.analyze.dataflow import terms_in, walk
    from codegen.analyze.detect_attention import _qkv

    if rep.kernel is None or (rep.q_norm is None and rep.k_norm is None):
        return None
    for path, norm in zip(_qkv(rep.kernel), (rep.q_norm, rep.k_norm), strict=False):
        for call in (t for t in walk(path) if t.op == "call" and t.module is norm):
            for arg in terms_in(list(call.args)):
                if any(x.op == "input" and not x.kwargs.get("primary") for x in walk(arg)):
                    return call.site.cite() if call.site else "?"
    return None


def _nope_rule(ctx: Ctx, per_layer: list[dict], fn) -> str | None:
    """Which layers rotate, as the guard around the rotation restated over the config."""
    recs = [p["info"].rec for p in per_layer]
    if any(r.cls is not recs[0].cls for r in recs):
        return None  # different attention classes: no single guard
    layers = [(p["index"], p["info"].rec, p["rope"]) for p in per_layer]
    return guard_rule(ctx, recs[0], fn, layers) or _rope_of_layer_type(ctx, per_layer)


# RoPE on the layers whose type's entry of a per-type rope_parameters is not None
PER_TYPE_RULE = "hf_config.rope_parameters[hf_config.layer_types[i]] is not None"


def _rope_of_layer_type(ctx: Ctx, per_layer: list[dict]) -> str | None:
    """`PER_TYPE_RULE` where rope_parameters is keyed by layer type and exactly the layers
    whose type's entry is None rotate nothing (beam: the stack hands those layers no
    rope tables); else None."""
    config = ctx.model.config
    params, types = attr(config, "rope_parameters"), attr(config, "layer_types")
    if not (isinstance(params, dict) and isinstance(types, list | tuple)):
        return None
    if not all(isinstance(t, str) and t in params for t in types):
        return None
    if any(p["index"] >= len(types) for p in per_layer):
        return None
    if all(p["rope"] == (params[types[p["index"]]] is not None) for p in per_layer):
        return PER_TYPE_RULE
    return None


def _rope_of_nonzero_base(ctx: Ctx, per_layer: list[dict], bases: dict | None) -> str | None:
    """`hf_config.<list>[i]` where each layer reads its RoPE base from a config list
    (`rope.layer_bases`) and exactly the layers whose entry is 0 rotate nothing (the stack
    hands them no table); else None."""
    field = (bases or {}).get("field")
    entries = attr(ctx.model.config, field) if field else None
    if not isinstance(entries, list | tuple):
        return None
    if any(p["index"] >= len(entries) for p in per_layer):
        return None
    if all(p["rope"] == bool(entries[p["index"]]) for p in per_layer):
        return f"hf_config.{field}[i]"
    return None


def _table_path(ctx: Ctx, info, fn_site) -> str | None:
    """The HF module path of the position table whose rows the rotation reads, when the
    stack looks it up by sequence index alone (no input of the stack besides the hidden
    states reaches the lookup: position ids are not read); None without such a table. A
    table looked up with another input is named unsupported."""
    from codegen.analyze.dataflow import walk

    table = _supplied_table(info)
    if table is None:
        ctx.cite("rope.table", fn_site)
        return None
    ctx.rope_tables.append(table)
    path = next((p for p, r in walk_tree(ctx.model.entry) if r is table), None)
    lookup = next(
        t
        for term in (info.rope_inputs or {}).values()
        for t in walk(term)
        if t.op == "call" and t.module is table
    )
    inputs = sorted(
        {
            t.name
            for a in lookup.args
            if isinstance(a, Term)
            for t in walk(a)
            if t.op == "input" and not t.kwargs.get("primary")
        }
    )
    where = ctx.site(table) or fn_site
    if path is None or inputs:
        ctx.unsupported(
            "rope.table",
            f"the rotation's sin and cos are rows of a stored position table looked up with"
            f" {', '.join(inputs) or 'an input'} (not by sequence index alone): no rule yet",
            where,
        )
        return None
    ctx.cite("rope.table", f"{where} ({path}: [sin | cos] rows by sequence index)")
    return path


def _supplied_table(info) -> ModuleRec | None:
    """The position table (an embedding module) the stack looks rows up in for an input the
    rotation is applied with (RoFormer's `embed_positions(...)`, handed to every attention)."""
    from codegen.analyze.dataflow import walk

    for term in (info.rope_inputs or {}).values():
        for t in walk(term):
            if t.op == "call" and isinstance(t.module, ModuleRec) and t.module.kind == "Embedding":
                return t.module
    return None


def _supplied_table_width(ctx: Ctx, info) -> tuple[int | None, str | None]:
    """The row width of that table: the rotary dim, since the rotation splits each row into
    its sin and cos halves of rotary_dim / 2 frequencies, each turning a pair of dims."""
    table = _supplied_table(info)
    if table is None:
        return None, None
    width = table.args[1] if len(table.args) > 1 else None
    width = table.kwargs.get("embedding_dim", width)
    if isinstance(width, int) and not isinstance(width, bool):
        return width, ctx.site(table)
    return None, None


def _sliced_rotary_dim(info) -> tuple[int | None, str | None]:
    """`q[..., :rotary_dim]` handed to the rotation (no rotary module to evaluate)."""
    from codegen.analyze.dataflow import Term

    trace = info.trace
    if trace is None:
        return None, None
    for func, args in trace.tracer.func_calls:
        if func is not info.rope_fn:
            continue
        for arg in args:
            if isinstance(arg, Term) and arg.op == "index" and arg.name:
                last = arg.name.split(",")[-1]
                parts = last.split(":")
                if len(parts) == 3 and parts[0] == "" and parts[1].isdigit():
                    return int(parts[1]), arg.site.cite() if arg.site else None
    return None, None


def _table_layer_type(nested: dict, layer_types, first: int) -> str | None:
    """The layer type whose rope parameters the rotary table is evaluated with: the full
    attention's where the config keys them by layer type, else the first rotated layer's own
    type (indexed / sliding layers only: its factor, not a full_attention entry that is not
    there); None where the parameters are not keyed by layer type."""
    if not nested:
        return None
    if "full_attention" in nested:
        return "full_attention"
    own = layer_types[first] if isinstance(layer_types, list) and first < len(layer_types) else None
    return own if own in nested else "full_attention"


def rep_head_dim(ctx: Ctx, shared: dict) -> int | None:
    """Head dim of the rotated q/k heads (q projection width / heads; attribute fallback)."""
    rep = shared["rep"]
    head_dim = shared.get("q_head_dim")
    if head_dim:
        return head_dim
    value = (
        rep.rec.attrs.get("qk_head_dim")
        or rep.rec.attrs.get("head_dim")
        or rep.rec.attrs.get("head_size")
    )
    return value if isinstance(value, int) and not isinstance(value, bool) else None
