"""Residual short convolutions: a causal depthwise convolution whose output is added back
to its input, applied to a tensor inside the layer (inkling's short convolutions).

Unlike LFM2's gated short convolution (`block.short_conv`), which replaces a layer's
attention, these sit on tensors the layer computes anyway: on the attention's key and value
projections (`attention.kv_convs`) and on the attention's and the feed-forward's outputs
before their residual adds (`block.output_convs`). This module reads, without running
anything, for a sub-module of the decoder layer or of its attention:

* that it holds one depthwise Conv1d padded by kernel - 1 (causal once cropped), and that
  its traced forward crops the convolution's output and adds the module's input to it;
* whether its forward computes in fp32 (`.float()` on the input);
* what the sum is divided by, as an expression over the kernel size (Inkling-2's
  `math.sqrt(kernel + 1)`: a `math.sqrt` of arithmetic over the attribute holding the
  kernel, checked against the traced value); a divisor of another form leaves the module
  unread;
* the config field its kernel size reads, at the call that builds the module in its
  owner's `__init__` (an `attribute_map` alias resolved to the stored field);
* what its input is, from the owner's traced forward: the output of the attention or of the
  FFN/MoE (`block.output_convs`), or of one of the attention's linears
  (`attention.kv_convs`: the projection's attribute).

A module of another shape (no residual, a bias on the filter, its input something else) is
left to `layer_extras`, which names it unsupported."""

from __future__ import annotations

import math

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term
from codegen.analyze.detect_attention import _token_attention
from codegen.analyze.evaluate import ConfigObj, ModuleRec
from codegen.analyze.roles import ATTENTION, LINEAR, MLP, MOE
from codegen.analyze.short_conv import _conv_shape

# where a layer-level convolution reads: the attention's output, the FFN's (or MoE's)
_SUBLAYER = {ATTENTION: "attention", MLP: "ffn", MOE: "ffn"}


def detect(ctx: Ctx) -> tuple[dict | None, dict | None]:
    """(`block.output_convs`, `attention.kv_convs`), each {"convs": ((module, input), ...),
    "conv", "kernel", "kernel_field", "fp32", "divisor"} or None."""
    layers = [rec for rec in ctx.model.layers or () if isinstance(rec, ModuleRec)]
    if not layers or layers[0].cls is None:
        return None, None
    layer = layers[0]
    output = _read(ctx, layer, lambda rec, _: _SUBLAYER.get(ctx.roles.role(rec)))
    attentions = [
        (n, c)
        for n, c in layer.children()
        if isinstance(c, ModuleRec) and _role(ctx, c) == ATTENTION
    ]
    attention = _token_attention(ctx, attentions)[1] if attentions else None
    kv = None
    if attention is not None:
        kv = _read(
            ctx, attention, lambda rec, names: names.get(id(rec)) if _linear(ctx, rec) else None
        )
    for key, found in (("block.output_convs", output), ("attention.kv_convs", kv)):
        if found is not None:
            ctx.cite(key, found.pop("site"))
    return output, kv


def _role(ctx: Ctx, rec: ModuleRec) -> str | None:
    return ctx.roles.role(rec)


def _linear(ctx: Ctx, rec: ModuleRec) -> bool:
    return ctx.roles.role(rec) == LINEAR or rec.kind == "Linear"


def _read(ctx: Ctx, owner: ModuleRec, source_of) -> dict | None:
    """The residual convolutions among `owner`'s children, with what each reads
    (`source_of(record, names)`); None when there are none or they differ in shape."""
    names = {id(c): n for n, c in owner.children()}
    terms = ctx.trace(owner, inline=False).terms
    convs, shapes, site = [], set(), None
    for name, child in owner.children():
        if not isinstance(child, ModuleRec) or child.cls is None:
            continue
        shape = _shape(ctx, child)
        if shape is None:
            continue
        calls = [t for t in terms if t.op == "call" and t.module is child]
        if len(calls) != 1:
            return None
        source = _source(calls[0])
        what = source_of(source, names) if source is not None else None
        field = _kernel_field(ctx, owner, child, shape[1], name)
        if what is None or field is None:
            return None
        convs.append((name, what))
        shapes.add((*shape, field))
        site = site or ctx.site(child)
    if not convs or len(shapes) != 1:
        return None
    conv, kernel, fp32, divisor, field = shapes.pop()
    return {
        "convs": tuple(convs),
        "conv": conv,
        "kernel": kernel,
        "kernel_field": field,
        "fp32": fp32,
        "divisor": divisor,
        "site": site,
    }


