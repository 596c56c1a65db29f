"""Experts picked by a fixed table indexed by the token ids on the layers a config list types so
(DeepSeek-V4's hash_moe layers)."""

from __future__ import annotations

import json
import textwrap

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as attention_edits
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._rope_edits import add_args_field, rewrite_expressions
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    assigns,
    code_of,
    expression,
    findall,
    run,
)
from codegen.transforms.score_activation import ACTIVATIONS

# the scores each analysed activation gives, over `{x}` (the logits, upcast or not)
SCORES = {"sigmoid": "{x}.sigmoid()", "softmax": "{x}.softmax(dim=-1)"} | ACTIVATIONS

LOGITS = {  # in the model's dtype, or from an upcast input and weight
    False: "logits = F.linear(x.reshape(-1, x.shape[-1]), self.weight)",
    True: "logits = F.linear(x.reshape(-1, x.shape[-1]).float(), self.weight.float())",
}

GATE = '''
class TableGate(nn.Module):
    """Router whose experts a fixed table picks by token id (`{buffer}`: one row of top_k
    expert ids per vocabulary entry); the scores of its logits only weight the picked
    experts{weighted}."""

    def __init__(self, args: ModelArgs):
        super().__init__()
{scale_init}        self.weight = nn.Parameter(torch.empty({experts}, {dim}))
        self.register_buffer(
            "{buffer}", torch.zeros({rows}, {cols}, dtype=torch.long)
        )

    def init_parameters(self, std: float) -> None:
        self.{buffer}.zero_()  # as HF's _init_weights: the table comes from the checkpoint

    def forward(
        self, x: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (..., dim), tokens (...) -> router logits (tokens, experts), weights and
        indices (tokens, k)."""
        {logits}
        scores = {scores}
        indices = self.{buffer}[tokens.reshape(-1)]
        weights = scores.gather(1, indices)
{renormalise}        return logits, {weights}, indices
'''

FFN = '''
def {name}(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The MoE, handed the token ids, on MoE layers; the dense feed-forward elsewhere."""
    if self.is_moe:
        return self.moe(x, tokens)
    return self.feed_forward(x)
'''

_GATE_CALL = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("gate")))
_REGISTER = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("register_buffer")))
_MOE_CALL = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("moe")))


def gate_class(
    table: dict,
    rows: str,
    cols: str,
    scale: str | None = "route_scale",
    shape: tuple[str, str] = ("args.n_routed_experts", "args.dim"),
) -> str:
    """The `TableGate` class for the analysed `moe.table_routing`; `scale` is the ModelArgs
    field that reads the config's scale (when the table's weights are scaled), `shape` the
    gate weight's (experts, dim) as the MoE builds its experts."""
    if table["activation"] not in SCORES:
        raise EditError(f"no template for router scores {table['activation']!r}")
    renormalise = ""
    if table["renormalize"]:
        eps = f" + {table['eps']!r}" if table["eps"] else ""
        renormalise = f"        weights = weights / (weights.sum(dim=-1, keepdim=True){eps})\n"
    scaled = table["scale"] is not None
    # logits in the model's dtype scored in fp32 where HF upcasts them for its activation
    half_logits = not table["fp32"]
    upcast = "logits.float()" if half_logits and table.get("scores_fp32") else "logits"
    return GATE.format(
        buffer=table["buffer"],
        experts=shape[0],
        dim=shape[1],
        weighted=(", renormalised" if table["renormalize"] else "")
        + (" and scaled" if scaled else ""),
        scale_init=f"        self.{scale} = args.{scale}\n" if scaled else "",
        rows=rows,
        cols=cols,
        logits=LOGITS[bool(table["fp32"])],
        scores=SCORES[table["activation"]].format(x=upcast),
        renormalise=renormalise,
        weights=f"weights * self.{scale}" if scaled else "weights",
    )


