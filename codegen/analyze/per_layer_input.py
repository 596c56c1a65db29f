"""Per-layer inputs: a second token table holding a slice for every layer, mixed with a
projection of the token embeddings and handed to each layer, which gates its own output with
it and adds the result (gemma4's per-layer embeddings).

Read from the data flow, not from names:

* in the layer's forward, an input besides the hidden states multiplies `act(gate(h))`
  (`*`, `torch.mul` or `torch.multiply`); the product goes through an up-projection and a
  norm and is added back (`into`):
  - "output": `h` is the stream after the FFN's residual add, and the sum is the layer's
    output (before any output scale) — gemma4;
  - "streams": the layer returns AltUp's corrected streams `s` (see altup.py), `h` is
    `s[active]` (times AltUp's output scale where the layer tests a config field first:
    `correct_scale` names it) and the sum is `s[1:] + ...`, written into `s` — gemma3n;
  the activation must be the FFN's own (the package reuses it);
* in the backbone, layer `i` receives slice `i` (axis 2) of
  `(norm(projection(embeddings) * c) + table(ids)) * k`, where `embeddings` are the scaled
  token embeddings the first layer receives (or the first of the streams stacked for it),
  the projection and the norm modules of the backbone, `table` an embedding
  `n_layers * width` wide (its rows from a config field of their own; sliced to its
  `n_layers` slices or not), `c = hidden_size ** -0.5` (a number: "rsqrt_dim", or a scalar
  buffer rounded to the embeddings' dtype: "rsqrt_dim_dtype") and `k` a constant of the
  source (no config field; `mix_scale_dtype` where it is a scalar buffer, rounded alike);
* the table scales its rows by sqrt(width), rounded to the weights' dtype (a buffer) or not.

Anything else leaves the value None, and `layer_extras` names the parts as unsupported.
"""

from __future__ import annotations

import math

import libcst as cst
import libcst.matchers as m

from codegen.analyze.config import attr
from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, first_output, primary_input
from codegen.analyze.evaluate import ActRec, ModuleRec, ParamRec
from codegen.analyze.roles import EMBEDDING, MLP, MOE, NORM


def detect(ctx: Ctx) -> dict | None:
    """The per-layer input's parts (see features.Block.per_layer_input), or None."""
    model = ctx.model
    layers = [rec for rec in model.layers or () if isinstance(rec, ModuleRec)]
    owner = model.stack_owner
    if not layers or layers[0].cls is None or owner is None or owner.cls is None:
        return None
    layer = layers[0]
    inner = _layer_side(ctx, layer)
    if inner is None:
        return None
    outer = _backbone_side(ctx, owner, layers, inner["input"])
    if outer is None:
        return None
    found = {**outer, **inner}
    # built like the FFN's norm (class and arguments) and without biases, as a package
    # builds them
    ffn_norm = found.pop("ffn_norm")
    norms = found.pop("norms") + found.pop("outer_norms")
    linears = found.pop("linears") + found.pop("outer_linears")
    if not all(_same_norm(n, ffn_norm) for n in norms) or not all(map(_no_bias, linears)):
        return None
    ctx.cite(
        "block.per_layer_input",
        f"{found.pop('site')} (layer i reads slice i; its product at {found.pop('layer_site')})",
    )
    return found


def _same_norm(rec: ModuleRec, like: ModuleRec) -> bool:
    return rec.cls is like.cls and rec.kind == like.kind and rec.kwargs == like.kwargs


def _no_bias(rec: ModuleRec) -> bool:
    """A Linear built with `bias=False`."""
    bias = rec.kwargs.get("bias", rec.args[2] if len(rec.args) > 2 else True)
    return bias is False


# -- the layer ---------------------------------------------------------------------------------


