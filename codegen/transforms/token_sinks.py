"""Per-token attention sinks: each query's own sink logit per head, projected from its input
(inkling2's `sink_proj`), joins its softmax as an extra column."""

from __future__ import annotations

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    ReplaceStatements,
    assigns,
    run,
)
from codegen.transforms.relative_position_bias import _attention_prefix

PROJECTION = """
# each token's sink logit, one per head
self.wsink = nn.Linear(args.dim, self.n_heads, bias=False)
"""

# HF's eager attention with per-token sinks: the sink column joins the masked scores, the
# softmax runs in fp32 and the sink's share is dropped
SOFTMAX_WITH_TOKEN_SINKS = """
sinks = self.wsink(x).transpose(1, 2).unsqueeze(-1)  # (batch, heads, seq, 1)
logits = torch.cat([scores, sinks], dim=-1).float()
probs = torch.softmax(logits, dim=-1)[..., :-1].to(q.dtype)  # the sink's share is dropped
"""


class TokenSinks(Transform):
    """Each query gets its own sink logit per head, `wsink(x)` (a projection of the
    attention's input to one output per head), that joins its softmax as an extra column
    and is dropped after it, so a token decides for itself how much of its attention goes
    to "nothing". The attention maths is written out (SDPA takes no sinks): scaled scores,
    mask, the sink column concatenated, softmax in fp32 as HF's eager path, the sink column
    dropped. `projection` is the analysis's `attention.sink_projection`, the HF name of the
    projection, which the adapter maps to `wsink`."""

    name = "token_sinks"

    def apply(self, package, features=None, *, projection: str | None = None) -> None:
        if not projection or projection == "other":
            raise EditError("token_sinks: the analysed sink projection of the attention's input")
        run(
            package,
            "model.py",
            InsertStatements("Attention", "__init__", assigns("self.wo"), PROJECTION),
        )
        edits.make_attention_explicit(package)
        run(
            package,
            "model.py",
            ReplaceStatements(
                "Attention",
                "forward",
                assigns("probs", calling="torch.softmax"),
                SOFTMAX_WITH_TOKEN_SINKS,
            ),
        )
        prefix = _attention_prefix(package)
        edits.insert_rows_after(
            package,
            "layers.{}.attention.wo.weight",
            [(f"{prefix}.{projection}.weight", "layers.{}.attention.wsink.weight")],
        )
