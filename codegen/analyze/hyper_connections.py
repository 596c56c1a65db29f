"""Hyper-connections: the residual stream widened into parallel streams.

Recognised from the layer's data flow, never from names. Each sublayer's residual sum is
`post * sublayer(norm(x)) + comb^T @ h`, where `h` is the layer's input (a stack of streams),
`x` the streams collapsed with per-token weights, and `post` and `comb` weights computed from
the streams by a module of the layer (its parameters are read by all three). The forms the
rule realises:

* DeepSeek-V4's manifold-constrained one: `post` is twice a sigmoid; `comb` a softmax made
  doubly stochastic by Sinkhorn iterations (the loop's count a config field, read from
  `for _ in range(self.<attr> - 1)` and the `self.<attr> = config.<field>` of the module's
  `__init__`), consumed transposed; the module's three parameters are the projection (2D),
  its bias and three scales (1D);
* HY-V4's: the streams added back unmixed (`post * sublayer(...) + h`, no `comb`); `post` a
  sigmoid times a number or a config field (`self.<attr> = config.<field>`), plus the eps
  or not; the projection, its bias and two scales (pre's and post's);

and in both the backbone collapses the streams before the final norm with a module of three
parameters of (streams, streams x hidden), (streams,) and (1,).

The fact is a dict: `layer` (the attributes of the attention's and the FFN's module),
`params` (their projection, bias and scale parameter names), `head` (the backbone attribute)
and `head_params`, the config fields `streams`, `sinkhorn_iters` (None: no mix), `eps`,
`norm_eps`, and the form: `mix` ("sinkhorn" or None), `post_scale` (the number, or the
config field, `post`'s sigmoid is multiplied by), `post_eps` (the eps added to `post` too)
and `write_fp32` (the write-back summed in fp32, `.float()` operands, then cast back).
Another form is named unsupported with what differs, as the `block.layer_modules` finding
(in place of its generic line).
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, primary_input, walk
from codegen.analyze.evaluate import ModuleRec, ParamRec

LABELS = ("attention", "mlp")


def detect(ctx: Ctx, facts: dict | None) -> dict | None:
    """The hyper-connection fact of the model's first layer (see the module docstring), or
    None when its residual adds are plain ones (or not read)."""
    layers = [rec for rec in ctx.model.layers or () if isinstance(rec, ModuleRec)]
    if not layers or not facts:
        return None
    layer = layers[0]
    reads = [_read(layer, facts.get(label)) for label in LABELS]
    odd = [r for r in reads if r is not None and r["why"]]
    if odd:  # named even where the other sublayer's sum was not read
        names = _call_order(ctx, layer, odd[0]["module"])
        what = _describe(layer.attrs[names[0]]) if names else "?"
        ctx.unsupported(
            "block.layer_modules",  # before layer_extras' generic line, in its place
            f"hyper-connections ({', '.join(names)}: {what}) of another form: {odd[0]['why']}:"
            " no rule yet (the rule realises post = 2 x sigmoid and a Sinkhorn-mixed stream,"
            " or a sigmoid times a number or config field and the streams added back unmixed)",
            odd[0]["site"],
        )
        return None
    if any(r is None for r in reads):
        return None
    # each sublayer's read names the module whose weights it uses; instances built alike at
    # one site share their records, so there a read answers with both modules
    candidates = tuple(dict.fromkeys(name for r in reads for name in r["module"]))
    if len(candidates) != 2 or any(
        (r["mix"], r["post"], r["write_fp32"])
        != (reads[0]["mix"], reads[0]["post"], reads[0]["write_fp32"])
        for r in reads
    ):
        return None
    names = _call_order(ctx, layer, candidates)
    if len(names) != 2:
        return None
    recs = [layer.attrs[n] for n in names]
    if recs[0].cls is None or recs[0].cls is not recs[1].cls:
        return None
    where = reads[0]["site"]
    fact = _module_fact(ctx, recs[0], reads[0])
    head = _head(ctx, fact)
    if fact is None or head is None:
        ctx.unsupported(
            "block.layer_modules",
            f"hyper-connections ({', '.join(names)}: {_describe(recs[0])}) whose config fields"
            " or final collapse could not be read: no rule yet",
            where,
        )
        return None
    fact.update(layer=tuple(names), **head)
    fact["scale_init"], fact["pre_base_init"] = _init(ctx, recs[0].cls.name, fact["params"][2])
    fact["head_scale_init"], fact["head_base_init"] = _init(
        ctx, head["head_class"], fact["head_params"][2]
    )
    del fact["head_class"]
    form = f"{fact['sinkhorn_iters']} Sinkhorn steps" if fact["mix"] else "streams unmixed"
    ctx.cite("block.hyper_connections", f"{where} ({form})")
    return fact


def _describe(rec: ModuleRec) -> str:
    return rec.cls.name if rec.cls else rec.kind


def _owner(layer: ModuleRec, term: Term) -> tuple[str, ...] | None:
    """The attributes of `layer` (modules) whose parameters `term` reads, None for none.
    (Instances of one class built at one site share their parameter records, so there both
    modules answer: `detect` tells them apart by the order the forward calls them.)"""
    params = {id(t.module) for t in walk(term) if t.op == "param"}
    found = tuple(
        name
        for name, child in layer.children()
        if isinstance(child, ModuleRec)
        and any(isinstance(v, ParamRec) and id(v) in params for v in child.attrs.values())
    )
    return found or None


def _call_order(ctx: Ctx, layer: ModuleRec, names: tuple[str, ...]) -> list[str]:
    """`names` in the order the layer's forward first calls `self.<name>(...)`."""
    found = ctx.model.project.find_method(layer.cls, "forward") if layer.cls else None
    if found is None:
        return []
    calls = m.findall(found[1], m.Call(func=m.Attribute(value=m.Name("self"))))
    order = [c.func.attr.value for c in calls if c.func.attr.value in names]
    return list(dict.fromkeys(order))


