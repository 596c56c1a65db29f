"""Change how the MoE router scores and picks experts (sigmoid, correction bias, groups)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, assigns, dotted, uses

ROUTERS = ("softmax_topk", "sigmoid_topk", "grouped_topk")
SCORES = {
    "softmax": "scores = F.softmax(logits, dim=-1, dtype=torch.float32)",
    "sigmoid": "scores = logits.float().sigmoid()  # each expert scored on its own",
}


def _selection_end(statement) -> bool:
    """Where the selection ends: the renormalisation (`if self.norm_topk_prob:` or
    `weights = weights ...`) or the return."""
    first = statement.body[0] if isinstance(statement, cst.SimpleStatementLine) else None
    return (
        m.matches(statement, m.If(test=dotted("self.norm_topk_prob")))
        or (assigns("weights")(statement) and uses("weights")(first.value))
        or m.matches(first, m.Return())
    )


BIASED = "scores + self.e_score_correction_bias"
# the bias added to the raw logits, which are scored apart (kolibri1)
BIASED_LOGITS = "logits.float() + self.e_score_correction_bias"
PICK = "weights, indices = scores.topk(self.top_k, dim=-1)"
PICK_BIASED = """
# the correction bias steers which experts are picked, the weights stay unbiased
indices = ({biased}).topk(self.top_k, dim=-1)[1]
weights = scores.gather(1, indices)
"""
PICK_GROUPED = """
# only experts of the topk_groups groups whose best two experts score highest compete
choice = ({scores}).view(scores.shape[0], self.n_groups, -1)
group_scores = choice.topk(2, dim=-1)[0].sum(dim=-1)
kept = group_scores.topk(self.topk_groups, dim=-1)[1]
keep = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, kept, True)
choice = choice.masked_fill(~keep[..., None], float("-inf")).flatten(1)
indices = choice.topk(self.top_k, dim=-1)[1]
weights = scores.gather(1, indices)
"""

BIAS_BUFFER = """
# added to the scores to pick experts, never to weight them (load-balancing bias)
self.register_buffer("e_score_correction_bias", torch.zeros({shape}))
"""
BIAS_KEY = "mlp.gate.e_score_correction_bias"  # where deepseek-style checkpoints keep it
GROUP_FIELDS = """
n_groups: int = 1  # experts split into n_groups groups ...
topk_groups: int = 1  # ... and only the best topk_groups groups are searched
"""
GROUP_INIT = "self.n_groups, self.topk_groups = args.n_groups, args.topk_groups"


class SetMoeRouter(Transform):
    """The router's scoring and selection become the target's `router`: `softmax_topk`,
    `sigmoid_topk`, or `grouped_topk` (deepseek's group-limited top-k: only experts of the
    `topk_group` of `n_group` groups whose best two experts score highest compete), scored
    by `score_func` (softmax / sigmoid; default: softmax for softmax_topk, else sigmoid).

    `correction_bias`: a per-expert `e_score_correction_bias` buffer (checkpoint key
    `mlp.gate.e_score_correction_bias`) added to the scores to pick experts; the k weights
    are always the chosen experts' unbiased scores. `bias_on="logits"`: the bias is added
    to the raw logits instead of the scores (the pick only; a sigmoid is monotonic, the sum
    is not). Renormalisation (add_moe's
    `norm_topk_prob`) and scaling (`set_routed_scaling`) after the selection are kept.
    Running it twice with the same parameters gives the same code.
    """

    name = "set_moe_router"

    def apply(
        self,
        package,
        features=None,
        *,
        router: str = "softmax_topk",
        score_func: str | None = None,
        correction_bias: bool = False,
        bias_on: str = "scores",
    ) -> None:
        if router not in ROUTERS:
            raise ValueError(f"router {router!r}: one of {ROUTERS}")
        score_func = score_func or ("softmax" if router == "softmax_topk" else "sigmoid")
        if score_func not in SCORES:
            raise ValueError(f"score_func {score_func!r}: one of {sorted(SCORES)}")
        if not moe_edits.has_class(package, "model.py", "MoE"):
            raise EditError("model.py has no MoE class (run add_moe first)")
        grouped = router == "grouped_topk"
        if bias_on not in ("scores", "logits"):
            raise ValueError(f"bias_on {bias_on!r}: scores or logits")
        biased = BIASED_LOGITS if bias_on == "logits" else BIASED
        if grouped:
            pick = PICK_GROUPED.format(scores=biased if correction_bias else "scores")
        else:
            pick = PICK_BIASED.format(biased=biased) if correction_bias else PICK
        code = SCORES[score_func] + "\n" + pick.strip()
        moe_edits.replace_leading_statements(package, "MoE", "route", _selection_end, code)
        if correction_bias and not _init_defines(package, "e_score_correction_bias"):
            key, rows = bias_layout(features)
            shape = "1, args.num_experts" if rows else "args.num_experts"
            _at_gate(package, BIAS_BUFFER.format(shape=shape))
            moe_edits.insert_rows_after(
                package,
                "layers.{}.moe.gate.weight",
                [
                    moe_edits.row(
                        f"model.layers.{{}}.{key}", "layers.{}.moe.e_score_correction_bias"
                    )
                ],
            )
        if grouped and not _init_defines(package, "n_groups"):
            moe_edits.add_args_fields(package, GROUP_FIELDS)
            moe_edits.add_config_kwargs(
                package, {"n_groups": "hf_config.n_group", "topk_groups": "hf_config.topk_group"}
            )
            _at_gate(package, GROUP_INIT, before=True)


def bias_layout(features) -> tuple[str, bool]:
    """Where the target's checkpoint keeps the selection bias (layer-relative key) and
    whether it is stored as one row `[1, num_experts]`. The key is the analysed bias
    tensor's module key when the checkpoint has it; else the one checkpoint key of the same
    block the conversion renamed that is no projection and no expert (exaone's
    `mlp.e_score_correction_bias` for the router's `mlp.gate.e_score_correction_bias`), or
    of any block when the block has none (kolibri1's `moe.router.expert_bias`).
    Without Features: deepseek's key, one vector."""
    path = features.get("moe.router_bias_key") if features is not None else None
    if not path:
        return BIAS_KEY, False
    shape = tuple(features.get("moe.router_bias_shape") or ())
    rows = len(shape) == 2 and shape[0] == 1
    state = features.state_dict
    module = [_key(k) for k in state.layer_keys]
    disk = [_key(k) for k in state.checkpoint_layer_keys]
    own = [k for k in module if k == path or k.endswith("." + path)]
    if len(own) != 1:
        return BIAS_KEY, rows
    if own[0] in disk:
        return own[0], rows
    block = own[0].split(".")[0]
    renamed = [
        k
        for k in disk
        if k not in module and "{}" not in k and not k.endswith((".weight", ".bias"))
    ]
    moved = [k for k in renamed if k.split(".")[0] == block] or renamed
    return (moved[0] if len(moved) == 1 else own[0]), rows


def _key(annotated: str) -> str:
    """`mlp.gate.weight [layers 1-3]` -> `mlp.gate.weight`."""
    return annotated.split(" [", 1)[0]


def _init_defines(package, name: str) -> bool:
    """`MoE.__init__` already sets `self.<name>` or registers a buffer called `name`."""
    init = m.findall(
        package.module("model.py"),
        m.ClassDef(name=m.Name("MoE")),
    )
    methods = [f for c in init for f in m.findall(c, m.FunctionDef(name=m.Name("__init__")))]
    target = dotted(f"self.{name}")  # alone or in a tuple (`self.a, self.b = ...`)
    attribute = m.AssignTarget(
        target=target | m.Tuple(elements=[m.ZeroOrMore(), m.Element(target), m.ZeroOrMore()])
    )
    buffer = m.Call(
        func=dotted("self.register_buffer"),
        args=[
            m.Arg(m.SimpleString(value=m.MatchIfTrue(lambda v: v[1:-1] == name))),
            m.ZeroOrMore(),
        ],
    )
    return any(m.findall(method, attribute | buffer) for method in methods)


def _at_gate(package, code: str, before: bool = False) -> None:
    moe_edits.insert_statements(
        package, "MoE", "__init__", assigns("self.gate"), code, before=before
    )
