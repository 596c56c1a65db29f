"""Add learned per-head attention sinks: an extra logit per head in the softmax (gpt_oss)."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    InsertStatements,
    ReplaceStatements,
    assigns,
    run,
)

SINKS = "self.sinks = nn.Parameter(torch.zeros(args.n_heads))  # one learned logit per head"

# HF gpt_oss eager_attention_forward, step for step (it softmaxes in the scores' dtype)
SOFTMAX_WITH_SINKS = """
sinks = self.sinks.view(1, -1, 1, 1).expand(batch, -1, seq, 1)
logits = torch.cat([scores, sinks], dim=-1)
logits = logits - logits.amax(dim=-1, keepdim=True)  # as HF: no overflow in bf16
probs = torch.softmax(logits, dim=-1)[..., :-1].to(v.dtype)  # the sink's share is dropped
"""

_ROW = ("model.layers.{}.self_attn.sinks", "layers.{}.attention.sinks")

# init_weights: the sinks start at zero where HF's `_init_weights` zeroes them (the table's
# default for a house parameter is normal(0, std), as gpt_oss draws them)
ZERO_INIT = """
def init_parameters(self, std: float) -> None:
    nn.init.zeros_(self.sinks)  # HF's _init_weights starts the sinks at zero
"""

# `<init>.zeros_(<module>.sinks)` (init.zeros_, nn.init.zeros_, torch.nn.init.zeros_)
_ZEROS_SINKS = m.Call(
    func=m.Attribute(attr=m.Name("zeros_")),
    args=[m.Arg(m.Attribute(attr=m.Name("sinks"))), m.ZeroOrMore()],
)


class AddAttentionSinks(Transform):
    """Each head gets a learned sink logit `sinks[h]` that joins every query's softmax as an
    extra column and is dropped after it, so a head can attend to "nothing" (gpt_oss).
    `init_weights` starts them as the target's HF `_init_weights` does: zero when it zeroes
    `.sinks`, else normal(0, std).

    SDPA cannot take sinks, so the attention maths is written out, exactly as HF's eager
    path: scaled scores, mask, the sink column concatenated, max subtracted, softmax in the
    scores' dtype, sink column dropped. The adapter maps `self_attn.sinks`.
    """

    name = "add_attention_sinks"

    def apply(self, package, features=None) -> None:
        run(
            package,
            "model.py",
            InsertStatements("Attention", "__init__", assigns("self.wo"), SINKS),
        )
        edits.make_attention_explicit(package)
        run(
            package,
            "model.py",
            ReplaceStatements(
                "Attention",
                "forward",
                assigns("probs", calling="torch.softmax"),
                SOFTMAX_WITH_SINKS,
            ),
        )
        anchor = (
            "attention.wo.bias"
            if "attention.wo.bias" in package.module("state_dict_adapter.py").code
            else "attention.wo.weight"
        )
        edits.insert_rows_after(package, f"layers.{{}}.{anchor}", [_ROW])
        if sinks_start_at_zero(features):
            moe_edits.add_method(package, "model.py", "Attention", ZERO_INIT)


def sinks_start_at_zero(features) -> bool:
    """Whether the target's HF modeling source zeroes the sinks in its weight init."""
    path = getattr(getattr(features, "source", None), "modeling", "")
    if not path or not Path(path).is_file():
        return False
    tree = cst.parse_module(Path(path).read_text())
    return bool(m.findall(tree, _ZEROS_SINKS))