def _layer_side(ctx: Ctx, layer: ModuleRec) -> dict | None:
    trace = ctx.trace(layer)
    names = {id(rec): name for name, rec in layer.attrs.items()}
    out = first_output(trace.result)
    if isinstance(out, Term) and out.op == "mul" and any(_is_param(a) for a in out.args):
        out = next(a for a in out.args if isinstance(a, Term) and not _is_param(a))
    for t in trace.terms:
        if not _is_product(t):
            continue
        extra = [a for a in t.args if _is_input(a)]
        gated = [a for a in t.args if isinstance(a, Term) and a.op == "act"]
        if len(extra) != 1 or len(gated) != 1:
            continue
        act = gated[0]
        gate = act.args[0] if act.args else None
        if not _is_linear_call(gate):
            return None
        stream = gate.args[0] if gate.args else None
        ups = _users(trace.terms, t)
        up = ups[0] if len(ups) == 1 and _is_linear_call(ups[0]) else None
        norms = _users(trace.terms, up) if up is not None else []
        norm = norms[0] if len(norms) == 1 and _is_call(norms[0], ctx, NORM) else None
        adds = _users(trace.terms, norm) if norm is not None else []
        if len(adds) != 1 or adds[0].op != "add":
            return None
        if adds[0] is out:  # added to the layer's output
            into, correct_scale = "output", None
            ffn_norm = _ffn_norm(ctx, stream)
            if not any(a is stream for a in adds[0].args) or ffn_norm is None:
                return None
        else:  # added to AltUp's corrected streams after the first
            found = _into_streams(ctx, layer, trace, out, stream, adds[0])
            if found is None:
                return None
            into, correct_scale, ffn_norm = "streams", *found
        if not isinstance(act.module, ActRec) or act.module.name != _ffn_act(ctx, layer):
            return None
        parts = {
            key: _attr_called(term) or names.get(id(term.module))
            for key, term in (("gate", gate), ("up", up), ("norm", norm))
        }
        if None in parts.values():
            return None
        return {
            "layer_site": t.site.cite() if t.site else ctx.class_site(layer),
            "input": extra[0].name,
            "into": into,
            "correct_scale": correct_scale,
            **parts,
            "ffn_norm": ffn_norm,
            "linears": [gate.module, up.module],
            "norms": [norm.module],
        }
    return None


def _is_product(t: Term) -> bool:
    """`a * b`, `torch.mul(a, b)` or `torch.multiply(a, b)`."""
    if len(t.args) != 2:
        return False
    return t.op == "mul" or (t.op == "fn" and t.name.rsplit(".", 1)[-1] in ("mul", "multiply"))


def _into_streams(ctx: Ctx, layer: ModuleRec, trace, out, stream, add: Term):
    """(the config field the layer tests before scaling the gate's input by AltUp's output
    scale, or None; the FFN's norm) where the layer returns AltUp's correction `out`, the gate
    reads `out[active]` (scaled or not) and `add` is `out[1:] + ...`; else None."""
    from codegen.analyze import altup

    fact = altup.detect(ctx)
    if fact is None or not isinstance(out, Term):
        return None
    module = layer.attrs.get(fact["module"])
    scale = module.attrs.get(fact["params"]["output_scale"]) if module is not None else None
    field = _scale_switch(ctx, layer, fact["module"])
    read = stream
    if isinstance(read, Term) and read.op == "mul" and any(_is_param(a) for a in read.args):
        if field is None or not any(_is_param(a) and a.module is scale for a in read.args):
            return None
        read = next(a for a in read.args if not _is_param(a))
    if not (isinstance(read, Term) and read.op == "index" and read.args[0] is out):
        return None
    if not read.name.isdigit():
        return None
    rest = [a for a in add.args if isinstance(a, Term) and a.op == "index" and a.args[0] is out]
    if len(rest) != 1 or rest[0].name != "1::":
        return None
    # the FFN's residual sum the correction reads
    sums = [t for t in trace.terms if t.op == "add" and _ffn_norm(ctx, t) is not None]
    return (field, _ffn_norm(ctx, sums[-1])) if sums else None


def _scale_switch(ctx: Ctx, layer: ModuleRec, module: str) -> str | None:
    """`x` of `if self.config.x: h = self.<module>.<method>(h)` in the layer's forward."""
    found = ctx.model.project.find_method(layer.cls, "forward")
    if found is None:
        return None
    call = m.Call(func=m.Attribute(value=m.Attribute(value=m.Name("self"), attr=m.Name(module))))
    for node in m.findall(found[1], m.If()):
        body = node.body.body
        if len(body) != 1 or node.orelse is not None:
            continue
        if not m.matches(body[0], m.SimpleStatementLine(body=[m.Assign(value=call)])):
            continue
        field = _config_field(node.test)
        if field is not None:
            return field
    return None


