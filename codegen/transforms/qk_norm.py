"""Give q and k an RMSNorm after their projections (per head or over the whole projection)."""

from __future__ import annotations

import libcst as cst

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    InsertStatements,
    assigns,
    code_of,
    expression,
    run,
    statements,
)

KINDS = ("none", "per_head", "full")

# Qwen3: one weight of size head_dim shared by all heads, applied before RoPE
PER_HEAD = """
self.q_norm = RMSNorm(args.head_dim, args.norm_eps)  # over each head, before RoPE
self.k_norm = RMSNorm(args.head_dim, args.norm_eps)
"""

# OLMo2: over the whole projection output (all heads at once), before the head split
FULL = """
self.q_norm = RMSNorm(args.n_heads * args.head_dim, args.norm_eps)  # over all heads at once
self.k_norm = RMSNorm(args.n_kv_heads * args.head_dim, args.norm_eps)
"""

_ROWS = [
    (f"model.layers.{{}}.self_attn.{p}_norm.weight", f"layers.{{}}.attention.{p}_norm.weight")
    for p in "qk"
]


class SetQkNorm(Transform):
    """q/k get an RMSNorm after the projection: `per_head` (over head_dim, qwen3), `full`
    (over the whole q / k projection output, olmo2) or none (a reference's QK-norm removed).

    `per_head` norms each head's vector with one weight shared by all heads, after the view
    to heads and before RoPE; `full` norms the flat projection output before the view. Both
    use `args.norm_eps` (HF passes `rms_norm_eps`). The adapter maps `q_norm` / `k_norm`.
    `on="keys"` builds the keys' norm alone (the target norms no query: `keys_only_norm`).
    """

    name = "set_qk_norm"

    def apply(self, package, features=None, *, kind: str, on: str = "both") -> None:
        if kind not in KINDS:
            raise ValueError(f"qk_norm kind {kind!r}: expected one of {KINDS}")
        if on not in SIDES:
            raise ValueError(f"qk_norm on {on!r}: expected one of {tuple(SIDES)}")
        if "self.q_norm" in package.module("model.py").code:
            _remove(package)
        if kind != "none":
            _add(package, kind, SIDES[on])


SIDES = {"both": "qk", "keys": "k"}


def _add(package, kind: str, sides: str = "qk") -> None:
    built = statements(PER_HEAD if kind == "per_head" else FULL)
    code = "".join(code_of(s) + "\n" for s, p in zip(built, "qk", strict=True) if p in sides)
    # after the output projection: `wo`, or the second stage of a grouped one (`wo_b`)
    output = assigns("self.wo", "self.wo_b")
    run(package, "model.py", InsertStatements("Attention", "__init__", output, code))
    for p in sides:
        norm = expression(f"self.{p}_norm")
        if kind == "per_head":
            # self.wq(x).view(...) -> self.q_norm(self.wq(x).view(...))
            match = _view_of(f"self.w{p}")
        else:
            # self.wq(x) -> self.q_norm(self.wq(x))
            match = edits.call_of(f"self.w{p}")
        edits.replace_expressions(
            package,
            "model.py",
            "Attention",
            "forward",
            match,
            lambda node, norm=norm: cst.Call(func=norm, args=[cst.Arg(node)]),
        )
    adapter = package.module("state_dict_adapter.py").code
    anchor = next(
        (f"layers.{{}}.attention.{key}" for key in _OUTPUT_ROWS if f"attention.{key}" in adapter),
        "layers.{}.attention.wo.weight",
    )
    rows = [row for row, p in zip(_ROWS, "qk", strict=True) if p in sides]
    edits.insert_rows_after(package, anchor, rows)


# the output projection's last row, which the norms' rows follow
_OUTPUT_ROWS = ("wo.bias", "wo.weight", "wo_b.weight")


def _view_of(projection: str):
    def match(node) -> bool:
        return (
            isinstance(node, cst.Call)
            and isinstance(node.func, cst.Attribute)
            and node.func.attr.value == "view"
            and edits.call_of(projection)(node.func.value)
        )

    return match


def _remove(package) -> None:
    edits.remove_statements(
        package, "model.py", "Attention", "__init__", edits.mentions("self.q_norm", "self.k_norm")
    )
    edits.replace_expressions(
        package,
        "model.py",
        "Attention",
        "forward",
        lambda node: edits.call_of("self.q_norm")(node) or edits.call_of("self.k_norm")(node),
        lambda call: call.args[0].value,
    )
    edits.drop_rows(
        package,
        lambda house: house.endswith(("attention.q_norm.weight", "attention.k_norm.weight")),
    )
    package.edit("args.py", _DropCommentsMentioning("q_norm"))


class _DropCommentsMentioning(cst.CSTTransformer):
    """Drop a ModelArgs field's trailing comment that talks about the removed norms."""

    def __init__(self, word: str):
        super().__init__()
        self.word = word

    def leave_SimpleStatementLine(self, original, updated):
        comment = updated.trailing_whitespace.comment
        if comment is not None and self.word in comment.value:
            whitespace = updated.trailing_whitespace.with_changes(
                comment=None, whitespace=cst.SimpleWhitespace("")
            )
            return updated.with_changes(trailing_whitespace=whitespace)
        return updated
