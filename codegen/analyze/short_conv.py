"""Short-convolution layers: a token mixer that is a gated causal depthwise convolution.

Some decoders (LFM2) replace the attention of selected layers by a short convolution: an
input projection to three parts, two of them multiplied, a depthwise Conv1d over the
sequence (one filter per channel, padded by kernel - 1 and cropped to the sequence: causal),
the third part gating its output, an output projection. A per-layer config list selects the
layers (`layer_types` entry equal to some string). This module reads, without running
anything:

* which layer-type value selects the convolution: each per-layer switch value the source
  compares a config list with is tried by instantiating a decoder layer statically under a
  config whose list holds that value everywhere;
* the mixer's shape from its records and its traced forward: the attribute names of the
  input projection, the convolution and the output projection, the number of parts and
  which part gates after the convolution;
* the config fields of the kernel size and of the bias switch, by following the arguments
  of the Conv1d call through the mixer's `__init__` assignments to `<config>.<field>`.

Anything else gives None: such a mixer stays a hybrid's.
"""

from __future__ import annotations

import copy

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import walk
from codegen.analyze.evaluate import ConfigObj, ModuleRec, Unknown
from codegen.analyze.model import layer_slots, linear_bias
from codegen.analyze.roles import LINEAR, MIXER
from codegen.analyze.walk import findall

# nn.Conv1d's parameters in positional order
_CONV_ARGS = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "bias",
)


def detect(ctx: Ctx, switches) -> dict | None:
    """The short-conv layer kind of the model, or None (see the module docstring)."""
    model = ctx.model
    if not model.layers or model.layers[0].cls is None:
        return None
    for switch in switches:
        if switch.kind != "per_layer" or switch.container:
            continue
        for value in switch.values:
            if value.test != "layers" or not isinstance(value.operand, str):
                continue
            layer = _layer_with(ctx, switch.field, value.operand)
            if layer is None:
                continue
            for path, rec in layer_slots(model, layer).get(MIXER, []):
                found = read(ctx, rec)
                if found is not None:
                    where = ", ".join(value.evidence[:1])
                    ctx.cite("block.short_conv", f"{found.pop('site')}; {where}".strip("; "))
                    return {
                        "field": switch.field,
                        "layer_type": value.operand,
                        "module": path,
                        **found,
                    }
    return None


def _layer_with(ctx: Ctx, field: str, value: str) -> ModuleRec | None:
    """Decoder layer 0 instantiated under a copy of its config whose `field` is `value`
    for every layer."""
    model = ctx.model
    layer = model.layers[0]
    config = next((a for a in layer.args if isinstance(a, ConfigObj)), None)
    if config is None or config.key(field) not in config.attrs:
        return None
    clone = copy.copy(config)
    clone.attrs = dict(config.attrs)
    clone.attrs[config.key(field)] = [value] * len(model.layers)
    clone.read_log = None
    args = [clone if a is config else a for a in layer.args]
    try:
        return model.interp.instantiate(layer.cls, args, dict(layer.kwargs), layer.site)
    except Unknown:
        return None


def read(ctx: Ctx, rec: ModuleRec) -> dict | None:
    """{"in_proj", "conv", "out_proj", "parts", "post_gate", "kernel", "kernel_field",
    "bias", "bias_field", "site"} of a gated causal depthwise-conv mixer, or None."""
    convs = [(n, c) for n, c in rec.children() if isinstance(c, ModuleRec) and c.kind == "Conv1d"]
    if len(convs) != 1 or rec.cls is None:
        return None
    conv_name, conv = convs[0]
    shape = _conv_shape(conv)
    if shape is None:
        return None
    kernel, conv_bias = shape
    flow = _flow(ctx, rec, conv)
    if flow is None:
        return None
    in_proj, out_proj, parts, post_gate = flow
    # the package switches the three biases together: the projections must carry the filter's
    if any(linear_bias(rec.attrs[name]) is not conv_bias for name in (in_proj, out_proj)):
        return None
    fields = _config_fields(ctx, rec, conv)
    if fields is None:
        return None
    return {
        "in_proj": in_proj,
        "conv": conv_name,
        "out_proj": out_proj,
        "parts": parts,
        "post_gate": post_gate,
        "kernel": kernel,
        "kernel_field": fields.get("kernel_size"),
        "bias": conv_bias,
        "bias_field": fields.get("bias"),
        "site": conv.site.cite() if conv.site is not None else ctx.class_site(rec),
    }


def _conv_arg(conv: ModuleRec, name: str, default=None):
    if name in conv.kwargs:
        return conv.kwargs[name]
    if name in _CONV_ARGS and _CONV_ARGS.index(name) < len(conv.args):
        return conv.args[_CONV_ARGS.index(name)]
    return default


def _conv_shape(conv: ModuleRec) -> tuple[int, bool] | None:
    """(kernel, bias) of a depthwise Conv1d padded for causality, else None."""
    channels = _conv_arg(conv, "in_channels")
    kernel = _conv_arg(conv, "kernel_size")
    groups = _conv_arg(conv, "groups", 1)
    padding = _conv_arg(conv, "padding", 0)
    bias = _conv_arg(conv, "bias", True)
    if not all(isinstance(v, int) for v in (channels, kernel, groups, padding)):
        return None
    if channels != _conv_arg(conv, "out_channels") or groups != channels or groups == 1:
        return None
    if padding != kernel - 1 or not isinstance(bias, bool):
        return None
    return kernel, bias