def _attr_called(term: Term) -> str | None:
    """`x` of the `self.x(...)` call a term was made at: alike modules (norms built with the
    same arguments) may share one static record, so the record alone does not name it."""
    node = term.site.node if term.site is not None else None
    if isinstance(node, cst.Call) and m.matches(
        node.func, m.Attribute(value=m.Name("self"), attr=m.Name())
    ):
        return node.func.attr.value
    return None


def _ffn_act(ctx: Ctx, layer: ModuleRec):
    """The activation the layer's FFN applies (an ActRec's name), else None."""
    for _, child in layer.children():
        if isinstance(child, ModuleRec) and ctx.roles.role(child) == MLP:
            for value in child.attrs.values():
                if isinstance(value, ActRec):
                    return value.name
    return None


def _ffn_norm(ctx: Ctx, stream: Term) -> ModuleRec | None:
    """The norm the FFN's input passes, when `stream` is a residual sum whose other operand
    comes out of that FFN (normed or not); else None."""
    if stream.op != "add":
        return None
    for a in stream.args:
        term = a
        while _is_call(term, ctx, NORM):
            term = term.args[0] if term.args else None
        # the MLP's normed output summed with a branch beside it (gemma4's MoE) first
        branches = term.args if isinstance(term, Term) and term.op == "add" else (term,)
        for branch in branches:
            while _is_call(branch, ctx, NORM):
                branch = branch.args[0] if branch.args else None
            if _is_call(branch, ctx, MLP, MOE):
                normed = branch.args[0] if branch.args else None
                return normed.module if _is_call(normed, ctx, NORM) else None
    return None


# -- the backbone ------------------------------------------------------------------------------


def _backbone_side(ctx: Ctx, owner: ModuleRec, layers: list, name: str) -> dict | None:
    trace = ctx.trace(owner)
    calls = [t for t in trace.terms if t.op == "call" and t.module in layers]
    if len(calls) != len(layers):
        return None
    position = _param_position(ctx, layers[0], name)
    slices = [_arg(call, position, name) for call in calls]
    if not all(isinstance(s, Term) and s.op == "index" for s in slices):
        return None
    mixed = slices[0].args[0]
    for i, s in enumerate(slices):
        if s.args[0] is not mixed or s.name != f"::,::,{i},::":
            return None
    embeddings = _first_stream(primary_input(calls[0]))
    parts = _mixed(ctx, owner, mixed, embeddings)
    if parts is None:
        return None
    parts["site"] = mixed.site.cite() if mixed.site else ctx.class_site(owner)
    return parts


def _first_stream(value):
    """The first of the streams `torch.stack([h, ...])` stacks for the layers (AltUp), else
    `value` itself."""
    if isinstance(value, Term) and value.op == "fn" and value.name.endswith("stack"):
        items = value.args[0] if value.args and isinstance(value.args[0], list | tuple) else ()
        if items and isinstance(items[0], Term):
            return items[0]
    return value


