"""Fuse the q, k and v projections into one `wqkv` whose output is split (phi3 `qkv_proj`)."""

from __future__ import annotations

import json

import libcst as cst

from codegen.transforms import _attention_edits as edits
from codegen.transforms._kv_heads import set_kv_heads_from_source
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditDict,
    EditError,
    InsertStatements,
    ReplaceStatements,
    assigns,
    calls,
    run,
)
from codegen.transforms.transposed_linears import AfterFromHfMap

WQKV = (
    "self.wqkv = nn.Linear("
    "args.dim, (args.n_heads + 2 * args.n_kv_heads) * args.head_dim, bias={bias})"
)

# gpt-fast style: one matmul, then q | k | v along the last dim (HF's concatenated layout);
# the sizes come from the output's width, so a rank holding its heads' rows splits its own
SPLIT = """
qkv = self.wqkv(x)
kv_size = qkv.shape[-1] // (self.n_heads // self.n_kv_heads + 2)
q, k, v = qkv.split([qkv.shape[-1] - 2 * kv_size, kv_size, kv_size], dim=-1)
"""


# rows grouped per kv head (each group: its q heads, then one k and one v head), or per head
# (q, k, v of one head; the same code with groups of one): split on a kv-head axis (-1: a
# rank holding its kv heads' groups views its own), so the checkpoint's tensor loads as it is;
# each part's (kv head, group) axes merge into heads: a view for groups of one (k, v, and q
# with one query head per kv head), a copy only for q's groups of several
GROUPED_SPLIT = """
group = self.n_heads // self.n_kv_heads
qkv = self.wqkv(x).view(batch, seq, -1, group + 2, self.head_dim)
q, k, v = (part.flatten(2, 3) for part in qkv.split([group, 1, 1], dim=3))
"""
# rows in blocks, each q, k, v (codegen's 4 blocks of q | v | k): the adapter regroups them
# to [q | k | v] on load (and back on save), so the model splits the plain layout
LAYOUTS = {
    "contiguous": SPLIT,
    "grouped": GROUPED_SPLIT,
    "interleaved": GROUPED_SPLIT,
    "blocked": SPLIT,
}
ROW_BLOCKS = (
    "# the checkpoint's rows are {blocks} blocks of {order}: regrouped on load and on save\n"
)


class FuseQkv(Transform):
    """q/k/v come from one projection `wqkv`, split after the matmul in the checkpoint's row
    layout: `contiguous` (all q heads, then k, then v, as phi3's `qkv_proj`), `grouped` (per
    kv head: its q heads, then k, then v) or `interleaved` (per head: q, k, v). The adapter
    maps the single fused key (and its bias when the projections have one) instead of three.
    `blocked`: the checkpoint's rows are `blocks` blocks, each q, k and v in `order` (codegen:
    4, "qvk"); the adapter's `row_blocks` regroups them to [q | k | v].

    `hf_name` is the fused module's name in the checkpoint (`qkv_proj` for phi3). Where the
    target's attention computes its kv head count from switches (falcon's multi_query),
    `from_hf_config` computes it the same way (`_kv_heads`).
    """

    name = "fuse_qkv"

    def apply(
        self,
        package,
        features=None,
        *,
        hf_name: str = "qkv_proj",
        layout: str = "contiguous",
        blocks: int = 1,
        order: str = "qkv",
    ) -> None:
        if layout not in LAYOUTS:
            known = ", ".join(LAYOUTS)
            raise EditError(f"fused q/k/v row layout {layout!r} is not one of {known}")
        if layout == "blocked" and (sorted(order) != list("kqv") or blocks < 1):
            raise EditError(
                f"blocked q/k/v rows need blocks >= 1 and an order of q, k, v: {order!r}"
            )
        init = edits.find_method(package.module("model.py"), "Attention", "__init__")
        wq = next((s for s in init.body.body if assigns("self.wq")(s)), None) if init else None
        if wq is None:
            raise EditError("model.py: Attention.__init__ builds no self.wq")
        bias = edits.arg_value(wq.body[0].value, "bias") or "True"
        run(
            package,
            "model.py",
            ReplaceStatements("Attention", "__init__", assigns("self.wq"), WQKV.format(bias=bias)),
        )
        run(
            package,
            "model.py",
            ReplaceStatements("Attention", "__init__", assigns("self.wk", "self.wv"), ""),
        )
        run(
            package,
            "model.py",
            InsertStatements(
                "Attention", "forward", _first_projection, LAYOUTS[layout], before=True
            ),
        )
        for p in "qkv":
            edits.replace_expressions(
                package,
                "model.py",
                "Attention",
                "forward",
                edits.call_of(f"self.w{p}"),
                lambda node, p=p: cst.Name(p),
            )
        parts = _fuse_rows(package, hf_name)
        if layout == "blocked":
            rows = ", ".join(
                f'"layers.{{}}.attention.wqkv.{part}": ({blocks}, "{order}")' for part in parts
            )
            note = ROW_BLOCKS.format(blocks=blocks, order=" | ".join(order))
            run(package, "state_dict_adapter.py", AfterFromHfMap(f"{note}row_blocks = {{{rows}}}"))
        set_kv_heads_from_source(package, features)


_first_projection = calls("self.wq")


def _fuse_rows(package, hf_name: str) -> list[str]:
    """Rows of wq/wk/wv (weight, bias) become one row of wqkv at wq's place; returns the
    parts fused (weight, and bias where the projections have one)."""
    found = []

    def rewrite(key, value):
        house = json.loads(value) if value != "None" else ""
        for part in ("weight", "bias"):
            if house == f"layers.{{}}.attention.wq.{part}":
                hf = json.loads(key).rsplit(".", 2)[0] + f".{hf_name}.{part}"
                found.append(part)
                return [(json.dumps(hf), json.dumps(f"layers.{{}}.attention.wqkv.{part}"))]
            if house in (f"layers.{{}}.attention.wk.{part}", f"layers.{{}}.attention.wv.{part}"):
                return []
        return [(key, value)]

    run(package, "state_dict_adapter.py", EditDict("from_hf_map", rewrite))
    if "weight" not in found:
        raise EditError("state_dict_adapter.py has no row for layers.{}.attention.wq.weight")
    return found