def _flow(ctx: Ctx, rec: ModuleRec, conv: ModuleRec) -> tuple[str, str, int, int] | None:
    """(input projection, output projection, parts, gating part after the conv) from the
    traced forward: Linear -> split in parts -> a * b -> conv -> c * conv -> Linear."""
    trace = ctx.trace(rec)
    names = {id(c): n for n, c in rec.children()}
    convs = [t for t in trace.terms if _is_conv(t, conv)]
    if len(convs) != 1:
        return None
    applied = convs[0]
    before = [a for a in applied.args[:1] if getattr(a, "op", None) == "mul"]
    if not before:
        return None
    splits = [t for t in walk(before[0]) if t.op == "split"]
    if len(splits) != 1:
        return None
    split = splits[0]
    source = split.args[0] if split.args else None
    if not _is_linear_call(ctx, source) or id(source.module) not in names:
        return None
    parts = split.args[1] if len(split.args) > 1 and isinstance(split.args[1], int) else None
    pre = {_part(a, split) for a in before[0].args}
    if parts is None or None in pre or len(pre) != 2:
        return None
    for term in trace.terms:
        if term.op != "mul" or not any(a is applied or _crop_of(a, applied) for a in term.args):
            continue
        gates = [_part(a, split) for a in term.args if getattr(a, "op", None) == "index"]
        gates = [g for g in gates if g is not None and g not in pre]
        if len(gates) != 1:
            continue
        outs = [
            t
            for t in trace.terms
            if _is_linear_call(ctx, t) and any(a is term for a in t.args) and id(t.module) in names
        ]
        if len(outs) == 1:
            return names[id(source.module)], names[id(outs[0].module)], parts, gates[0]
    return None


def _is_conv(term, conv: ModuleRec) -> bool:
    if term.op == "call" and term.module is conv:
        return True
    return term.op == "fn" and term.name.rsplit(".", 1)[-1] == "conv1d"


def _is_linear_call(ctx: Ctx, term) -> bool:
    return (
        getattr(term, "op", None) == "call"
        and isinstance(term.module, ModuleRec)
        and ctx.roles.role(term.module) == LINEAR
    )


def _crop_of(term, applied) -> bool:
    return getattr(term, "op", None) == "index" and bool(term.args) and term.args[0] is applied


def _part(term, split) -> int | None:
    """Which part of `split` the index term `term` takes."""
    if getattr(term, "op", None) != "index" or not term.args or term.args[0] is not split:
        return None
    try:
        return int(term.name)
    except ValueError:
        return None


def _config_fields(ctx: Ctx, rec: ModuleRec, conv: ModuleRec) -> dict[str, str] | None:
    """Conv1d argument (kernel_size, bias) -> the config field it reads (`kernel_size=self.k`
    with `self.k = config.conv_L_cache` in the same `__init__`); an argument written as a
    literal (or left to its default) reads none. None when one is neither (a package could
    only hard-code the analysed config's value), or when a projection's bias reads another
    field than the filter's (the package switches the three together)."""
    found = ctx.model.project.find_method(rec.cls, "__init__")
    if found is None:
        return None
    _, init = found
    params = [p.name.value for p in init.params.params[1:]]
    configs = {p for p, a in zip(params, rec.args, strict=False) if isinstance(a, ConfigObj)}
    configs |= {p for p in params if isinstance(rec.kwargs.get(p), ConfigObj)}
    assigned: dict[str, cst.BaseExpression] = {}
    for node in findall(init, m.Assign()):
        if len(node.targets) == 1:
            assigned.setdefault(_target(node.targets[0].target), node.value)
    out = _reads(conv, _CONV_ARGS, ("kernel_size", "bias"), assigned, configs)
    if out is None:
        return None
    for _, child in rec.children():
        if isinstance(child, ModuleRec) and child.kind == "Linear":
            linear = _reads(child, _LINEAR_ARGS, ("bias",), assigned, configs)
            if linear is None or linear.get("bias") != out.get("bias"):
                return None
    return out


_LINEAR_ARGS = ("in_features", "out_features", "bias")


def _reads(module: ModuleRec, order, names, assigned: dict, configs: set) -> dict | None:
    """`names` of the call that built `module` -> the config field each reads (a literal or
    default reads none); None when one reads something else."""
    call = module.site.node if module.site is not None else None
    if not isinstance(call, cst.Call):
        return None
    given: dict[str, cst.BaseExpression] = {}
    for index, arg in enumerate(call.args):
        if arg.star:
            return None
        if arg.keyword is not None:
            given[arg.keyword.value] = arg.value
        elif index < len(order):
            given[order[index]] = arg.value
    out = {}
    for name in names:
        if name not in given or _literal(given[name], assigned):
            continue
        field = _field(given[name], assigned, configs)
        if field is None:
            return None
        out[name] = field
    return out


def _literal(node, assigned: dict, depth: int = 0) -> bool:
    """An int or bool literal, directly or through a local / attribute assigned one."""
    if isinstance(node, cst.Integer) or m.matches(node, m.Name("True") | m.Name("False")):
        return True
    name = _target(node)
    return (
        bool(name)
        and name in assigned
        and depth < 4
        and _literal(assigned[name], assigned, depth + 1)
    )


def _target(node: cst.BaseExpression) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if m.matches(node, m.Attribute(value=m.Name("self"))):
        return "self." + node.attr.value
    return ""


def _field(node, assigned: dict, configs: set[str], depth: int = 0) -> str | None:
    if m.matches(node, m.Attribute(value=m.Name(), attr=m.Name())):
        if node.value.value in configs:
            return node.attr.value
    name = _target(node)
    if name and name in assigned and depth < 4:
        return _field(assigned[name], assigned, configs, depth + 1)
    return None