def _mixed(ctx: Ctx, owner: ModuleRec, mixed: Term, embeddings) -> dict | None:
    """`(norm(projection(embeddings) * c) + table(ids)) * k` -> the parts, else None."""
    if mixed.op != "mul":
        return None
    total = next((a for a in mixed.args if isinstance(a, Term)), None)
    constant = _constant_of(ctx, owner, mixed)
    if total is None or total.op != "add" or constant is None:
        return None
    constant, mix_dtype = constant
    n_layers = attr(ctx.model.config, "num_hidden_layers")
    table_call = next(
        (
            a
            for a in map(lambda a: _whole_slices(a, n_layers), total.args)
            if _is_call(a, ctx, EMBEDDING)
        ),
        None,
    )
    normed = next((a for a in total.args if _is_call(a, ctx, NORM)), None)
    if table_call is None or normed is None:
        return None
    scaled = normed.args[0] if normed.args else None
    if not isinstance(scaled, Term) or scaled.op != "mul":
        return None
    projected = next((a for a in scaled.args if _is_linear_call(a)), None)
    factor = next((a for a in scaled.args if _number(a)), None)
    rounded = factor is None
    if rounded:  # a scalar buffer, rounded to the embeddings' dtype
        factor = next((_scalar(a) for a in scaled.args if _scalar(a) is not None), None)
    if projected is None or factor is None or projected.args[0] is not embeddings:
        return None
    dim = attr(ctx.model.config, "hidden_size")
    if not isinstance(dim, int) or not math.isclose(factor, dim**-0.5, rel_tol=1e-9):
        return None
    names = {id(rec): n for n, rec in owner.attrs.items()}
    table = table_call.module
    fields = _table_fields(ctx, table)
    if fields is None:
        return None
    width, rows = fields
    table_scale = _table_scale(ctx, table, attr(ctx.model.config, width))
    if table_scale is None:
        return None
    prefix = ctx.model.stack_owner_path + "." if ctx.model.stack_owner_path else ""
    paths = {
        key: names.get(id(term.module))
        for key, term in (("table", table_call), ("projection", projected), ("mix_norm", normed))
    }
    if None in paths.values():
        return None
    return {
        "width": width,
        "vocab": rows,
        **{key: prefix + path for key, path in paths.items()},
        "table_scale": table_scale,
        "projection_scale": "rsqrt_dim_dtype" if rounded else "rsqrt_dim",
        "mix_scale": constant,
        "mix_scale_dtype": mix_dtype,
        "outside_rows_read_zero": _outside_rows_read_zero(table_call),
        "outer_norms": [normed.module],
        "outer_linears": [projected.module],
    }


def _outside_rows_read_zero(table_call: Term) -> bool:
    """The table reads `torch.where(in_table, ids, 0)`: ids outside its rows (gemma3n's main
    vocabulary is longer than its per-layer table) read row 0 instead of failing."""
    ids = table_call.args[0] if table_call.args else None
    return (
        isinstance(ids, Term)
        and ids.op == "fn"
        and ids.name.rsplit(".", 1)[-1] == "where"
        and len(ids.args) == 3
        and isinstance(ids.args[1], Term)
        and ids.args[1].op == "input"
        and ids.args[2] == 0
    )


def _whole_slices(term, n_layers):
    """The table's lookup behind `x[..., :n_layers, :]` (all its slices), else `term`."""
    if isinstance(term, Term) and term.op == "index" and term.name == f"...,:{n_layers}:,::":
        return term.args[0]
    return term


def _scalar(term) -> float | None:
    """The value of a scalar buffer term (`torch.tensor(x)`), else None."""
    if _is_param(term) and term.module.kind == "buffer" and _number(term.module.value):
        return float(term.module.value)
    return None


def _table_fields(ctx: Ctx, table: ModuleRec) -> tuple[str, str] | None:
    """(width field, rows field) of `Embedding(config.<rows>, config.num_hidden_layers *
    config.<width>, ...)`: one slice of `width` per layer."""
    call = table.site.node if table.site is not None else None
    if not isinstance(call, cst.Call) or len(call.args) < 2:
        return None
    rows = _config_field(call.args[0].value)
    wide = call.args[1].value
    if rows is None or not m.matches(wide, m.BinaryOperation(operator=m.Multiply())):
        return None
    fields = [_config_field(wide.left), _config_field(wide.right)]
    if "num_hidden_layers" not in fields or None in fields:
        return None
    width = next(f for f in fields if f != "num_hidden_layers")
    return width, rows


def _config_field(node) -> str | None:
    """`config.<field>` (or `self.config.<field>`) -> field."""
    if m.matches(node, m.Attribute(value=m.Name("config") | m.Attribute(attr=m.Name("config")))):
        return node.attr.value
    return None


def _table_scale(ctx: Ctx, table: ModuleRec, width) -> str | None:
    """How the table scales its rows: "sqrt_width_dtype" (a tensor in the weights' dtype),
    "sqrt_width" (a Python float), "none"; None for another factor."""
    if table.cls is None:  # torch's own nn.Embedding
        return "none"
    trace = ctx.trace(table)
    out = first_output(trace.result)
    if not isinstance(out, Term) or out.op != "mul":
        return "none" if isinstance(out, Term) else None
    for a in out.args:
        value = a.module.value if _is_param(a) else a if _number(a) else None
        if value is None:
            continue
        if not isinstance(width, int) or not math.isclose(float(value), width**0.5):
            return None
        return "sqrt_width_dtype" if _is_param(a) else "sqrt_width"
    return None


