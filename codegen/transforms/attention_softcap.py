"""Soft-cap the attention scores with tanh before masking (gemma2)."""

from __future__ import annotations

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    InsertStatements,
    assigns,
    run,
)

FIELD = """
# Attention scores become tanh(scores / cap) * cap before masking and softmax; None: no cap.
attn_softcap: float | None = 50.0
"""

CAP = """
if self.softcap is not None:  # tanh in place: one scores-sized temporary, not two
    scores = (scores / self.softcap).tanh_()
    scores = scores * self.softcap
"""


class AddAttentionSoftcap(Transform):
    """Attention scores are soft-capped, `tanh(scores / cap) * cap`, after scaling and
    before the mask and softmax (gemma2's `attn_logit_softcapping`).

    SDPA cannot cap, so the attention maths is written out (as HF's eager path, which is the
    only one HF runs for these models: fp32 softmax, cast back to the query's dtype).
    """

    name = "add_attention_softcap"

    def apply(self, package, features=None, *, hf_field: str = "attn_logit_softcapping"):
        edits.add_args_field(package, FIELD, f"attn_softcap=hf_config.{hf_field}")
        run(
            package,
            "model.py",
            InsertStatements(
                "Attention",
                "__init__",
                assigns("self.head_dim"),
                "self.softcap = args.attn_softcap",
            ),
        )
        edits.make_attention_explicit(package)
        run(
            package,
            "model.py",
            InsertStatements("Attention", "forward", assigns("scores"), CAP),
        )
