"""Widen the residual stream into parallel streams joined by hyper-connections (DeepSeek-V4's
manifold-constrained form, or HY-V4's with the streams added back unmixed)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._hyper_modules import (
    HYPER_CONNECTION,
    STREAM_COLLAPSE,
    unmixed_connection,
    with_init,
)
from codegen.transforms._rope_edits import add_args_field
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    add_import,
    assigns,
    calls_super_init,
    dotted,
    expression,
    run,
    statements,
)

# ModelArgs field -> (declaration with its "why", the fact's key of the HF config field)
FIELDS = {
    "hc_streams": ("int = 4  # parallel residual streams (hyper-connections)", "streams"),
    "hc_sinkhorn_iters": (
        "int = 20  # Sinkhorn steps making the streams' mix doubly stochastic",
        "sinkhorn_iters",
    ),
    "hc_eps": ("float = 1e-6  # added to the hyper-connection weights and Sinkhorn sums", "eps"),
    "hc_norm_eps": (
        "float = 1e-6  # of the weightless RMS norm the weights are read through",
        "norm_eps",
    ),
}

# the unmixed form's `post` magnitude, where a config field sets it
MAGNITUDE = "float = 2.0  # the hyper-connections' output weights: this times a sigmoid"

# {middle}: the form's own argument (the Sinkhorn steps, a config magnitude) or nothing
BLOCK_MODULES = """
self.attention_hc = HyperConnection(
    args.dim, args.hc_streams, {middle}args.hc_eps, args.hc_norm_eps
)
self.ffn_hc = HyperConnection(
    args.dim, args.hc_streams, {middle}args.hc_eps, args.hc_norm_eps
)
"""

COLLAPSE = """
self.stream_collapse = StreamCollapse(args.dim, args.hc_streams, args.hc_eps, args.hc_norm_eps)
"""

# `x + <sublayer>(...)`: a block's residual add
_RESIDUAL_ADD = m.BinaryOperation(left=m.Name(), operator=m.Add(), right=m.Call())
_ATTENTION_CALL = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("attention")))
_LAYERS_LOOP = m.For(iter=m.MatchIfTrue(lambda node: bool(m.findall(node, dotted("self.layers")))))


class HyperConnections(Transform):
    """The residual stream becomes `hc_streams` parallel streams (batch, seq, streams, dim):
    the embedding is copied into each, every `x + sublayer(norm(x))` of `TransformerBlock`
    reads the sublayer's input from the streams and writes its output back through a
    `HyperConnection` (`attention_hc`, `ffn_hc`), and `StreamCollapse` joins the streams
    before the final norm. `hyper` is the analysed `block.hyper_connections`: the HF config
    fields the ModelArgs fields read, the form (a Sinkhorn-mixed stream, `post` twice a
    sigmoid; or the streams added back unmixed, `post` a sigmoid times a number or a config
    field, plus eps or not, written back in fp32 or not; the streams' RMS factor on the
    flattened streams or, `norm_after` / `head_norm_after`, on their projection), the HF
    layer attributes of the two modules and their parameters, and the backbone's collapsing
    module, which the adapter maps."""

    name = "hyper_connections"

    def apply(self, package, features=None, *, hyper: dict) -> None:
        mixed = hyper["mix"] == "sinkhorn"
        if hyper["mix"] not in ("sinkhorn", None):
            raise EditError(f"hyper-connections mixing the streams by {hyper['mix']!r}")
        for field, (declaration, key) in FIELDS.items():
            if hyper[key] is not None:
                add_args_field(package, field, declaration, f"hf_config.{hyper[key]}")
        magnitude = hyper["post_scale"]
        config_magnitude = isinstance(magnitude, str)
        if config_magnitude:
            add_args_field(package, "hc_post_magnitude", MAGNITUDE, f"hf_config.{magnitude}")
        if mixed:
            connection, middle = HYPER_CONNECTION, "args.hc_sinkhorn_iters, "
        else:
            connection = unmixed_connection(
                None if config_magnitude else magnitude, hyper["post_eps"], hyper["write_fp32"]
            )
            middle = "args.hc_post_magnitude, " if config_magnitude else ""
        modules = BLOCK_MODULES.format(middle=middle)
        pre = "self.base[: self.streams]"
        connection = with_init(connection, hyper["scale_init"], hyper["pre_base_init"], pre)
        collapse = with_init(
            STREAM_COLLAPSE, hyper["head_scale_init"], hyper["head_base_init"], "self.base"
        )
        if hyper.get("norm_after"):
            connection = _norm_after(connection, ".split(")
        if hyper.get("head_norm_after"):
            collapse = _norm_after(collapse, " * self.scale")
        if "minus_log" in (hyper["pre_base_init"], hyper["head_base_init"]):
            add_import(package, "model.py", "math", "log")
        edits.insert_definition(package, "model.py", connection, before="TransformerBlock")
        edits.insert_definition(package, "model.py", collapse, before="TransformerBlock")
        run(
            package,
            "model.py",
            InsertStatements("TransformerBlock", "__init__", calls_super_init, modules),
        )
        block = _Sublayers(("post", "comb") if mixed else ("post",))
        run(package, "model.py", block)
        if block.sublayers != ["attention", "ffn"]:
            raise EditError(
                f"TransformerBlock.forward: residual adds of {block.sublayers}, not the"
                " attention's then the FFN's"
            )
        run(
            package,
            "model.py",
            InsertStatements("Model", "__init__", assigns("self.norm"), COLLAPSE),
        )
        run(package, "model.py", _Streams())
        _adapter_rows(package, hyper)


class _Sublayers(edits.InMethod):
    """In TransformerBlock.forward, each statement holding `x + sublayer(...)` becomes the
    read of the sublayer's input from the streams `x` and the write-back of its output."""

    def __init__(self, weights: tuple[str, ...]):
        super().__init__("TransformerBlock", "forward")
        self.weights = weights  # what the module hands `write` besides the streams
        self.sublayers: list[str] = []

    def leave_SimpleStatementLine(self, original, updated):
        if not self.inside:
            return updated
        adds = m.findall(updated, _RESIDUAL_ADD)
        if not adds:
            return updated
        if len(adds) != 1:
            raise EditError("TransformerBlock.forward: two residual adds in one statement")
        add = adds[0]
        sublayer = "attention" if m.findall(add.right, _ATTENTION_CALL) else "ffn"
        self.sublayers.append(sublayer)
        self.hits += 1
        stream = add.left.value
        read = f"sub_in, {', '.join(self.weights)} = self.{sublayer}_hc({stream})"
        right = add.right.visit(_Rename(stream, "sub_in"))
        write = cst.Call(
            func=expression(f"self.{sublayer}_hc.write"),
            args=[
                cst.Arg(cst.Name(stream)),
                cst.Arg(right),
                *(cst.Arg(cst.Name(name)) for name in self.weights),
            ],
        )
        line = updated.deep_replace(add, write)
        return cst.FlattenSentinel([*statements(read), line])