def _constant_of(ctx: Ctx, owner: ModuleRec, term: Term) -> tuple[str, bool] | None:
    """(the source of the constant factor of `term`, whether it is a scalar buffer rounded to
    the tensors' dtype): `self.x` assigned `2.0**-0.5` in `__init__` or a literal in place
    (False), or `self.x` a buffer `torch.tensor(2.0**-0.5)` / `torch.rsqrt(torch.tensor(2.0))`
    read through `.to(...)` (True), when it reads no config field; else None."""
    node = term.site.node if term.site is not None else None
    if not isinstance(node, cst.BinaryOperation):
        return None
    for operand in (node.right, node.left):
        value, rounded = operand, False
        if m.matches(operand, m.Call(func=m.Attribute(attr=m.Name("to")))):
            operand = operand.func.value  # self.x.to(dtype=..., device=...)
        if m.matches(operand, m.Attribute(value=m.Name("self"))):
            site = owner.assign_sites.get(operand.attr.value)
            assign = site.node if site is not None else None
            value = assign.value if isinstance(assign, cst.Assign) else None
            value, rounded = _buffer_scalar(value) or (value, False)
        if value is not None and _literal_number(value):
            return cst.Module([]).code_for_node(value), rounded
    return None


def _buffer_scalar(node) -> tuple[cst.BaseExpression, bool] | None:
    """`nn.Buffer(torch.tensor(e), ...)` -> (e, True); `nn.Buffer(torch.rsqrt(torch.tensor(e)),
    ...)` -> (`e**-0.5`, True); else None."""
    if not m.matches(node, m.Call(func=m.Attribute(attr=m.Name("Buffer")) | m.Name("Buffer"))):
        return None
    inner = node.args[0].value if node.args else None
    tensor = m.Call(func=m.Attribute(value=m.Name("torch"), attr=m.Name("tensor")), args=[m.Arg()])
    if m.matches(inner, tensor):
        return inner.args[0].value, True
    rsqrt = m.Call(
        func=m.Attribute(value=m.Name("torch"), attr=m.Name("rsqrt")), args=[m.Arg(tensor)]
    )
    if m.matches(inner, rsqrt):
        base = inner.args[0].value.args[0].value
        return cst.BinaryOperation(
            base, cst.Power(), cst.UnaryOperation(cst.Minus(), cst.Float("0.5"))
        ), True
    return None


def _literal_number(node) -> bool:
    if isinstance(node, cst.Integer | cst.Float):
        return True
    if isinstance(node, cst.UnaryOperation):
        return _literal_number(node.expression)
    if isinstance(node, cst.BinaryOperation):
        return _literal_number(node.left) and _literal_number(node.right)
    return False


# -- helpers -----------------------------------------------------------------------------------


def _param_position(ctx: Ctx, layer: ModuleRec, name: str) -> int | None:
    found = ctx.model.project.find_method(layer.cls, "forward")
    if found is None:
        return None
    params = [p.name.value for p in found[1].params.params[1:]]
    return params.index(name) if name in params else None


def _arg(call: Term, position: int | None, name: str):
    if name in call.kwargs:
        return call.kwargs[name]
    if position is not None and position < len(call.args):
        return call.args[position]
    return None


def _users(terms: list[Term], term: Term) -> list[Term]:
    return [t for t in terms if any(a is term for a in t.args)]


def _is_input(value) -> bool:
    return isinstance(value, Term) and value.op == "input" and not value.kwargs.get("primary")


def _is_param(value) -> bool:
    return isinstance(value, Term) and value.op == "param" and isinstance(value.module, ParamRec)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_linear_call(term) -> bool:
    return (
        isinstance(term, Term)
        and term.op == "call"
        and isinstance(term.module, ModuleRec)
        and term.module.kind == "Linear"
    )


def _is_call(term, ctx: Ctx, *roles: str) -> bool:
    return (
        isinstance(term, Term)
        and term.op == "call"
        and isinstance(term.module, ModuleRec)
        and ctx.roles.role(term.module) in roles
    )
