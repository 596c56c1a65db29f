"""Latent attention normalises the shared rope key before its rotation."""

from __future__ import annotations

import json

import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditDict, EditError, InsertStatements, assigns, run

BUILD = "self.k_pe_norm = RMSNorm(self.rope_dim{eps})  # the shared rope key's norm"
APPLY = "k_pe = self.k_pe_norm(k_pe)  # normed before its rotation"
ANCHOR = "layers.{}.attention.wkv_b.weight"


class KRopeNorm(Transform):
    """The rope key `wkv_a` makes for all heads passes an RMSNorm over its rotated dims
    (`k_pe_norm`) before the rotation, as dots3's `k_rope_only_layernorm`. `norm`: the
    analysis's `attention.k_rope_norm`, the checkpoint's module name and its epsilon
    (`norm_eps`: the config's rms_norm_eps, `default`: 1e-6)."""

    name = "k_rope_norm"

    def apply(self, package, features=None, *, norm: dict) -> None:
        eps = ", args.norm_eps" if norm["eps"] == "norm_eps" else ""
        after_kv_norm = InsertStatements(
            "Attention", "__init__", assigns("self.kv_norm"), BUILD.format(eps=eps)
        )
        run(package, "model.py", after_kv_norm)
        split = InsertStatements("Attention", "forward", _splits_rope_key, APPLY)
        run(package, "model.py", split)
        _adapter_row(package, norm["module"])


def _splits_rope_key(statement) -> bool:
    """`kv, k_pe = self.wkv_a(x).split(...)`: the statement that names the rope key."""
    return m.matches(statement, _SPLIT)


_SPLIT = m.SimpleStatementLine(
    [
        m.Assign(
            targets=[
                m.AssignTarget(
                    m.Tuple(elements=[m.ZeroOrMore(), m.Element(m.Name("k_pe")), m.ZeroOrMore()])
                )
            ]
        )
    ]
)


def _adapter_row(package, module: str) -> None:
    """The norm's checkpoint key beside the attention's (`<attention>.<module>.weight`)."""
    found: list[str] = []

    def look(key, value):
        if value.strip().strip("()").strip() == json.dumps(ANCHOR):
            found.append(json.loads(key))
        return [(key, value)]

    run(package, "state_dict_adapter.py", EditDict("from_hf_map", look))
    if not found:
        raise EditError(f"state_dict_adapter.py has no row for {ANCHOR}")
    attention = found[0].rsplit(".", 2)[0]
    edits.insert_rows_after(
        package,
        ANCHOR,
        [(f"{attention}.{module}.weight", "layers.{}.attention.k_pe_norm.weight")],
    )