def _read(layer: ModuleRec, found) -> dict | None:
    """One sublayer's hyper-connection: the module's attribute, its Sinkhorn step count (as
    divisions), its form (see the module docstring), the site, and why it is another form
    ("" for a form the rule realises)."""
    if not isinstance(found, dict):
        return None
    add, call = _own_add(found.get("add"), found.get("call"))
    if add is None:
        return None
    written = [a for a in add.args if isinstance(a, Term) and any(x is call for x in walk(a))]
    kept = [a for a in add.args if isinstance(a, Term) and not any(x is call for x in walk(a))]
    if len(written) != 1 or len(kept) != 1 or written[0].op != "mul":
        return None
    post = [a for a in written[0].args if isinstance(a, Term) and a is not _sub(a, call)]
    if len(post) != 1:
        return None
    module = _owner(layer, post[0])
    collapsed = primary_input(primary_input(call))  # the sublayer's input before its norm
    if module is None or not isinstance(collapsed, Term) or _owner(layer, collapsed) != module:
        return None
    site = add.site.cite() if add.site else None
    node = add.site.node if add.site else None
    info = {
        "module": module,
        "site": site,
        "why": "",
        "divisions": 0,
        "mix": "sinkhorn",
        "post": _post_form(post[0]),
        "write_fp32": node is not None and bool(m.findall(node, _FLOAT)),
    }
    if info["post"] is None:
        info["why"] = "the output's weights are not a sigmoid times a number or config field"
        return info
    mix = kept[0]
    if _weighs(collapsed, mix):  # the streams added back as they are
        info["mix"] = None
        return info
    if not (mix.op == "fn" and mix.name.rsplit(".", 1)[-1] == "matmul" and len(mix.args) == 2):
        info["why"] = "the streams are mixed otherwise than by a matrix product"
        return info
    if info["post"] != (2, False):
        info["why"] = "the mixed form's output weights are not twice a sigmoid"
        return info
    comb = mix.args[0]
    if not isinstance(comb, Term) or _owner(layer, comb) != module:
        return None
    divisions = 0
    while isinstance(comb, Term) and comb.op == "div":
        divisions, comb = divisions + 1, comb.args[0]
    if not divisions or not any(
        t.op == "fn" and t.name.rsplit(".", 1)[-1] == "softmax" for t in walk(comb)
    ):
        info["why"] = "the streams' mix is not a Sinkhorn-normalised softmax"
        return info
    if not _transposed_first(mix):
        info["why"] = "the streams' mix is applied untransposed"
        return info
    info["divisions"] = divisions
    return info


