"""Head vectors clipped to a maximum L2 norm (`attention.l2_clips`).

Inkling-2's attention scales each query head vector, key head vector and relative-state head
vector down to a threshold where its L2 norm is larger (shorter vectors pass unchanged), the
queries and the relative states after a learned scale per head and channel. Found by
structure in the attention's trace, where the clip modules' forwards are inlined: a product
`x * (threshold / (vector_norm(x, dim=-1, keepdim=True) + eps)).clamp(max=1.0)`, `x` the
tensor itself or the tensor times a parameter (the learned scale). Which tensor it clips is
read from where the product goes: the kernel's queries, its keys, or the states that mix the
relative-bias table (`attention.rel_bias`).

Each clip is `{"module": the attention's attribute, "scale": the parameter's name or None,
"threshold": the constructor's argument restated over `hf_config` (or the number), "value":
its value in the analysed config, "eps":
the number added to the norm, "fp32": the module's forward upcasts (`.float()`)}`, keyed
"q", "k" or "rel". A clip of another shape (a scale not one per head and channel, a clip of
the values, a threshold not restated) gives "other", which no rule realises.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.attention_shapes import _init_assignments
from codegen.analyze.dataflow import Term, walk
from codegen.analyze.evaluate import ModuleRec, ParamRec
from codegen.analyze.layer_rule import restate_init

FEATURE = "attention.l2_clips"
OTHER = "other"


def detect(ctx, shared: dict) -> dict | str | None:
    """{"q" | "k" | "rel": clip} (see the module docstring), "other", or None."""
    rep = shared.get("rep")
    kernel = getattr(rep, "kernel", None)
    if rep is None or kernel is None or rep.trace is None:
        return None
    clips = [(term, found) for term in rep.trace.terms if (found := _clip(term)) is not None]
    if not clips:
        return None
    tensors = [a for a in kernel.args if isinstance(a, Term)]
    bias = kernel.kwargs.get("position_bias")
    states = _bias_states(bias) if isinstance(bias, Term) else None
    targets = {"q": tensors[0], "k": tensors[1], "v": tensors[2]} if len(tensors) >= 3 else {}
    if states is not None:
        targets["rel"] = states
    out: dict = {}
    site = None
    for term, (scaled, threshold, eps) in clips:
        reached = [name for name, t in targets.items() if any(x is term for x in walk(t))]
        if len(reached) != 1 or reached[0] == "v" or reached[0] in out:
            return _other(ctx, term)
        tensor = reached[0]
        module = _owner(rep.rec, term, scaled)
        if module is None:
            return _other(ctx, term)
        name, rec, param = module
        if param is not None and not _per_head(rep.rec, param, tensor, shared):
            return _other(ctx, term)
        restated = _threshold(ctx, rep, name, threshold)
        if restated is None:
            return _other(ctx, term)
        forward = ctx.model.project.find_method(rec.cls, "forward") if rec.cls else None
        upcast = m.Call(func=m.Attribute(attr=m.Name("float")))
        out[tensor] = {
            "module": name,
            "scale": param,
            "threshold": restated,
            "value": threshold,
            "eps": eps,
            "fp32": bool(forward and m.findall(forward[1], upcast)),
        }
        site = site or (term.site.cite() if term.site else ctx.attr_site(rep.rec, name))
    ctx.cite(FEATURE, f"{site} ({_describe(out)})")
    return out


def _describe(out: dict) -> str:
    return "; ".join(
        f"{tensor} by {c['module']}"
        + (f" after a learned scale ({c['scale']})" if c["scale"] else "")
        + f" to {c['threshold']}"
        for tensor, c in out.items()
    )


def _other(ctx, term) -> str:
    ctx.cite(FEATURE, term.site.cite() if term.site else "")
    return OTHER


def _clip(term: Term):
    """(the scale's `param` term or None, the threshold, eps) where `term` is
    `x * (threshold / (vector_norm(x) + eps)).clamp(max=1.0)`; None otherwise."""
    if term.op != "mul" or len(term.args) != 2:
        return None
    x, clamp = term.args
    if not (isinstance(clamp, Term) and clamp.op == "fn" and clamp.name.endswith("clamp")):
        return None
    if clamp.kwargs.get("max") != 1.0 or len(clamp.args) != 1:
        return None
    ratio = clamp.args[0]
    if not (isinstance(ratio, Term) and ratio.op == "div" and len(ratio.args) == 2):
        return None
    threshold, floored = ratio.args
    if not isinstance(threshold, int | float) or isinstance(threshold, bool):
        return None
    if not (isinstance(floored, Term) and floored.op == "add" and len(floored.args) == 2):
        return None
    norm, eps = floored.args
    if not isinstance(eps, float) or not _l2_norm_of(norm, x):
        return None
    scaled = None
    if isinstance(x, Term) and x.op == "mul" and len(x.args) == 2:
        params = [a for a in x.args if isinstance(a, Term) and a.op == "param"]
        if len(params) == 1:
            scaled = params[0]
    return scaled, threshold, eps


def _l2_norm_of(norm, x) -> bool:
    """`norm` is the L2 norm of `x` over its last dim (`torch.linalg.vector_norm(x, dim=-1,
    keepdim=True)`, or `x.norm(p=2, dim=-1, keepdim=True)`)."""
    if not (isinstance(norm, Term) and norm.op == "fn" and norm.args and norm.args[0] is x):
        return False
    last = norm.name.rsplit(".", 1)[-1]
    if last not in ("vector_norm", "norm") or norm.kwargs.get("dim") != -1:
        return False
    return norm.kwargs.get("ord", norm.kwargs.get("p", 2)) == 2 and bool(norm.kwargs.get("keepdim"))


def _bias_states(bias: Term):
    """The states that mix the relative-bias table (the left side of its `@`)."""
    mixed = next((t for t in walk(bias) if t.op == "matmul" and len(t.args) == 2), None)
    if mixed is None or not isinstance(mixed.args[0], Term):
        return None
    return mixed.args[0]


def _owner(attention: ModuleRec, term: Term, scaled):
    """(attribute, module, scale parameter name or None) of the clip module `term` comes from:
    the owner of the scale parameter, or the child whose class's forward the term is in."""
    for name, child in attention.children():
        if not isinstance(child, ModuleRec) or child.cls is None:
            continue
        if scaled is not None:
            found = [
                p for p, v in child.attrs.items() if isinstance(v, ParamRec) and v is scaled.module
            ]
            if found:
                return name, child, found[0]
        elif term.site is not None and term.site.scope is child.cls.node:
            params = [v for v in child.attrs.values() if isinstance(v, ParamRec)]
            return None if params else (name, child, None)
    return None


def _per_head(attention: ModuleRec, param: str, tensor: str, shared: dict) -> bool:
    """The learned scale holds one entry per head and channel of the clipped tensor."""
    for _, child in attention.children():
        value = child.attrs.get(param) if isinstance(child, ModuleRec) else None
        if isinstance(value, ParamRec):
            shape = tuple(value.shape or ())
            heads = attention.attrs.get("num_heads")
            if tensor == "k":
                heads = attention.attrs.get("num_key_value_heads")
            width = attention.attrs.get("head_dim")
            if tensor == "rel":
                return len(shape) == 2 and shape[0] == heads
            return shape == (heads, width)
    return False


def _threshold(ctx, rep, name: str, value) -> str | None:
    """The threshold restated over `hf_config`: the argument of the module's construction
    bound to the `__init__` parameter its forward divides by (`self.threshold`, assigned
    from a parameter), or the number where the construction passes one."""
    built = _init_assignments(ctx, rep.rec).get(name)
    module = rep.rec.attrs.get(name)
    if not isinstance(built, cst.Call) or not isinstance(module, ModuleRec) or module.cls is None:
        return None
    project = ctx.model.project
    init = project.find_method(module.cls, "__init__")
    forward = project.find_method(module.cls, "forward")
    if init is None or forward is None:
        return None
    divided = m.BinaryOperation(
        left=m.Attribute(value=m.Name("self"), attr=m.Name()), operator=m.Divide()
    )
    attrs = {d.left.attr.value for d in m.findall(forward[1], divided)}
    params = [p.name.value for p in init[1].params.params][1:]
    given = {
        assign.value.value
        for assign in m.findall(
            init[1],
            m.Assign(
                targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name()))],
                value=m.Name(),
            ),
        )
        if assign.targets[0].target.attr.value in attrs and assign.value.value in params
    }
    if len(given) != 1:
        return None
    (param,) = given
    positional = [a for a in built.args if a.keyword is None and not a.star]
    passed = {p: a.value for p, a in zip(params, positional, strict=False)}
    passed |= {a.keyword.value: a.value for a in built.args if a.keyword is not None}
    arg = passed.get(param)
    if arg is None:
        return None
    if isinstance(arg, cst.Float | cst.Integer):
        return repr(float(arg.evaluated_value))
    restated = restate_init(ctx, rep.rec, arg, [(0, rep.rec)])
    if restated is None:
        return None
    text, values = restated
    if not values or not isinstance(values[0], int | float) or float(values[0]) != float(value):
        return None
    return text
