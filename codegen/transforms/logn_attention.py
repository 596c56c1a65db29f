"""Logn attention: the rotated queries scaled by 1 + beta * log(1 + floor((pos + offset) /
period)), a factor that grows with the position (Ministral3), or by the power form
(1 + (pos + offset) / period) ** exponent (beam's NoPE layers)."""

from __future__ import annotations

from codegen.transforms import _attention_edits as edits
from codegen.transforms._rope_edits import add_args_field
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, assigns, run
from codegen.transforms.qk_norm_after_rope import rotates

BETA = "float = 0.0  # queries times 1 + logn_beta * log(1 + floor(position / logn_period))"
PERIOD = "float = 1.0  # positions per step of the logn query scale"
SCALE = (
    "q_scale = (1 + self.args.logn_beta * torch.log1p(torch.floor("
    "{positions} / self.args.logn_period)))[:, None, :, None]"
    "  # (batch, 1, seq, 1): per position, for every head"
)

# the power form, as the source writes it: exp(exponent * log1p((pos + offset) / period))
POWER = (
    "q_scale = torch.exp({exponent} * torch.log1p(({positions}.float() + {offset:g}) / {period}))"
    "[:, None, :, None]  # (batch, 1, seq, 1): (1 + (pos + offset) / period) ** exponent"
)
EXPONENT = "float = 1.0  # queries times (1 + (position + offset) / logn_period) ** this"

INDEX = "torch.arange(tokens.shape[1], device=tokens.device)[None]"
# Llama4 scales the queries of its NoPE layers only (the layers handed no rope tables)
NOPE_ONLY = "if rope is None:  # layers without RoPE only\n    q = {multiply}"
# in the queries' dtype (Ministral3, Llama4), or in fp32 and cast back (beam)
MULTIPLY = "q * q_scale.to(q.dtype)"
MULTIPLY_FP32 = "(q.float() * q_scale).to(q.dtype)"


class LognAttention(Transform):
    """`Model.forward` computes the per-position query scale from `positions` next to the
    RoPE tables and hands it through each block to `Attention.forward`, which multiplies
    the rotated queries by it (in their dtype, as HF does). `logn` is the analysed
    `attention.logn`: `beta` and `period` the `hf_config` expressions the two constants are
    read from (Ministral3: `rope_parameters["llama_4_scaling_beta"]` and
    `["original_max_position_embeddings"]`), `offset` added to the positions first;
    `positions`: `ids` (the position ids) or `index` (the token's index, Llama4), `layers`:
    `all` or `nope` (only the layers without RoPE, Llama4). `form="power"`: `exponent` and
    `period` numbers of the code or `hf_config` expressions, `fp32`: the product taken in
    fp32 and cast back (beam)."""

    name = "logn_attention"

    def apply(self, package, features=None, *, logn: dict | None = None):
        logn = logn or {}
        offset = logn.get("offset") or 0.0
        if logn.get("form", "logn") == "power":
            scale = POWER.format(
                exponent=_constant(package, "logn_exponent", EXPONENT, logn.get("exponent")),
                period=_constant(package, "logn_period", PERIOD, logn.get("period")),
                positions="{positions}",
                offset=offset,
            )
            offset = 0.0  # inside the power form
        elif logn.get("form", "logn") == "logn":
            beta, period = logn.get("beta"), logn.get("period")
            if not (beta and period):
                raise EditError("logn attention needs the config fields of beta and period")
            add_args_field(package, "logn_beta", BETA, beta)
            add_args_field(package, "logn_period", PERIOD, period)
            scale = SCALE
        else:
            raise EditError(f"query scale form {logn.get('form')!r}: logn or power")
        if logn.get("positions", "ids") not in ("ids", "index"):
            raise EditError(f"logn positions {logn.get('positions')!r}: ids or index")
        if logn.get("layers", "all") not in ("all", "nope"):
            raise EditError(f"logn layers {logn.get('layers')!r}: all or nope")
        # `index`: the token's index in the sequence, whatever position ids it is given
        positions = INDEX if logn.get("positions") == "index" else "positions"
        positions = f"({positions} + {offset:g})" if offset else positions
        run(
            package,
            "model.py",
            InsertStatements(
                "Model", "forward", assigns("rope"), scale.format(positions=positions)
            ),
        )
        for cls in ("Attention", "TransformerBlock"):
            edits.add_param(package, cls, "forward", "q_scale: torch.Tensor")
        _pass_along(package, "TransformerBlock", "forward", "self.attention")
        _pass_along(package, "Model", "forward", "layer")
        multiply = MULTIPLY_FP32 if logn.get("fp32") else MULTIPLY
        run(
            package,
            "model.py",
            InsertStatements(
                "Attention",
                "forward",
                rotates,
                NOPE_ONLY.format(multiply=multiply)
                if logn.get("layers") == "nope"
                else f"q = {multiply}",
            ),
        )


def _pass_along(package, class_name: str, method: str, callee: str) -> None:
    """Calls of `callee` in `class_name.method` get `q_scale=q_scale`."""
    edits.replace_expressions(
        package,
        "model.py",
        class_name,
        method,
        edits.call_of(callee),
        lambda call: edits.with_arg(call, "q_scale", keyword="q_scale", before=""),  # last
    )


def _constant(package, field: str, declaration: str, value) -> str:
    """A constant of the scale: the code's own number as it is, or a config read (an
    `hf_config` expression) as the ModelArgs field `field`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}"
    if isinstance(value, str) and value:
        add_args_field(package, field, declaration, value)
        return f"self.args.{field}"
    raise EditError(
        f"the query scale's {field.removeprefix('logn_')} is neither a number nor a config read"
    )