def _weighs(collapsed: Term, streams: Term) -> bool:
    """`collapsed` is `(pre * streams).sum(...)`: the module's weights times `streams` itself
    (the module's forward is traced inline)."""
    if collapsed.op != "fn" or collapsed.name.rsplit(".", 1)[-1] != "sum" or not collapsed.args:
        return False
    product = collapsed.args[0]
    return (
        isinstance(product, Term)
        and product.op == "mul"
        and any(a is streams for a in product.args)
    )


_FLOAT = m.Call(func=m.Attribute(attr=m.Name("float")), args=[])


def _own_add(add, call) -> tuple[Term | None, Term | None]:
    """The residual add `call`'s output enters itself: detect_norm climbs to the outermost
    add of a chain, which for streams added back unmixed is the next sublayer's sum."""
    if not isinstance(add, Term) or add.op != "add" or not isinstance(call, Term):
        return None, None
    for term in walk(add):
        if term.op != "add" or len(term.args) != 2:
            continue
        for arg in term.args:
            if isinstance(arg, Term) and arg.op == "mul" and any(a is call for a in arg.args):
                return term, call
    return (add, call) if len(add.args) == 2 else (None, None)


def _post_form(term: Term):
    """(multiplier, eps added) of `post` = `k * sigmoid(...)` (+ a number): k a number or
    the `self.<attr>` it is written with (resolved to a config field by `_module_fact`)."""
    eps = False
    if term.op == "add" and len(term.args) == 2:
        terms = [a for a in term.args if isinstance(a, Term)]
        if len(terms) != 1 or not any(_number(a) for a in term.args):
            return None
        term, eps = terms[0], True
    if term.op != "mul" or len(term.args) != 2:
        return None
    numbers = [a for a in term.args if _number(a)]
    sig = [a for a in term.args if isinstance(a, Term) and a.op == "fn"]
    if len(numbers) != 1 or len(sig) != 1 or sig[0].name.rsplit(".", 1)[-1] != "sigmoid":
        return None
    node = term.site.node if term.site else None
    attr = None
    if isinstance(node, cst.BinaryOperation):
        for side in (node.left, node.right):
            if m.matches(side, m.Attribute(value=m.Name("self"))):
                attr = side.attr.value
    return (attr, eps) if attr else (numbers[0], eps)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _sub(term: Term, call: Term) -> Term | None:
    """`term` when it holds the sublayer's `call`, else None."""
    return term if any(x is call for x in walk(term)) else None


_TRANSPOSE = m.Call(func=m.Attribute(attr=m.Name("transpose")), args=[m.Arg(), m.Arg()]) | (
    m.Attribute(attr=m.Name("mT"))
)


def _transposed_first(mix: Term) -> bool:
    """The matmul's first operand is written transposed (`comb.transpose(-1, -2)`, `.mT`)."""
    node = mix.site.node if mix.site else None
    if not isinstance(node, cst.Call) or not node.args:
        return False
    first = node.args[0].value
    while isinstance(first, cst.Call) and m.matches(
        first.func, m.Attribute(attr=m.Name("to") | m.Name("float"))
    ):
        first = first.func.value
    if m.matches(first, _TRANSPOSE):
        return True
    # `.to(dtype).transpose(-1, -2)`: the transpose outermost
    return False


