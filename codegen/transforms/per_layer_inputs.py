"""Hand each layer an input of its own from a second token table (per-layer embeddings)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    ReplaceStatements,
    code_of,
    expression,
    is_name,
    run,
    sets,
)

FIELDS = """
# each layer's slice of the per-layer table (and of the embeddings' projection); None or 0:
# no per-layer inputs
per_layer_dim: int | None = None
per_layer_vocab_size: int = 0  # rows of the per-layer table
"""

MODEL_INIT = """
if args.per_layer_dim:
    # one slice per layer: a second token table mixed with a projection of the embeddings
    width = args.n_layers * args.per_layer_dim
    self.per_layer_embeddings = nn.Embedding(args.per_layer_vocab_size, width{padding})
    self.per_layer_projection = nn.Linear(args.dim, width, bias=False)
    self.per_layer_projection_norm = {norm}
"""

MIX = '''
def per_layer_inputs(self, tokens: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Each layer's own input, (batch, seq, n_layers, per_layer_dim): the token's row of the
    per-layer table plus the normed projection of its embedding `h`, scaled together."""
    shape = (*tokens.shape, self.args.n_layers, self.args.per_layer_dim){outside_rows}
    table = self.per_layer_embeddings(tokens){table_scale}
    projected = self.per_layer_projection(h) * {projection_scale}
    projected = self.per_layer_projection_norm(projected.view(shape))
    return (projected + table.view(shape)) * {mix_scale}
