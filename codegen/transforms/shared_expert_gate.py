"""Scale the MoE block's shared expert by a learned sigmoid gate (qwen2_moe)."""

from __future__ import annotations

import json

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditDict, EditError, assigns, is_statement, run

ADD = "out = out + self.shared_experts(x)"
ADD_GATED = "out = out + F.sigmoid(self.shared_expert_gate(x)) * self.shared_experts(x)"
BUILD_GATE = "self.shared_expert_gate = nn.Linear(args.dim, 1, bias=False)"
SHARED_W1 = '"layers.{}.moe.shared_experts.w1.weight"'


class AddSharedExpertGate(Transform):
    """The shared expert's output is multiplied by sigmoid(Linear(dim, 1)(x)), one scalar
    per token, before it joins the routed output (HF qwen2_moe `shared_expert_gate`).

    The gate's checkpoint key sits beside the shared expert, `<moe module>.shared_expert_gate`
    (`mlp.shared_expert_gate.weight`, the name every HF model with this gate uses, whatever
    it calls the shared expert); run after `add_shared_experts`.
    """

    name = "add_shared_expert_gate"

    def apply(self, package, features=None) -> None:
        moe_edits.insert_statements(
            package, "MoE", "__init__", assigns("self.shared_experts"), BUILD_GATE
        )
        moe_edits.replace_statement(
            package, "model.py", "MoE", "forward", is_statement(ADD), ADD_GATED
        )
        key = f"{_moe_module(package)}.shared_expert_gate.weight"
        moe_edits.insert_rows_after(
            package,
            "layers.{}.moe.shared_experts.w2.weight",
            [moe_edits.row(key, "layers.{}.moe.shared_expert_gate.weight")],
        )


def _moe_module(package) -> str:
    """The HF path of the MoE block (`model.layers.{}.mlp`), read from the adapter table's
    shared expert w1 row."""
    found: list[str] = []

    def look(key, value):
        if moe_edits.house_of(value) == SHARED_W1:
            found.append(json.loads(key).rsplit(".", 3)[0])
        return [(key, value)]

    run(package, "state_dict_adapter.py", EditDict("from_hf_map", look))
    if not found:
        raise EditError("from_hf_map has no shared expert row (run add_shared_experts first)")
    return found[0]