def _config_attrs(ctx: Ctx, rec: ModuleRec) -> dict[str, str]:
    """`self.<attr> = config.<field>` of `rec`'s `__init__`: attr -> field."""
    found = ctx.model.project.find_method(rec.cls, "__init__") if rec.cls else None
    if found is None:
        return {}
    out = {}
    pattern = m.Assign(
        targets=[m.AssignTarget(m.Attribute(value=m.Name("self")))],
        value=m.Attribute(value=m.Name("config")),
    )
    for node in m.findall(found[1], pattern):
        out[node.targets[0].target.attr.value] = node.value.attr.value
    return out


def _loop_attr(ctx: Ctx, rec: ModuleRec) -> str | None:
    """The `self.<attr>` of the one `for _ in range(self.<attr> - 1)` in `rec`'s forward."""
    found = ctx.model.project.find_method(rec.cls, "forward") if rec.cls else None
    if found is None:
        return None
    loops = m.findall(found[1], m.For(iter=m.Call(func=m.Name("range"))))
    attrs = [
        a.attr.value
        for loop in loops
        for a in m.findall(loop.iter, m.Attribute(value=m.Name("self")))
    ]
    return attrs[0] if len(loops) == 1 and len(attrs) == 1 else None


def _norm_eps(ctx: Ctx, rec: ModuleRec) -> str | None:
    """The config field of the eps of `rec`'s weightless norm (a child with no parameter)."""
    fields = []
    for _, child in rec.children():
        if isinstance(child, ModuleRec) and child.site is not None:
            reads = m.findall(child.site.node, m.Attribute(value=m.Name("config")))
            fields += [r.attr.value for r in reads]
    return fields[0] if len(fields) == 1 else None


def _params(rec: ModuleRec) -> dict[int, list[str]]:
    """`rec`'s parameters by rank: {2: [...], 1: [...]} in definition order."""
    out: dict[int, list[str]] = {}
    for name, value in rec.attrs.items():
        if isinstance(value, ParamRec) and value.kind == "parameter":
            out.setdefault(len(value.shape), []).append(name)
    return out


def _module_fact(ctx: Ctx, rec: ModuleRec, read: dict) -> dict | None:
    attrs = _config_attrs(ctx, rec)
    params = _params(rec)
    if len(params.get(2, ())) != 1 or len(params.get(1, ())) != 2:
        return None
    fn, (base, scale) = params[2][0], params[1]
    width, scales = rec.attrs[base].shape[0], rec.attrs[scale].shape[0]
    mixed = read["mix"] == "sinkhorn"
    if scales != (3 if mixed else 2):
        return None

    # the streams' count n: the bias holds (2 + n) * n values (pre, post and comb's n x n),
    # or 2 * n without the mix
    def holds(n) -> bool:
        return isinstance(n, int) and not isinstance(n, bool) and (2 + n * mixed) * n == width

    streams = [a for a in attrs if holds(rec.attrs.get(a))]
    if len(streams) != 1:
        return None
    multiplier, post_eps = read["post"]
    if isinstance(multiplier, str):  # `self.<attr> * torch.sigmoid(...)`: a config field
        if multiplier not in attrs:
            return None
        multiplier_attr, multiplier = multiplier, attrs[multiplier]
    else:
        multiplier_attr = None
    loop = iters = None
    if mixed:
        loop = _loop_attr(ctx, rec)
        iters = rec.attrs.get(loop) if loop else None
        if loop not in attrs or read["divisions"] != 2 * (iters or 0) - 1:
            return None
    taken = (streams[0], loop, multiplier_attr)
    eps = [a for a in attrs if isinstance(rec.attrs.get(a), float) and a not in taken]
    norm_eps = _norm_eps(ctx, rec)
    if len(eps) != 1 or norm_eps is None:
        return None
    return {
        "params": (fn, base, scale),
        "streams": attrs[streams[0]],
        "sinkhorn_iters": attrs[loop] if mixed else None,
        "eps": attrs[eps[0]],
        "norm_eps": norm_eps,
        "mix": read["mix"],
        "post_scale": multiplier,
        "post_eps": post_eps,
        "write_fp32": read["write_fp32"],
        "norm_after": _norm_after(ctx, rec),
    }


