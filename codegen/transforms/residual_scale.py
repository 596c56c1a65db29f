"""Scale each sublayer's output before its residual add (granite `residual_multiplier`), or
both operands of the add by numbers of the depth (a depth-scaled residual sum)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits
from codegen.transforms._hf_source import (
    assigned_values,
    config_field,
    hf_config_read,
    hf_source,
    leading_chain,
    parsed,
    with_hf_config,
)
from codegen.transforms._rope_edits import (
    add_args_field,
    insert_after,
    is_super_init,
    rewrite_expressions,
)
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    add_import,
    calls_super_init,
    expression,
    findall,
    run,
)


class ResidualScale(Transform):
    """Every `residual + sublayer(...)` in `TransformerBlock.forward` becomes
    `residual + sublayer(...) * self.<field>`, the block reading the ModelArgs field `field`
    (named as the HF config field, granite "residual_multiplier").

    Without `field` it is read from the HF source's `residual + hidden_states * <x>`.

    `form="depth_scaled"` (the analysed `block.residual_scale`): the stream is a sum whose
    k-th term (the embedding the first) enters times 1/sqrt(k) and the sum so far times
    sqrt((k - 1) / k); the block computes the four factors from its layer index.

    `form="learned_stream"`: the stream enters each add times a learned per-channel vector
    of the block's (`x = w * x + sublayer(...)`, Doge), starting at ones; `weights` are the
    HF layer attributes of the attention's and the FFN's vectors, which the adapter maps.
    """

    name = "residual_scale"

    def apply(
        self,
        package,
        features=None,
        *,
        field: str | None = None,
        form: object = True,
        weights: tuple[str, str] | None = None,
    ) -> None:
        if form == "depth_scaled":
            _depth_scaled(package)
            return
        if form == "learned_stream":
            if not weights or len(weights) != 2:
                raise EditError("learned_stream: the HF layer attributes of both weights")
            _learned_stream(package, weights)
            return
        if form is not True:
            raise EditError(
                f"residual scale {form!r}: a config multiplier, depth_scaled or learned_stream"
            )
        field, value = (field, f"hf_config.{field}") if field else detect(features)
        add_args_field(
            package,
            field,
            "float = 1.0  # sublayer outputs scaled by this before the residual add",
            value,
        )
        if m.findall(expression(value), m.Call(func=m.Name("sqrt"))):
            add_import(package, "args.py", "math", "sqrt")
        insert_after(
            package,
            "model.py",
            "TransformerBlock",
            "__init__",
            is_super_init,
            f"self.{field} = args.{field}",
        )
        scale = expression(f"self.{field}")

        def rewrite(node):
            if not _residual_add(node):
                return None
            scaled = cst.BinaryOperation(node.right, cst.Multiply(), scale)
            return node.with_changes(right=scaled)

        rewrite_expressions(package, "model.py", "TransformerBlock", "forward", rewrite)


# the attention's output is term k of the residual sum (the embedding is term 1), the FFN's
# term k + 1: each enters times 1/sqrt(k), the sum so far times sqrt((k - 1) / k)
DEPTH_SCALES = """
k = 2 * {layer_id} + 2  # the attention's term of the residual sum (the embedding: 1)
self.attention_scale, self.attention_stream_scale = 1 / sqrt(k), sqrt((k - 1) / k)
self.ffn_scale, self.ffn_stream_scale = 1 / sqrt(k + 1), sqrt(k / (k + 1))
"""

# `x + <sublayer>(...)`: a block's residual add
_RESIDUAL_ADD = m.BinaryOperation(left=m.Name(), operator=m.Add(), right=m.Call())


def _residual_add(node: cst.CSTNode) -> bool:
    return m.matches(node, _RESIDUAL_ADD)


_ATTENTION_CALL = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("attention")))


def _depth_scaled(package) -> None:
    """`x + sublayer(...)` in `TransformerBlock.forward` becomes `sublayer(...) *
    self.<s>_scale + x * self.<s>_stream_scale`, s the attention or the FFN (the sum of
    its own term of the stream)."""
    layer_id = _attention_edits.ensure_layer_id(package)
    run(
        package,
        "model.py",
        InsertStatements(
            "TransformerBlock",
            "__init__",
            calls_super_init,
            DEPTH_SCALES.format(layer_id=layer_id),
        ),
    )
    add_import(package, "model.py", "math", "sqrt")

    def rewrite(node):
        if not _residual_add(node):
            return None
        sublayer = "attention" if m.findall(node.right, _ATTENTION_CALL) else "ffn"
        return cst.BinaryOperation(
            cst.BinaryOperation(node.right, cst.Multiply(), expression(f"self.{sublayer}_scale")),
            cst.Add(),
            cst.BinaryOperation(
                node.left, cst.Multiply(), expression(f"self.{sublayer}_stream_scale")
            ),
        )

    if rewrite_expressions(package, "model.py", "TransformerBlock", "forward", rewrite) != 2:
        raise EditError("TransformerBlock.forward: not one residual add per sublayer")


# HF granite: `hidden_states = residual + hidden_states * self.residual_multiplier`
_HF_SCALED_ADD = m.BinaryOperation(
    left=m.Name("residual"),
    operator=m.Add(),
    right=m.BinaryOperation(left=m.Name("hidden_states"), operator=m.Multiply()),
)


def detect(features) -> tuple[str, str]:
    """(ModelArgs field, its `from_hf_config` value): a config field read as is, or the
    expression over config fields HF assigns the multiplier from (MiniCPM3's
    `self.residual_scale = config.scale_depth / math.sqrt(config.num_hidden_layers)`)."""
    source = hf_source(features)
    multiplier = _hf_multiplier(source)
    if multiplier is None:
        raise EditError("no `residual + hidden_states * <config value>` in the HF source")
    attr = multiplier[1] if len(multiplier) == 2 and multiplier[0] == "self" else None
    assigned = next(iter(assigned_values(source, attr)), None) if attr else None
    # `self.x = config.field` as a whole (not the first operand of a longer expression)
    if assigned is None or config_field(assigned) is not None:
        field = hf_config_read(source, ".".join(multiplier))
        if field is not None:
            return field, f"hf_config.{field}"
    if assigned is not None:
        value = with_hf_config(assigned)
        if _over_config(value):
            return attr, value
    raise EditError("no `residual + hidden_states * <config value>` in the HF source")


def _hf_multiplier(source: str) -> list[str] | None:
    """The dotted name under `self` or `config` the first `residual + hidden_states * <x>`
    of the HF source starts its multiplier with, as its parts."""
    for add in findall(parsed(source), _HF_SCALED_ADD):
        chain = leading_chain(add.right.right)
        if chain and chain[0] in ("self", "config") and len(chain) > 1:
            return chain
    return None


def _over_config(value: str) -> bool:
    """`value` parses and reads only `hf_config.<field>`, numbers and `sqrt`."""
    import ast

    try:
        tree = ast.parse(value, mode="eval")
    except SyntaxError:
        return False
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return names <= {"hf_config", "sqrt"} and "hf_config" in names


# the stream's learned per-channel weights, one per residual add (HF starts them at ones)
STREAM_WEIGHTS = """
self.attention_residual = nn.Parameter(torch.ones(args.dim))  # stream weight, attention add
self.ffn_residual = nn.Parameter(torch.ones(args.dim))  # stream weight, FFN add
"""
STREAM_WEIGHTS_INIT = """
def init_parameters(self, std: float) -> None:
    nn.init.ones_(self.attention_residual)  # HF's _init_weights: the stream passes as it is
    nn.init.ones_(self.ffn_residual)