def _shape(ctx: Ctx, rec: ModuleRec) -> tuple[str, int, bool, str | None] | None:
    """(the Conv1d's attribute, kernel, fp32, divisor) of a residual causal depthwise
    convolution without a bias, else None; the divisor is the expression over `kernel` the
    sum is divided by (None: not divided)."""
    convs = [(n, c) for n, c in rec.children() if isinstance(c, ModuleRec) and c.kind == "Conv1d"]
    if len(convs) != 1 or len(rec.children()) != 1:
        return None
    name, conv = convs[0]
    shape = _conv_shape(conv)
    if shape is None or shape[1]:
        return None
    terms = ctx.trace(rec).terms
    primary = [t for t in terms if t.op == "input" and t.kwargs.get("primary")]
    applied = [
        t
        for t in terms
        if (t.op == "fn" and t.name.rsplit(".", 1)[-1] == "conv1d")
        or (t.op == "call" and t.module is conv)
    ]
    if len(primary) != 1 or len(applied) != 1:
        return None
    cropped = [
        t
        for t in terms
        if t.op == "index" and t.args and t.args[0] is applied[0] and ":" in (t.name or "")
    ]
    residual = [
        t
        for t in terms
        if t.op == "add"
        and any(a is primary[0] for a in t.args)
        and any(a is c for a in t.args for c in cropped)
    ]
    if len(cropped) != 1 or len(residual) != 1:
        return None
    divided = [t for t in terms if t.op == "div" and t.args and t.args[0] is residual[0]]
    divisor = _divisor(ctx, rec, shape[0], divided[0]) if divided else None
    if divided and divisor is None:
        return None  # the sum divided by something not read: left to layer_extras
    return name, shape[0], _computes_in_fp32(ctx, rec), divisor


def _divisor(ctx: Ctx, rec: ModuleRec, kernel: int, div: Term) -> str | None:
    """The expression over `kernel` the forward divides the residual sum by
    (`(x + conv(x)) / math.sqrt(self.conv_kernel_size + 1)` -> "math.sqrt(kernel + 1)"):
    a `math.sqrt` of whole-number arithmetic over one attribute holding the kernel size,
    checked against the traced value; else None."""
    value = div.args[1] if len(div.args) > 1 else None
    found = ctx.model.project.find_method(rec.cls, "forward")
    if not isinstance(value, int | float) or found is None:
        return None
    kernel_attrs = [n for n, v in rec.attrs.items() if v == kernel and not isinstance(v, bool)]
    operand = m.Name() | m.Integer() | m.Attribute(value=m.Name("self"), attr=m.Name())
    arithmetic = m.BinaryOperation(operator=m.Add() | m.Multiply(), left=operand, right=operand)
    radicand = m.BinaryOperation(operator=m.Add(), left=arithmetic | operand, right=operand)
    root = m.Call(
        func=m.Attribute(value=m.Name("math"), attr=m.Name("sqrt")), args=[m.Arg(value=radicand)]
    )
    for node in m.findall(found[1], m.BinaryOperation(operator=m.Divide(), right=root)):
        code = cst.Module([]).code_for_node(node.right)
        for attr in kernel_attrs:
            code = code.replace(f"self.{attr}", "kernel")
        if "self." in code:
            continue
        try:
            scope = {"__builtins__": {}, "math": math, "kernel": kernel}
            if abs(eval(code, scope) - value) < 1e-9:  # noqa: S307 (arithmetic, matched above)
                return code
        except NameError:
            continue
    return None


def _computes_in_fp32(ctx: Ctx, rec: ModuleRec) -> bool:
    found = ctx.model.project.find_method(rec.cls, "forward")
    if found is None:
        return False
    params = [p.name.value for p in found[1].params.params[1:2]]
    upcast = m.Call(
        func=m.Attribute(value=m.Name(params[0]) if params else m.DoNotCare(), attr=m.Name("float"))
    )
    return bool(params) and bool(m.findall(found[1], upcast))


def _source(call: Term):
    """The module whose output `call` reads as its first argument (through tuple indexing)."""
    arg = call.args[0] if call.args else None
    while isinstance(arg, Term) and arg.op == "index" and arg.args:
        arg = arg.args[0]
    if isinstance(arg, Term) and arg.op == "call" and isinstance(arg.module, ModuleRec):
        return arg.module
    return None


def _kernel_field(ctx: Ctx, owner: ModuleRec, rec: ModuleRec, kernel: int, name: str):
    """The config field (stored name) of the argument that gives the module its kernel size
    at the call building it in `owner.__init__`: the one `config.X` argument whose value is
    the kernel."""
    call = rec.site.node if rec.site is not None else None
    config = next(
        (a for a in owner.args if isinstance(a, ConfigObj)),
        next((a for a in owner.kwargs.values() if isinstance(a, ConfigObj)), None),
    )
    if not isinstance(call, cst.Call) or config is None:
        return None
    fields = []
    for arg in call.args:
        if m.matches(arg.value, m.Attribute(value=m.Name(), attr=m.Name())):
            field = config.key(arg.value.attr.value)
            if config.attrs.get(field) == kernel:
                fields.append(field)
    return fields[0] if len(set(fields)) == 1 else None
