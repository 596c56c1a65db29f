"""Change the dense feed-forward's kind: gated (SwiGLU, GeGLU) or an ungated 2-layer MLP."""

from __future__ import annotations

import json
import re

import libcst as cst
import libcst.matchers as m

from codegen.transforms._ffn_edits import (
    EditCalls,
    Scoped,
    SetClassDocstring,
    activation_of,
    adapter_rows,
    drop_activation_pins,
    house_parameter,
    rename_component,
    retarget_activation_guard,
    rewrite_adapter,
    set_field_comment,
    set_fixed_setting,
)
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    ReplaceStatements,
    SetKeyword,
    assigns,
    code_of,
    dotted,
    run,
)
from codegen.transforms.qkv_bias import set_adapter_rows

GATED = {"swiglu": "SwiGLU", "geglu": "GeGLU", "glu": "GLU"}
UNGATED = {"gelu_mlp": "GELU MLP", "relu2": "ReLU-squared MLP", "mlp": "MLP"}
KINDS = {**GATED, **UNGATED}
_FFN = "feed_forward"


class SetFfnKind(Transform):
    """FeedForward becomes `kind` with HF activation `activation`; adapter rows follow.

    Gated kinds (swiglu, geglu, glu: any other activation) keep w1 (gate), w3 (up) and w2
    (down) and swap the activation on the gate. Ungated kinds (gelu_mlp, relu2) drop w3:
    `w2(act(w1(x)))`, with w1 read from the checkpoint's `mlp.up_proj` (`c_fc`, `fc1`...
    after the key renames).
    `bias` (optional) sets the bias of every projection and its adapter rows, like
    `set_ffn_bias`; biases `set_ffn_bias` added before this step follow the same way.
    The reference's FIXED_SETTINGS `hidden_act` (and `mlp_bias`), or its explicit
    `hidden_act` guard (qwen2/qwen3), accept the new activation; where the analysed target
    reads no config field for its activation (`features.ffn.activation_field` unset: a
    function or module of its own), they go, as no value of hidden_act changes the model.
    """

    name = "set_ffn_kind"

    def apply(
        self, package, features=None, *, kind: str, activation: str, bias: bool | None = None
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"ffn kind {kind!r} is not one of {sorted(KINDS)}")
        activation_of(activation, "x")  # an unknown activation fails before any edit
        run(
            package,
            "model.py",
            EditCalls(
                "FeedForward",
                "forward",
                "F.silu",
                lambda original, updated: activation_of(activation, code_of(updated.args[0].value)),
            ),
        )
        projections = {"w1", "w2", "w3"}
        if kind in UNGATED:
            drop_up_projection(package)
            projections = {"w1", "w2"}
        if bias is not None:
            run(
                package,
                "model.py",
                SetKeyword("FeedForward", "__init__", projections, "bias", str(bias)),
            )
            set_adapter_rows(package, _bias_rows(package, projections), bias)
            set_fixed_setting(package, "mlp_bias", bias)
        run(package, "model.py", SetClassDocstring("FeedForward", _docstring(kind, activation)))
        if features is not None and not features.get("ffn.activation_field"):
            drop_activation_pins(package)  # the target reads no config field for it
        else:
            set_fixed_setting(package, "hidden_act", activation)
            retarget_activation_guard(package, activation)
        set_field_comment(package, "hidden_dim", f"{KINDS[kind]} inner size")


def _docstring(kind: str, activation: str):
    title = KINDS[kind]

    def rewrite(old: str | None) -> str:
        if kind in UNGATED:
            return f"{title}: w2({activation}(w1(x)))."
        if old and ":" in old:  # keep the rest (a fused gate/up) and name the new activation
            formula = old.split(":", 1)[1]
            formula = re.sub(r"\w+\((w1\(x\)|gate)\)", rf"{activation}(\1)", formula, count=1)
            return f"{title}:{formula}"
        return f"{title}: w2({activation}(w1(x)) * w3(x))."

    return rewrite


def drop_up_projection(package) -> None:
    """`w2(act(w1(x)) * w3(x))` -> `w2(act(w1(x)))`; w3 and its rows go, w1 reads up_proj."""
    rows = adapter_rows(package)
    if not any(house_parameter(house, f"{_FFN}.w3") for _, house in rows):
        raise EditError("the adapter has no feed_forward.w3 rows (gate and up fused?)")
    drop_w3 = ReplaceStatements("FeedForward", "__init__", assigns("self.w3"), "")
    run(package, "model.py", drop_w3)
    run(package, "model.py", _DropGateProduct("FeedForward", "forward"))

    def rewrite(hf: str, house: str | None):
        if house_parameter(house, f"{_FFN}.w3"):
            return []
        if house_parameter(house, f"{_FFN}.w1"):
            return [(rename_component(hf, "gate_proj", "up_proj"), house)]
        return [(hf, house)]

    rewrite_adapter(package, rewrite)


class _DropGateProduct(Scoped):
    """`a * self.w3(x)` -> `a`."""

    def leave_BinaryOperation(self, original, updated):
        if (
            self.in_scope()
            and isinstance(original.operator, cst.Multiply)
            and m.matches(original.right, m.Call(func=dotted("self.w3")))
        ):
            self.hits += 1
            return updated.left
        return updated


def _bias_rows(package, projections: set[str]) -> list[tuple[str, str]]:
    """A `.bias` row beside every weight row of the given FeedForward projections."""
    rows = []
    for hf, house in adapter_rows(package):
        if any(house_parameter(house, f"{_FFN}.{p}") == "weight" for p in projections):
            bias_hf = hf.removesuffix(".weight") + ".bias"
            bias_house = house.removesuffix(".weight") + ".bias"
            rows.append((json.dumps(bias_hf), json.dumps(bias_house)))
    return rows