class _Rename(cst.CSTTransformer):
    """Every read of the local `old` becomes `new` (attribute names left alone)."""

    def __init__(self, old: str, new: str):
        super().__init__()
        self.old, self.new = old, new

    def visit_Attribute(self, node):
        node.value.visit(self)  # only the object side is a read
        return False

    def leave_Attribute(self, original, updated):
        return updated.with_changes(value=original.value.visit(self))

    def leave_Name(self, original, updated):
        return updated.with_changes(value=self.new) if updated.value == self.old else updated


class _Streams(edits.InMethod):
    """Model.forward copies the hidden state into the streams before the layers' loop and
    collapses them in the final norm's argument."""

    def __init__(self):
        super().__init__("Model", "forward")
        self.expanded = False

    def leave_Call(self, original, updated):
        if not self.inside or not m.matches(updated.func, dotted("self.norm")):
            return updated
        if len(updated.args) != 1:
            raise EditError("Model.forward: the final norm takes more than the hidden state")
        self.hits += 1
        arg = updated.args[0]
        collapsed = cst.Call(expression("self.stream_collapse"), args=[arg])
        return updated.with_changes(args=[cst.Arg(collapsed)])

    def leave_IndentedBlock(self, original, updated):
        if not self.inside:
            return updated
        body = list(updated.body)
        for index, statement in enumerate(body):
            if m.matches(statement, _LAYERS_LOOP) and not self.expanded:
                stream = _loop_stream(statement)
                self.expanded = True
                copy = statements(
                    f"{stream} = {stream}.unsqueeze(2).expand(-1, -1, self.args.hc_streams, -1)"
                    "  # one copy per residual stream"
                )
                return updated.with_changes(body=body[:index] + copy + body[index:])
        return updated


def _loop_stream(loop: cst.For) -> str:
    """The local the layers' loop carries (`h = layer(h, ...)`)."""
    for statement in loop.body.body:
        if isinstance(statement, cst.SimpleStatementLine):
            small = statement.body[0]
            if isinstance(small, cst.Assign) and isinstance(small.targets[0].target, cst.Name):
                return small.targets[0].target.value
    raise EditError("Model.forward: the layers' loop assigns no hidden state")


def _adapter_rows(package, hyper: dict) -> None:
    """Each module's projection, bias and scale mapped to its HF parameters."""
    houses = ("fn", "base", "scale")
    rows = [
        (f"model.layers.{{}}.{hf}.{param}", f"layers.{{}}.{house}.{name}")
        for hf, house in zip(hyper["layer"], ("attention_hc", "ffn_hc"), strict=True)
        for param, name in zip(hyper["params"], houses, strict=True)
    ]
    edits.insert_rows_after(package, "layers.{}.ffn_norm.weight", rows)
    head = [
        (f"model.{hyper['head']}.{param}", f"stream_collapse.{name}")
        for param, name in zip(hyper["head_params"], houses, strict=True)
    ]
    edits.insert_rows_after(package, "norm.weight", head)


NORMED = "flat = flat * torch.rsqrt(flat.square().mean(-1, keepdim=True) + self.norm_eps)"
NORM = "norm = torch.rsqrt(flat.square().mean(-1, keepdim=True) + self.norm_eps)  # per token"
PROJECTED = "F.linear(flat, self.fn.float())"


def _norm_after(code: str, follows: str) -> str:
    """The module with the streams' RMS factor scaling the projection (batch, seq, out), as
    HF computes it, not the flattened streams (batch, seq, streams x dim) before it."""
    projected = PROJECTED + follows
    if code.count(NORMED) != 1 or code.count(projected) != 1:
        raise EditError("the hyper-connection template has no single normed projection")
    if follows == ".split(":
        scaled = f"({PROJECTED} * norm){follows}"
    else:
        scaled = f"{PROJECTED} * norm{follows}"
    return code.replace(projected, scaled).replace(NORMED, NORM)
