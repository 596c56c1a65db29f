"""Latent attention scales its normed latents by sqrt(hidden / rank) before they go up."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._ffn_edits import set_field_comment
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    ReplaceStatements,
    assigns,
    is_statement,
    run,
)
from codegen.transforms.indexed_attention import KeepElse

# latent -> (its norm, its rank field, the scale attribute)
LATENTS = {
    "q": ("q_norm", "q_lora_rank", "q_scale"),
    "kv": ("kv_norm", "kv_lora_rank", "kv_scale"),
}
# the reference's optional query latent: a single wq where q_lora_rank is None
Q_LOW_RANK = "self.q_lora_rank is None"
Q_LINE = "q = self.wq(x) if self.q_lora_rank is None else self.wq_b(self.q_norm(self.wq_a(x)))"
Q_LATENT = "q = self.wq_b(self.q_norm(self.wq_a(x)))"
SCALE = "self.{scale} = (args.dim / args.{rank}) ** 0.5  # the normed latent's scale"


class LatentScale(Transform):
    """The normed q latent (`which` "q" or "q_kv") and kv latent ("kv", "q_kv") are
    multiplied by sqrt(dim / rank) before their up-projections (and the indexer, which reads
    the q latent), as dots3 rescales them: `self.q_norm(...) * self.q_scale`, the scale
    kept beside the norm in `Attention.__init__`."""

    name = "latent_scale"

    def apply(self, package, features=None, *, which: str) -> None:
        sides = {"q": ("q",), "kv": ("kv",), "q_kv": ("q", "kv")}.get(which)
        if sides is None:
            raise ValueError(f"latent_scale which={which!r}: one of q, kv, q_kv")
        for side in sides:
            norm, rank, scale = LATENTS[side]
            code = SCALE.format(scale=scale, rank=rank)
            step = InsertStatements("Attention", "__init__", assigns(f"self.{norm}"), code)
            if side == "q" and not _q_rank_switched(features):
                require_q_latent(package)
            if not run(package, "model.py", step, required=False):
                raise EditError(
                    f"Attention builds self.{norm} only under a condition (an optional"
                    f" {side} latent): no scale to keep beside it"
                )
            edits.replace_expressions(
                package,
                "model.py",
                "Attention",
                "forward",
                lambda node, norm=norm: m.matches(
                    node,
                    m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name(norm))),
                ),
                lambda call, scale=scale: cst.BinaryOperation(
                    call, cst.Multiply(), edits.expression(f"self.{scale}")
                ),
            )


def _q_rank_switched(features) -> bool:
    """Whether the target's HF attention branches on the query latent's rank (DeepSeek's
    `q_lora_rank is None`: one q_proj); without the switch its queries always go through
    the latent (LongCat-Flash). Without Features the reference's branch is kept."""
    if features is None:
        return True
    return any(s.field == "q_lora_rank" for s in getattr(features, "switches", ()) or ())


def require_q_latent(package) -> None:
    """The reference's optional query latent becomes the only query path: wq_a -> q_norm ->
    wq_b, no single wq (a no-op where it already is)."""
    run(package, "model.py", KeepElse("Attention", "__init__", Q_LOW_RANK), required=False)
    edits.remove_statements(
        package, "model.py", "Attention", "__init__", assigns("self.q_lora_rank"), required=False
    )
    run(
        package,
        "model.py",
        ReplaceStatements("Attention", "forward", is_statement(Q_LINE), Q_LATENT),
        required=False,
    )
    set_field_comment(package, "q_lora_rank", "the query latent (wq_a -> q_norm -> wq_b)")
    edits.drop_docstring_paragraphs(package, "state_dict_adapter.py", ("q_lora_rank is None",))