class TableRouting(Transform):
    """The MoE layers `table` types as table-routed (`config.<switch>[layer] == <value>`,
    read by `from_hf_config` into `table_layers`) route with a `TableGate` (see `gate_class`;
    its logits, and the scores taken of them, in fp32 where HF's are, its weights times the
    ModelArgs field that reads the config's scale); the other MoE layers keep their own
    router. `MoE.forward` hands the table gate the token ids, which `TransformerBlock.forward`
    (through an `ffn` method where the block picks its MoE or dense FFN) and `Model.forward`'s
    layer loop pass down. The adapter maps the table's checkpoint key beside the gate's weight.
    `table` is the analysed `moe.table_routing`."""

    name = "table_routing"

    def apply(self, package, features=None, *, table: dict | None = None) -> None:
        if not table:
            raise EditError("table_routing needs the analysed moe.table_routing")
        if not moe_edits.has_class(package, "model.py", "MoE"):
            raise EditError("model.py has no MoE class")
        fields = _house_fields(package)
        rows, cols = (fields.get(table[k]) for k in ("rows", "cols"))
        if rows is None or cols is None:
            raise EditError(f"ModelArgs reads neither {table['rows']} nor {table['cols']}")
        scale = fields.get(table["scale"]) if table["scale"] is not None else None
        if table["scale"] is not None and scale is None:
            raise EditError(f"no ModelArgs field reads {table['scale']}")
        add_args_field(
            package,
            "table_layers",
            "tuple[int, ...] = ()  # the MoE layers whose experts a table picks by token id",
            f"tuple(i for i, kind in enumerate(hf_config.{table['switch']})"
            f" if kind == {json.dumps(table['value'])})",
        )
        gate = gate_class(table, f"args.{rows}", f"args.{cols}", scale, _experts_shape(package))
        moe_edits.insert_before_class(package, "model.py", "MoE", gate)
        _build_gate(package)
        attention_edits.add_param(package, "MoE", "__init__", "by_table: bool = False")
        _route_by_table(package)
        _thread_block(package)
        _thread_loop(package)
        _rows(package, table["buffer"])


def _house_fields(package) -> dict[str, str]:
    """HF config field -> the ModelArgs field `from_hf_config` sets to it."""
    found = {}
    for kw in findall(package.module("args.py"), m.Arg(keyword=m.Name())):
        value = kw.value
        if m.matches(value, m.Attribute(value=m.Name("hf_config"), attr=m.Name())):
            found.setdefault(value.attr.value, kw.keyword.value)
    return found


def _experts_shape(package) -> tuple[str, str]:
    """The (experts, dim) MoE.__init__ builds its experts with (`Experts(<n>, <dim>, ...)`):
    the table gate's weight has one row of dim per expert."""
    init = attention_edits.find_method(package.module("model.py"), "MoE", "__init__")
    calls = findall(init, m.Call(func=m.Name("Experts"))) if init is not None else []
    if len(calls) != 1 or len(calls[0].args) < 2:
        raise EditError("MoE.__init__ builds no Experts(<experts>, <dim>, ...)")
    return code_of(calls[0].args[0].value), code_of(calls[0].args[1].value)


def _build_gate(package) -> None:
    """MoE.__init__ builds a `TableGate` on table-routed layers and its own router on the
    others; the buffers of its own router (those `MoE.route` reads, when the router is a
    projection whose logits `route` turns into weights) are registered on those alone, as
    HF's table router has none of them."""
    module = package.module("model.py")
    init = attention_edits.find_method(module, "MoE", "__init__")
    built = [s for s in (init.body.body if init else ()) if assigns("self.gate")(s)]
    if len(built) != 1:
        raise EditError("MoE.__init__ assigns self.gate not once")
    router = code_of(built[0].body[0].value)
    moe_edits.replace_statement(
        package,
        "model.py",
        "MoE",
        "__init__",
        assigns("self.gate"),
        f"self.by_table = by_table\nself.gate = TableGate(args) if by_table else {router}",
    )
    route = attention_edits.find_method(module, "MoE", "route")
    if route is None:
        return
    read = {
        node.attr.value for node in findall(route, m.Attribute(value=m.Name("self"), attr=m.Name()))
    }
    for statement in init.body.body:
        for call in findall(statement, _REGISTER):
            name = call.args[0].value
            if isinstance(name, cst.SimpleString) and name.evaluated_value in read:
                code = code_of(statement).strip()
                moe_edits.replace_statement(
                    package,
                    "model.py",
                    "MoE",
                    "__init__",
                    lambda s, statement=statement: s.deep_equals(statement),
                    "if not by_table:\n" + textwrap.indent(code, "    "),
                )