'''

OUTSIDE_ROWS = """
    # ids outside the table's rows (the main vocabulary may be longer) read its row 0
    in_table = (tokens >= 0) & (tokens < self.args.per_layer_vocab_size)
    tokens = torch.where(in_table, tokens, 0)"""

PROJECTION_SCALES = {
    "rsqrt_dim": "self.args.dim**-0.5",
    # rounded to the embeddings' dtype first (a buffer of the module, as HF's)
    "rsqrt_dim_dtype": "torch.tensor(self.args.dim**-0.5, dtype=h.dtype)",
}

TABLE_SCALES = {
    # the scale rounded to the table's dtype first (a buffer of the module, as HF's)
    "sqrt_width_dtype": (
        "\n    table = table * torch.tensor(self.args.per_layer_dim**0.5, dtype=table.dtype)"
    ),
    "sqrt_width": "\n    table = table * self.args.per_layer_dim**0.5",
    "none": "",
}

BLOCK_INIT = """
self.layer_id = {layer_id}
if args.per_layer_dim:
    # the layer's per-layer input gates a projection of its output, added back normed
    self.per_layer_gate = nn.Linear(args.dim, args.per_layer_dim, bias=False)
    self.per_layer_up = nn.Linear(args.per_layer_dim, args.dim, bias=False)
    self.per_layer_norm = {norm}
"""

MIX_CALL = "per_layer = self.per_layer_inputs(tokens, h) if self.args.per_layer_dim else None"

# gemma3n: the addition goes into AltUp's corrected streams after the first, gated from the
# corrected active stream (scaled by AltUp's output scale where altup_correct_scale is set)
STREAMS_FIELDS = """
# the per-layer gate reads the corrected active stream times AltUp's output scale
altup_correct_scale: bool = False
"""

STREAMS_INIT = """
    self.per_layer_scaled = args.altup_correct_scale
"""

STREAMS_ADD = """
if per_layer is not None:
    active = out[self.altup.active].clone()  # a copy: the streams are added to in place
    if self.per_layer_scaled:
        active = active * self.altup.output_scale
    gated = {act} * per_layer[:, :, self.layer_id]
    out[1:] += self.per_layer_norm(self.per_layer_up(gated))
"""

BLOCK_ADD = """
if per_layer is not None:
    gated = {act} * per_layer[:, :, self.layer_id]
    out = out + self.per_layer_norm(self.per_layer_up(gated))
"""

_FFN_NORM = m.Attribute(value=m.Name("self"), attr=m.Name("ffn_norm"))


class PerLayerInputs(Transform):
    """Each layer gets an input of its own: `Model.per_layer_inputs` mixes the token's row of
    a second table (`n_layers * per_layer_dim` wide, scaled as `table_scale` says) with a
    normed projection of the scaled embeddings (times dim**-0.5), times `mix_scale`; the
    block gates its output with its slice (`act(per_layer_gate(out)) * slice`, the FFN's
    activation), projects it back up, norms it and adds it before returning. Built only where
    `per_layer_dim` is set (the HF switch `width`, e.g. hidden_size_per_layer_input); the
    adapter maps the table, projection and norms to the HF keys the analysis read.

    With `into="streams"` (after the `altup` transform) the block returns AltUp's corrected
    streams, the gate reads the corrected active stream (times AltUp's output scale where
    `altup_correct_scale`, the HF field `correct_scale`, is set) and the addition goes into
    every stream after the first. The scales read as buffers in HF (`projection_scale`
    rsqrt_dim_dtype, `mix_scale_dtype`) are rounded to the embeddings' dtype first. Where
    HF's lookup reads ids outside the table's rows as row 0 (`outside_rows_read_zero`), so
    does the package's."""

    name = "per_layer_inputs"

    def apply(self, package, features=None, *, per_layer_input: dict) -> None:
        found = per_layer_input
        if found.get("projection_scale") not in PROJECTION_SCALES:
            raise EditError(
                f"projection scale {found.get('projection_scale')!r}: one of {PROJECTION_SCALES}"
            )
        into = found.get("into", "output")
        if into not in ("output", "streams"):
            raise EditError(f"per-layer addition into {into!r}: output or streams")
        if found.get("table_scale") not in TABLE_SCALES:
            raise EditError(f"table scale {found.get('table_scale')!r}: one of {TABLE_SCALES}")
        edits.add_args_field(package, FIELDS)
        edits.add_hf_kwarg(package, f"per_layer_dim=hf_config.{found['width']}")
        edits.add_hf_kwarg(package, f"per_layer_vocab_size=hf_config.{found['vocab']}")
        block_norm = _block_norm(package)
        _add_model_parts(package, block_norm)
        edits.add_method_after_init(
            package,
            "Model",
            MIX.format(
                outside_rows=OUTSIDE_ROWS if found.get("outside_rows_read_zero") else "",
                table_scale=TABLE_SCALES[found["table_scale"]],
                projection_scale=PROJECTION_SCALES[found["projection_scale"]],
                mix_scale=(
                    f"torch.tensor({found['mix_scale']}, dtype=h.dtype)"
                    if found.get("mix_scale_dtype")
                    else found["mix_scale"]
                ),
            ),
        )
        _mix_before_layers(package)
        layer_id = edits.ensure_layer_id(package)
        block_init = BLOCK_INIT.format(layer_id=layer_id, norm=_resized(block_norm, "args.dim"))
        if into == "streams" and found.get("correct_scale"):
            block_init += STREAMS_INIT.lstrip("\n")
        edits.append_to_method(package, "model.py", "TransformerBlock", "__init__", block_init)
        edits.add_param(package, "TransformerBlock", "forward", "per_layer: torch.Tensor | None")
        if into == "streams":
            _into_streams(package, found)
        else:
            _add_to_return(package, _ffn_activation(package))
        _map_keys(package, features, found)


def _block_norm(package) -> cst.Call:
    """The call that builds the block's FFN norm (its class and epsilon are the norms')."""
    found = m.findall(
        package.module("model.py"),
        m.Assign(targets=[m.AssignTarget(target=_FFN_NORM)], value=m.Call()),
    )
    if not found:
        raise EditError("TransformerBlock builds no self.ffn_norm")
    return found[0].value


def _resized(call: cst.Call, width: str) -> str:
    """`call` with its first argument (the width) replaced."""
    first = call.args[0].with_changes(value=expression(width))
    return code_of(call.with_changes(args=[first, *call.args[1:]]))


def _add_model_parts(package, block_norm: cst.Call) -> None:
    """The table, projection and norm after `self.tok_embeddings = ...` in Model.__init__."""
    tables = m.findall(
        package.module("model.py"),
        m.Assign(
            targets=[
                m.AssignTarget(
                    target=m.Attribute(value=m.Name("self"), attr=m.Name("tok_embeddings"))
                )
            ]
        ),
    )
    if not tables or not isinstance(tables[0].value, cst.Call):
        raise EditError("Model builds no self.tok_embeddings")
    padding = next(
        (
            a
            for a in tables[0].value.args
            if a.keyword is not None and a.keyword.value == "padding_idx"
        ),
        None,
    )
    code = MODEL_INIT.format(
        padding=f", padding_idx={code_of(padding.value)}" if padding is not None else "",
        norm=_resized(block_norm, "args.per_layer_dim"),
    )
    run(
        package,
        "model.py",
        InsertStatements("Model", "__init__", sets("self.tok_embeddings"), code),
    )


def _mix_before_layers(package) -> None:
    """In Model.forward: `per_layer = ...` before the loop over `self.layers`, the loop's
    layer call handed it, and `del per_layer` after the loop."""
    forward = edits.find_method(package.module("model.py"), "Model", "forward")
    loops = [s for s in (forward.body.body if forward else ()) if _loops_over_layers(s)]
    if len(loops) != 1 or not isinstance(loops[0].target, cst.Name):
        raise EditError("Model.forward has no single `for layer in self.layers` loop")
    layer = loops[0].target.value
    run(
        package,
        "model.py",
        InsertStatements("Model", "forward", _loops_over_layers, MIX_CALL, before=True),
    )
    edits.free_after_layer_loop(package, "per_layer")
    hits = edits.replace_expressions(
        package,
        "model.py",
        "Model",
        "forward",
        lambda node: isinstance(node, cst.Call) and is_name(node.func, layer),
        lambda call: edits.with_arg(call, "per_layer"),
    )
    if hits != 1:
        raise EditError(f"the layer loop calls {layer!r} {hits} times")


def _loops_over_layers(statement) -> bool:
    """`for ... in <something of self.layers>:`"""
    layers = m.Attribute(value=m.Name("self"), attr=m.Name("layers"))
    return isinstance(statement, cst.For) and (
        m.matches(statement.iter, layers) or bool(m.findall(statement.iter, layers))
    )


def _ffn_activation(package) -> cst.Call:
    """The FFN's activation applied to its gate projection (`F.silu(self.w1(x))`, ...), or to
    the local holding it (`gate = self.w1(x)`, then thresholded: `gate = topk(gate, ...)`)."""
    forward = edits.find_method(package.module("model.py"), "FeedForward", "forward")
    w1 = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("w1")))
    gates = {
        assign.targets[0].target.value
        for assign in m.findall(forward or cst.Module([]), m.Assign(value=w1))
        if len(assign.targets) == 1 and isinstance(assign.targets[0].target, cst.Name)
    }
    # the calls that write the gate local again (its threshold) are not the activation
    rewrites = {
        id(assign.value)
        for assign in m.findall(forward or cst.Module([]), m.Assign(value=m.Call()))
        if any(is_name(t.target, g) for t in assign.targets for g in gates)
    }
    first = w1 | m.OneOf(*(m.Name(g) for g in gates)) if gates else w1
    found = [
        call
        for call in m.findall(
            forward or cst.Module([]), m.Call(args=[m.Arg(value=first), m.ZeroOrMore()])
        )
        if not is_name(call.func, "self.w2") and id(call) not in rewrites
    ]
    if len(found) != 1:
        raise EditError("cannot find the FFN's activation of self.w1(x)")
    return found[0]


def _add_to_return(package, activation: cst.Call) -> None:
    """`return <sum>` -> `out = <sum>`, the gated per-layer addition, `return out`."""
    forward = edits.find_method(package.module("model.py"), "TransformerBlock", "forward")
    returns = [s for s in (forward.body.body if forward else ()) if _returns_value(s)]
    if len(returns) != 1:
        raise EditError("TransformerBlock.forward has no single return")
    gate = activation.args[0].with_changes(value=expression("self.per_layer_gate(out)"))
    act = code_of(activation.with_changes(args=[gate, *activation.args[1:]]))
    value = code_of(returns[0].body[0].value)
    code = f"out = {value}\n" + BLOCK_ADD.format(act=act).lstrip("\n") + "return out\n"
    run(package, "model.py", ReplaceStatements("TransformerBlock", "forward", _returns_value, code))


def _into_streams(package, found: dict) -> None:
    """`return self.altup.correct(...)` -> `out = ...`, the gated addition into the streams
    after the first, `return out`; the scale's switch read from the HF config."""
    if found.get("correct_scale"):
        edits.add_args_field(package, STREAMS_FIELDS)
        edits.add_hf_kwarg(package, f"altup_correct_scale=hf_config.{found['correct_scale']}")
        add = STREAMS_ADD
    else:  # the gate reads the corrected active stream as it is
        add = STREAMS_ADD.replace(
            "    if self.per_layer_scaled:\n        active = active * self.altup.output_scale\n", ""
        )
    forward = edits.find_method(package.module("model.py"), "TransformerBlock", "forward")
    returns = [s for s in (forward.body.body if forward else ()) if _returns_value(s)]
    correct = m.Call(func=m.Attribute(value=_attr("altup"), attr=m.Name("correct")))
    if len(returns) != 1 or not m.matches(returns[0].body[0].value, correct):
        raise EditError("TransformerBlock.forward does not return AltUp's correction")
    activation = _ffn_activation(package)
    gate = activation.args[0].with_changes(value=expression("self.per_layer_gate(active)"))
    act = code_of(activation.with_changes(args=[gate, *activation.args[1:]]))
    value = code_of(returns[0].body[0].value)
    code = f"out = {value}\n" + add.format(act=act).lstrip("\n") + "return out\n"
    run(package, "model.py", ReplaceStatements("TransformerBlock", "forward", _returns_value, code))


def _attr(name: str) -> m.Attribute:
    return m.Attribute(value=m.Name("self"), attr=m.Name(name))


def _returns_value(statement) -> bool:
    return m.matches(statement, m.SimpleStatementLine(body=[m.Return(value=m.DoesNotMatch(None))]))


def _map_keys(package, features, found: dict) -> None:
    prefix = features.state_dict.prefix if features is not None else "model.layers"
    layer_rows = [
        (f"{prefix}.{{}}.{found['gate']}.weight", "layers.{}.per_layer_gate.weight"),
        (f"{prefix}.{{}}.{found['up']}.weight", "layers.{}.per_layer_up.weight"),
        (f"{prefix}.{{}}.{found['norm']}.weight", "layers.{}.per_layer_norm.weight"),
    ]
    model_rows = [
        (f"{found['table']}.weight", "per_layer_embeddings.weight"),
        (f"{found['projection']}.weight", "per_layer_projection.weight"),
        (f"{found['mix_norm']}.weight", "per_layer_projection_norm.weight"),
    ]
    edits.insert_after_layer_rows(package, layer_rows)
    edits.insert_rows_after(package, "tok_embeddings.weight", model_rows)
