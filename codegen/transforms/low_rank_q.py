"""Up-project the query from a normed latent, then norm each head without a scale."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    ReplaceStatements,
    dotted,
    expression,
    run,
    sets,
)
from codegen.transforms.norm_weight import PLAIN_RMSNORM

PROJECTIONS = (
    "# the query up-projected from a normed latent of q_lora_rank features, each head normed\n"
    "self.wq_a = nn.Linear(args.dim, args.q_lora_rank, bias=False)\n"
    "self.q_a_norm = RMSNorm(args.q_lora_rank, args.q_norm_eps)\n"
    "self.wq_b = nn.Linear(args.q_lora_rank, args.n_heads * args.head_dim, bias=False)\n"
    "self.q_b_norm = PlainRMSNorm(args.head_dim, args.q_norm_eps)\n"
)

# the heads' norm where HF multiplies q by its inverse rms rounded to q's dtype
ROUNDED_RMSNORM = '''
class RoundedRMSNorm(nn.Module):
    """RMSNorm without a learned scale: the inverse root mean square, computed in fp32, is
    rounded to the input's dtype and multiplies the input in it."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return x * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps).to(x.dtype)
'''

FIELDS = (
    "# the query's latent width (wq_a -> q_a_norm -> wq_b) and the eps of its two norms\n"
    "q_lora_rank: int = 0\n"
    "q_norm_eps: float = 1e-6\n"
)

# `self.wq(...).view(...)`: the query projection viewed to heads
_VIEWED = m.Call(func=m.Attribute(value=m.Call(func=dotted("self.wq")), attr=m.Name("view")))


def _call(func: str, arg: cst.BaseExpression) -> cst.Call:
    return cst.Call(func=expression(func), args=[cst.Arg(arg)])


def _latent_query(view: cst.Call) -> cst.Call:
    """`self.wq(x).view(...)` -> the latent path, each head normed after the view:
    `self.q_b_norm(self.wq_b(self.q_a_norm(self.wq_a(x))).view(...))`."""
    projected = view.func.value
    latent = projected.with_changes(func=expression("self.wq_a"))
    up = _call("self.wq_b", _call("self.q_a_norm", latent))
    return _call("self.q_b_norm", view.with_changes(func=view.func.with_changes(value=up)))


class LowRankQ(Transform):
    """`self.wq` -> `wq_a` to `q_lora_rank` features, normed by `q_a_norm` (a weighted
    RMSNorm), up-projected to the heads by `wq_b`, and each head normed by `q_b_norm` (a
    weightless RMS norm; `RoundedRMSNorm` where HF's multiplies q by its inverse rms rounded
    to q's dtype, `b_norm_rounded`) after the view to heads: DeepSeek-V4's q_a_proj -> q_a_norm ->
    q_b_proj -> q_b_norm, its keys and values not latent.

    `ModelArgs` maps `q_lora_rank` and `q_norm_eps` from the config fields the analysis read
    (`rank`, `eps`); the adapter maps the two HF projections and the latent's norm (`a`,
    `b`, `a_norm`) in the query projection's place (neither projection has a bias; the
    heads' norm has no tensor).
    """

    name = "low_rank_q"

    def apply(self, package, features=None, *, low_rank: dict) -> None:
        norm, definition = (
            ("RoundedRMSNorm", ROUNDED_RMSNORM)
            if low_rank.get("b_norm_rounded")
            else ("PlainRMSNorm", PLAIN_RMSNORM)
        )
        if not edits.has_definition(package, "model.py", norm):
            edits.insert_definition(package, "model.py", definition, before="Attention")
        projections = PROJECTIONS.replace("PlainRMSNorm", norm)
        run(
            package,
            "model.py",
            ReplaceStatements("Attention", "__init__", sets("self.wq"), projections),
        )
        edits.replace_expressions(
            package,
            "model.py",
            "Attention",
            "forward",
            lambda node: m.matches(node, _VIEWED),
            _latent_query,
        )
        edits.add_args_field(package, FIELDS)
        edits.add_hf_kwarg(package, f"q_lora_rank=hf_config.{low_rank['rank']}")
        edits.add_hf_kwarg(package, f"q_norm_eps=hf_config.{low_rank['eps']}")
        # the query projection's rows -> the latent path's (no bias; the heads' norm holds none)
        edits.split_projection_rows(
            package,
            "wq",
            [
                (low_rank[hf], ours)
                for hf, ours in (("a", "wq_a"), ("a_norm", "q_a_norm"), ("b", "wq_b"))
            ],
        )