# `F.linear(flat, fn) * self.<norm>(flat)`: the projection scaled by the norm's factor
_NORM_AFTER = m.BinaryOperation(
    left=m.Call(func=m.Attribute(attr=m.Name("linear")) | m.Name("linear")),
    operator=m.Multiply(),
    right=m.Call(func=m.Attribute(value=m.Name("self")), args=[m.AtLeastN(n=1)]),
)


def _norm_after(ctx: Ctx, rec: ModuleRec) -> bool:
    """The streams' RMS factor scales the projection (HY-V4), not the flattened streams
    before it: the forward multiplies the projection by a call of a module of its own."""
    forward = ctx.model.project.find_method(rec.cls, "forward") if rec.cls else None
    return bool(forward and m.findall(forward[1], _NORM_AFTER))


def _head(ctx: Ctx, fact: dict | None) -> dict | None:
    """The backbone's module collapsing the streams (parameters of (streams, streams x
    hidden), (streams,) and (1,)): its attribute and parameter names."""
    owner = ctx.model.stack_owner
    if fact is None or owner is None:
        return None
    found = []
    for name, child in owner.children():
        if not isinstance(child, ModuleRec) or child.cls is None:
            continue
        params = _params(child)
        if len(params.get(2, ())) != 1 or len(params.get(1, ())) != 2:
            continue
        fn, (base, scale) = params[2][0], params[1]
        streams = child.attrs[fn].shape[0]
        if child.attrs[base].shape == (streams,) and child.attrs[scale].shape == (1,):
            found.append((name, (fn, base, scale)))
    if len(found) != 1:
        return None
    name, params = found[0]
    head = owner.attrs[name]
    return {
        "head": name,
        "head_params": params,
        "head_class": head.cls.name,
        "head_norm_after": _norm_after(ctx, head),
    }


# `-math.log(max(module.<streams> - 1, 1))`: pre's bias starting at 1 / (streams - 1)
_MINUS_LOG = m.UnaryOperation(
    operator=m.Minus(),
    expression=m.Call(
        func=m.Attribute(attr=m.Name("log")) | m.Name("log"),
        args=[
            m.Arg(
                m.Call(
                    func=m.Name("max"),
                    args=[
                        m.Arg(m.BinaryOperation(operator=m.Subtract(), right=m.Integer("1"))),
                        m.Arg(m.Integer("1")),
                    ],
                )
            )
        ],
    ),
)


def _init(ctx: Ctx, cls: str, scale: str) -> tuple[float, str]:
    """How HF's `_init_weights` starts a module's scale and its pre weights' bias: the
    scale's number (`init.constant_(module.<scale>, 0.01)`; 1.0 for `ones_`) and "minus_log"
    (-log(max(streams - 1, 1))) or "zeros" for the bias, read from its
    `isinstance(module, <cls>)` branch; the house's ones and zeros where none is read."""
    out = [1.0, "zeros"]
    for source in ctx.model.modeling.classes.values():
        method = source.methods.get("_init_weights")
        if not isinstance(method, cst.FunctionDef):
            continue
        for branch in m.findall(method, m.If()):
            test = branch.test
            if not m.findall(test, m.Name(cls)):
                continue
            for call in m.findall(branch.body, m.Call(func=m.Attribute(attr=m.Name("constant_")))):
                target = call.args[0].value if call.args else None
                value = call.args[1].value if len(call.args) > 1 else None
                if m.matches(target, m.Attribute(attr=m.Name(scale))) and isinstance(
                    value, cst.Float | cst.Integer
                ):
                    out[0] = float(value.evaluated_value)
            if m.findall(branch.body, _MINUS_LOG):
                out[1] = "minus_log"
            return out[0], out[1]
    return out[0], out[1]
