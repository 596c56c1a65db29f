"""Block attention residuals: each sublayer's input an attention of a learned query over
the block states (inkling2)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._ffn_edits import rewrite_adapter
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, assigns, code_of, run, statements

DEPTH_ATTENTION = '''
class DepthAttention(nn.Module):
    """A learned query attending over depth, not tokens: the block states and the current
    state, each RMS-normalised without a weight, are scored against the query and averaged
    by the softmax of the scores (one attention call over the depth axis), in fp32."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.query = nn.Parameter(torch.zeros(dim))

    def init_parameters(self, std: float) -> None:
        nn.init.zeros_(self.query)  # every state weighted alike at first

    def forward(self, blocks: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """blocks (batch, seq, n, dim), x (batch, seq, dim) -> (batch, seq, dim) in fp32."""
        states = torch.cat([blocks, x.unsqueeze(-2)], dim=-2).float()
        states = states * torch.rsqrt(states.square().mean(-1, keepdim=True) + self.eps)
        query = self.query.float().expand(*states.shape[:-2], 1, -1)
        scale = states.shape[-1] ** -0.5
        return F.scaled_dot_product_attention(query, states, states, scale=scale).squeeze(-2)
'''

DEPTH_QUERIES = '''
class DepthQueries(nn.Module):
    """Several learned queries attending over depth at once, each as `DepthAttention`'s
    one: an input of its own per query (the full-attention layers' queries', keys' and
    values' inputs), in fp32."""

    def __init__(self, dim: int, eps: float, queries: int):
        super().__init__()
        self.eps = eps
        self.query = nn.Parameter(torch.zeros(queries, dim))

    def init_parameters(self, std: float) -> None:
        nn.init.zeros_(self.query)  # every state weighted alike at first

    def forward(self, blocks: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """blocks (batch, seq, n, dim), x (batch, seq, dim) -> one (batch, seq, dim) per
        query, in fp32."""
        states = torch.cat([blocks, x.unsqueeze(-2)], dim=-2).float()
        states = states * torch.rsqrt(states.square().mean(-1, keepdim=True) + self.eps)
        query = self.query.float().expand(*states.shape[:-2], -1, -1)  # (..., queries, dim)
        scale = states.shape[-1] ** -0.5
        return F.scaled_dot_product_attention(query, states, states, scale=scale).unbind(-2)
'''

FIELDS = """
# block attention residuals: a block starts at every multiple of this many layers, where the
# layer's input joins the block states the sublayers' inputs attend over
attn_res_block: int = 6
attn_res_eps: float = 1e-6  # the block states' weightless RMS norm
"""

BUILD = """
self.starts_block = layer_id % args.attn_res_block == 0
self.attention_input = DepthAttention(args.dim, args.attn_res_eps) if layer_id > 0 else None
self.ffn_input = DepthAttention(args.dim, args.attn_res_eps)
"""

# the full layers' depth module reads a query per input of their attention (`layer_kv_inputs`
# hands each output through its own norm)
WIDE_BUILD = """
self.starts_block = layer_id % args.attn_res_block == 0
if layer_id == 0:
    self.attention_input = None
elif self.sliding:
    self.attention_input = DepthAttention(args.dim, args.attn_res_eps)
else:  # a query each for the attention's queries', keys' and values' inputs
    self.attention_input = DepthQueries(args.dim, args.attn_res_eps, {queries})
self.ffn_input = DepthAttention(args.dim, args.attn_res_eps)
"""

READ = "attention_in = x if self.attention_input is None else self.attention_input(blocks, x)"
WIDE_READ = """if self.attention_input is None:  # the first layer reads its input for each
    attention_in = x if self.sliding else ({copies})
else:
    attention_in = self.attention_input(blocks, x)"""

ATTENTION_SUM = """
dtype = x.dtype
{read}
h = {sublayer}
if self.starts_block:  # the layer's input closes the block before it; h starts a new one
    blocks = torch.cat([blocks, x.unsqueeze(-2)], dim=-2)
    h = h.float()
else:
    h = x.float() + h
"""


class AttentionResiduals(Transform):
    """The residual stream becomes inkling2's block attention residuals. `TransformerBlock`
    takes the block states beside its input and returns both: its attention reads
    `attention_input(blocks, x)` (a `DepthAttention`; the first layer reads `x`), its FFN
    `ffn_input(blocks, h)`, each normed and cast back to the input's dtype; on a layer that
    starts a block (`layer_id % attn_res_block == 0`) the input joins the block states and
    the attention's output restarts the stream, elsewhere it is added to the input, in fp32.
    `Model` starts with no block states and reads them with `final_input` before the final
    norm. Where the attention's module reads several queries (its `reads`: each output
    through a norm of its own into the attention), the full layers build a `DepthQueries`
    and read a tuple of inputs, one per query, which `layer_kv_inputs` hands the attention
    through its norms. `residuals` is the analysed `block.attention_residuals`."""

    name = "attention_residuals"

    def apply(self, package, features=None, *, residuals: dict) -> None:
        layer = residuals["layer"]
        attention, ffn = _modules(layer, features)
        boundary = residuals.get("boundary")
        if boundary is None or residuals.get("final") is None:
            raise EditError("attention_residuals: no block boundary field or final read")
        wide = layer[attention].get("reads")
        if wide and not _assigns_sliding(package):
            raise EditError(
                "attention_residuals: several queries on the full layers need the block's"
                " self.sliding (the layers windowed by type)"
            )
        moe_edits.insert_before_class(package, "model.py", "TransformerBlock", DEPTH_ATTENTION)
        if wide:
            moe_edits.insert_before_class(package, "model.py", "TransformerBlock", DEPTH_QUERIES)
        _layer_ids(package)
        build = WIDE_BUILD.format(queries=len(wide)) if wide else BUILD
        run(
            package,
            "model.py",
            InsertStatements("TransformerBlock", "__init__", assigns("self.ffn_norm"), build),
        )
        edits.replace_expressions(
            package,
            "model.py",
            "TransformerBlock",
            "forward",
            edits.call_of("self.attention_norm"),
            lambda call: cst.parse_expression("self.attention_norm(attention_in).to(dtype)"),
        )
        edits.replace_expressions(
            package,
            "model.py",
            "TransformerBlock",
            "forward",
            edits.call_of("self.ffn_norm"),
            lambda call: cst.parse_expression(
                f"self.ffn_norm(self.ffn_input(blocks, {code_of(call.args[0].value)})).to(dtype)"
            ),
        )
        read = WIDE_READ.format(copies=", ".join(["x"] * len(wide))) if wide else READ
        run(package, "model.py", _BlockSums(read))
        run(
            package,
            "model.py",
            InsertStatements(
                "Model",
                "__init__",
                assigns("self.norm"),
                "self.final_input = "
                "DepthAttention(args.dim, args.attn_res_eps)  # read before the final norm",
            ),
        )
        run(package, "model.py", _ModelLoop())
        moe_edits.add_args_fields(package, FIELDS.strip())
        moe_edits.add_config_kwargs(
            package,
            {
                "attn_res_block": f"hf_config.{boundary['field']}",
                "attn_res_eps": repr(float(residuals.get("eps", 1e-6))),
            },
        )
        prefix, backbone = _prefixes(package)
        edits.insert_after_layer_rows(
            package,
            [
                (f"{prefix}.{attention}.query", "layers.{}.attention_input.query"),
                (f"{prefix}.{ffn}.query", "layers.{}.ffn_input.query"),
                (f"{backbone}{residuals['final']}.query", "final_input.query"),
            ],
        )


def _modules(layer: dict, features) -> tuple[str, str]:
    """(attention's module, FFN's module) of the layer: one query each, the attention's on
    every layer but the first, the FFN's on all."""
    if len(layer) != 2 or any(
        entry["queries"] != [1] and not entry.get("reads") for entry in layer.values()
    ):
        raise EditError(
            "attention_residuals: depth modules other than one single-query module per"
            f" sublayer ({layer})"
        )
    first = [name for name, entry in layer.items() if entry["layers"][:1] == [1]]
    every = [name for name, entry in layer.items() if entry["layers"][:1] == [0]]
    if len(first) != 1 or len(every) != 1:
        raise EditError("attention_residuals: expected the attention's module from layer 1 on")
    return first[0], every[0]


def _assigns_sliding(package) -> bool:
    """TransformerBlock.__init__ assigns `self.sliding` (the layer's type)."""
    init = edits.find_method(package.module("model.py"), "TransformerBlock", "__init__")
    return init is not None and any(assigns("self.sliding")(s) for s in init.body.body)


def _layer_ids(package) -> None:
    """`TransformerBlock(args)` built with its index: `TransformerBlock(args, layer_id)`."""
    init = edits.find_method(package.module("model.py"), "TransformerBlock", "__init__")
    if init is None:
        raise EditError("no TransformerBlock.__init__")
    if any(p.name.value == "layer_id" for p in init.params.params):
        return
    run(package, "model.py", _AddLayerId())


class _AddLayerId(cst.CSTTransformer):
    def __init__(self):
        super().__init__()
        self.hits = 0
        self._class: list[str] = []

    def visit_ClassDef(self, node):
        self._class.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self._class.pop()
        return updated

    def leave_FunctionDef(self, original, updated):
        if self._class[-1:] != ["TransformerBlock"] or updated.name.value != "__init__":
            return updated
        self.hits += 1
        params = list(updated.params.params)
        new = cst.Param(cst.Name("layer_id"), cst.Annotation(cst.Name("int")))
        params[-1] = params[-1].with_changes(
            comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
        )
        return updated.with_changes(params=updated.params.with_changes(params=[*params, new]))

    def leave_GeneratorExp(self, original, updated):
        if not m.matches(updated.elt, m.Call(func=m.Name("TransformerBlock"))):
            return updated
        self.hits += 1
        comp = updated.for_in.with_changes(target=cst.Name("layer_id"))
        elt = updated.elt.with_changes(
            args=[
                *updated.elt.args[:-1],
                updated.elt.args[-1].with_changes(
                    comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
                ),
                cst.Arg(cst.Name("layer_id")),
            ]
        )
        return updated.with_changes(elt=elt, for_in=comp)


class _BlockSums(cst.CSTTransformer):
    """In TransformerBlock.forward: `h = x + <attention>` becomes the block step, `return h +
    <ffn>` returns the sum in the input's dtype and the block states; `blocks` a parameter."""

    def __init__(self, read: str):
        super().__init__()
        self.read = read
        self.hits = 0
        self._class: list[str] = []
        self._in = False

    def visit_ClassDef(self, node):
        self._class.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self._class.pop()
        return updated

    def visit_FunctionDef(self, node):
        self._in = self._class[-1:] == ["TransformerBlock"] and node.name.value == "forward"

    def leave_FunctionDef(self, original, updated):
        if not self._in:
            return updated
        self._in = False
        params = list(updated.params.params)
        blocks = cst.Param(
            cst.Name("blocks"),
            cst.Annotation(cst.parse_expression("torch.Tensor")),
            comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")),
        )
        params.insert(2, blocks)
        params[1] = params[1].with_changes(
            comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
        )
        if params[-1] is blocks:
            params[-1] = blocks.with_changes(comma=cst.MaybeSentinel.DEFAULT)
        returns = cst.Annotation(cst.parse_expression("tuple[torch.Tensor, torch.Tensor]"))
        return updated.with_changes(
            params=updated.params.with_changes(params=params), returns=returns
        )

    def leave_SimpleStatementLine(self, original, updated):
        if not self._in or len(updated.body) != 1:
            return updated
        small = updated.body[0]
        add = m.BinaryOperation(operator=m.Add())
        if m.matches(
            small,
            m.Assign(
                targets=[m.AssignTarget(m.Name("h"))],
                value=add & m.BinaryOperation(left=m.Name("x")),
            ),
        ):
            self.hits += 1
            sublayer = code_of(small.value.right)
            return cst.FlattenSentinel(
                statements(ATTENTION_SUM.format(read=self.read, sublayer=sublayer))
            )
        if m.matches(small, m.Return(value=add & m.BinaryOperation(left=m.Name("h")))):
            self.hits += 1
            out = f"out = {code_of(small.value.right)}\nreturn (h + out).to(dtype), blocks"
            return cst.FlattenSentinel(statements(out))
        return updated


class _ModelLoop(cst.CSTTransformer):
    """In Model.forward: the layers carry the block states (none at first), and the final
    norm reads `final_input(blocks, h)`, cast back to the embeddings' dtype."""

    def __init__(self):
        super().__init__()
        self.hits = 0
        self._class: list[str] = []
        self._in = False

    def visit_ClassDef(self, node):
        self._class.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self._class.pop()
        return updated

    def visit_FunctionDef(self, node):
        self._in = self._class[-1:] == ["Model"] and node.name.value == "forward"

    def leave_FunctionDef(self, original, updated):
        self._in = False
        return updated

    def leave_For(self, original, updated):
        if not (
            self._in and m.matches(updated.iter, m.Attribute(m.Name("self"), m.Name("layers")))
        ):
            return updated
        body = updated.body.body
        if len(body) != 1 or not m.matches(
            body[0], m.SimpleStatementLine([m.Assign([m.AssignTarget(m.Name("h"))], m.Call())])
        ):
            raise EditError("Model.forward's layer loop is not `h = layer(h, ...)`")
        call = body[0].body[0].value
        args = list(call.args)
        args.insert(
            1,
            cst.Arg(
                cst.Name("blocks"), comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
            ),
        )
        if len(args) == 2:
            args[1] = args[1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        args[0] = args[0].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        step = cst.parse_statement(f"h, blocks = {code_of(call.with_changes(args=args))}")
        self.hits += 1
        loop = updated.with_changes(body=updated.body.with_changes(body=[step]))
        start = statements(
            "dtype = h.dtype\n"
            "blocks = h.new_zeros(*h.shape[:-1], 0, h.shape[-1])  # no block states yet"
        )
        return cst.FlattenSentinel([*start, loop])

    def leave_SimpleStatementLine(self, original, updated):
        norm = m.Assign(
            [m.AssignTarget(m.Name("h"))],
            m.Call(func=m.Attribute(m.Name("self"), m.Name("norm")), args=[m.Arg(m.Name("h"))]),
        )
        if not (self._in and len(updated.body) == 1 and m.matches(updated.body[0], norm)):
            return updated
        self.hits += 1
        read = cst.parse_statement("h = self.final_input(blocks, h)  # the block states, in fp32")
        normed = updated.body[0].with_changes(value=cst.parse_expression("self.norm(h).to(dtype)"))
        return cst.FlattenSentinel([read, updated.with_changes(body=[normed])])


def _prefixes(package) -> tuple[str, str]:
    """(`model.layers.{}`, `model.`): the HF prefixes of a layer's keys and the backbone's,
    from the attention norm's and the final norm's rows."""
    found: dict[str, str] = {}

    def collect(hf, house):
        if house == "layers.{}.attention_norm.weight":
            found["layer"] = hf.split(".{}.", 1)[0] + ".{}"
        if house == "norm.weight":
            found["backbone"] = hf[: -len("norm.weight")]
        return [(hf, house)]

    rewrite_adapter(package, collect)
    if set(found) != {"layer", "backbone"}:
        raise EditError("state_dict_adapter.py lacks the attention norm's or final norm's row")
    return found["layer"], found["backbone"]