"""


def _learned_stream(package, weights: tuple[str, str]) -> None:
    """`x + sublayer(...)` in `TransformerBlock.forward` becomes `self.<s>_residual * x +
    sublayer(...)`, s the attention or the FFN; the vectors start at ones and the adapter
    maps HF's `model.layers.{}.<weight>` to them."""
    from codegen.transforms import _moe_edits

    run(
        package,
        "model.py",
        InsertStatements("TransformerBlock", "__init__", calls_super_init, STREAM_WEIGHTS),
    )

    def rewrite(node):
        if not _residual_add(node):
            return None
        sublayer = "attention" if m.findall(node.right, _ATTENTION_CALL) else "ffn"
        weighted = cst.BinaryOperation(
            expression(f"self.{sublayer}_residual"), cst.Multiply(), node.left
        )
        return node.with_changes(left=weighted)

    if rewrite_expressions(package, "model.py", "TransformerBlock", "forward", rewrite) != 2:
        raise EditError("TransformerBlock.forward: not one residual add per sublayer")
    _moe_edits.add_method(package, "model.py", "TransformerBlock", STREAM_WEIGHTS_INIT)
    _attention_edits.insert_rows_after(
        package,
        "layers.{}.attention_norm.weight",
        [
            (f"model.layers.{{}}.{weights[0]}", "layers.{}.attention_residual"),
            (f"model.layers.{{}}.{weights[1]}", "layers.{}.ffn_residual"),
        ],
    )