def _route_by_table(package) -> None:
    """`... = self.gate(x)` in MoE.forward runs as is on top-k layers and with the token
    ids on table-routed ones; where the gate's logits go through `self.route`
    (`weights, indices = self.route(self.gate(x))`), the table gate gives the weights and
    indices itself."""
    method = attention_edits.find_method(package.module("model.py"), "MoE", "forward")
    hits = [s for s in (method.body.body if method else ()) if findall(s, _GATE_CALL)]
    if len(hits) != 1:
        raise EditError("MoE.forward calls self.gate not once")
    plain = code_of(hits[0]).strip()
    call = findall(hits[0], _GATE_CALL)[0]
    with_tokens = attention_edits.with_arg(call, "tokens")
    by_table = plain.replace(code_of(call), code_of(with_tokens), 1)
    statement = hits[0].body[0] if isinstance(hits[0], cst.SimpleStatementLine) else None
    if isinstance(statement, cst.Assign) and statement.value is not call:
        target = statement.targets[0].target
        if not (isinstance(target, cst.Tuple) and len(target.elements) == 2):
            raise EditError("MoE.forward: the routed gate's logits give no (weights, indices)")
        pair = ", ".join(code_of(element.value) for element in target.elements)
        by_table = f"_, {pair} = {code_of(with_tokens)}"
    moe_edits.replace_statement(
        package,
        "model.py",
        "MoE",
        "forward",
        lambda s: s is hits[0] or s.deep_equals(hits[0]),
        f"if self.by_table:\n    {by_table}\nelse:\n    {plain}",
    )
    attention_edits.add_param(package, "MoE", "forward", "tokens: torch.Tensor")


def _thread_block(package) -> None:
    """The block builds its MoE table-routed on `args.table_layers` and hands it the token
    ids its forward takes."""
    layer_id = attention_edits.ensure_layer_id(package)

    def build(node):
        if not m.matches(node, m.Call(func=m.Name("MoE"))):
            return None
        return attention_edits.with_arg(
            node, f"{layer_id} in args.table_layers", keyword="by_table"
        )

    if not rewrite_expressions(package, "model.py", "TransformerBlock", "__init__", build):
        raise EditError("TransformerBlock.__init__ builds no MoE")
    chosen = moe_edits.chosen_ffn(package)
    if chosen is None:

        def call(node):
            if not m.matches(node, _MOE_CALL):
                return None
            return attention_edits.with_arg(node, "tokens")

        if rewrite_expressions(package, "model.py", "TransformerBlock", "forward", call) != 1:
            raise EditError("TransformerBlock.forward: not one call of self.moe")
    else:  # `ffn = self.moe if self.is_moe else self.feed_forward`: only the MoE takes them

        def call(node):
            if not m.matches(node, m.Call(m.Name(chosen))):
                return None
            return attention_edits.with_arg(
                node.with_changes(func=expression(f"self.{chosen}")), "tokens"
            )

        if rewrite_expressions(package, "model.py", "TransformerBlock", "forward", call) != 1:
            raise EditError(f"TransformerBlock.forward: not one call of {chosen}")
        moe_edits.replace_statement(
            package, "model.py", "TransformerBlock", "forward", assigns(chosen), ""
        )
        moe_edits.add_method(package, "model.py", "TransformerBlock", FFN.format(name=chosen))
    attention_edits.add_param(package, "TransformerBlock", "forward", "tokens: torch.Tensor")


def _thread_loop(package) -> None:
    """`layer(h, ...)` in Model.forward's layer loop gets the token ids last."""

    def rewrite(node):
        if not (
            isinstance(node, cst.Assign) and m.matches(node.value, m.Call(func=m.Name("layer")))
        ):
            return None
        return node.with_changes(value=attention_edits.with_arg(node.value, "tokens"))

    if not run(package, "model.py", moe_edits.InLoop(rewrite)):
        raise EditError("Model.forward: no `h = layer(h, ...)` in the layer loop")


def _rows(package, buffer: str) -> None:
    """The table's row beside the gate weight's, under the same HF prefix."""
    moe_edits.rewrite_row(
        package,
        moe_edits.GATE_WEIGHT,
        lambda row, prefix: [
            row,
            moe_edits.row(f"{prefix}.{buffer}", f"layers.{{}}.moe.gate.{buffer}"),
        ],
    )
