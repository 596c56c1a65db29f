"""Turn deepseek_v3's sigmoid Gate into a softmax router (DeepSeek-V2's `topk_method`)."""

from __future__ import annotations

from pathlib import Path

import libcst as cst

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._prose_edits import drop_prose
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, code_of, expression, run, statements

GROUPED_DOC = (
    "Softmax router in fp32. With group_limited_greedy, experts are picked only inside the\n"
    "    best `topk_groups` of `n_groups` groups, a group scoring its best expert (greedy is\n"
    "    one group). The k weights are the chosen softmax scores times `route_scale`{norm}."
)
PLAIN_DOC = "Softmax router in fp32: the top-k softmax scores times `route_scale`{norm}."
BIASED_DOC = (
    "Softmax router in fp32. A per-expert correction bias shifts which experts are\n"
    "    *chosen* but not their weights: the chosen softmax scores times `route_scale`{norm}."
)

GATE = '''
class Gate(nn.Module):
    """{doc}"""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.top_k = args.n_activated_experts
{init}
        self.route_scale = args.route_scale
        self.weight = nn.Parameter(torch.empty(args.n_routed_experts, args.dim))
{bias}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (..., dim) -> router logits (tokens, experts), weights and indices (tokens, k)."""
        logits = F.linear(x.reshape(-1, x.shape[-1]).float(), self.weight.float())
{select}
{norm}
        return logits, weights * self.route_scale, indices
'''
GROUPED_INIT = (
    "        self.n_groups, self.topk_groups = args.n_expert_groups, args.n_limited_groups"
)
NORM_INIT = "        self.norm_topk_prob = args.norm_topk_prob"
GROUPED_SELECT = """
        scores = logits.softmax(dim=-1).view(logits.shape[0], self.n_groups, -1)
        top_groups = scores.amax(dim=-1).topk(self.topk_groups, dim=-1, sorted=False)[1]
        keep = torch.zeros_like(scores[..., 0], dtype=torch.bool).scatter_(1, top_groups, True)
        scores = scores.masked_fill(~keep[..., None], 0.0).flatten(1)
        weights, indices = scores.topk(self.top_k, dim=-1, sorted=False)
"""
BIAS_INIT = (
    '        self.register_buffer("e_score_correction_bias", torch.zeros(args.n_routed_experts))'
)
BIASED_SELECT = """
        scores = logits.softmax(dim=-1)
        indices = (scores + self.e_score_correction_bias).topk(self.top_k, dim=-1, sorted=False)[1]
        weights = scores.gather(1, indices)  # from the unbiased scores
"""
PLAIN_SELECT = """
        scores = logits.softmax(dim=-1)
        weights, indices = scores.topk(self.top_k, dim=-1, sorted=False)
"""
NORM = """
        if self.norm_topk_prob:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
"""

# ModelArgs fields whose comments describe the sigmoid router
FIELDS = {
    "n_expert_groups": (
        "n_expert_groups: int = 1  # experts from the best n_limited_groups only; greedy: 1 group"
    ),
    "n_limited_groups": "n_limited_groups: int = 1",
    "norm_topk_prob": "norm_topk_prob: bool = False  # renormalise the k softmax scores to sum 1",
    "route_scale": "route_scale: float = 1.0  # routed_scaling_factor, the k weights' multiplier",
}
GROUP_KWARGS = {
    "n_expert_groups": "hf_config.n_group if _grouped(hf_config) else 1",
    "n_limited_groups": "hf_config.topk_group if _grouped(hf_config) else 1",
}
GROUPED = '''
def _grouped(hf_config) -> bool:
    """group_limited_greedy picks experts from the best groups; greedy, from one group of all."""
    return hf_config.topk_method == "group_limited_greedy"
'''
# _check_supported: the grouped checks hold only where groups are used
GROUP_CHECKS = """
if hf_config.topk_method not in ("greedy", "group_limited_greedy"):
    fail(f"topk_method {hf_config.topk_method!r} is not supported")
if _grouped(hf_config):
    experts, groups = hf_config.n_routed_experts, hf_config.n_group
    if groups is None or hf_config.topk_group is None:
        fail("group_limited_greedy needs n_group and topk_group")
    if experts % groups:
        fail(f"n_routed_experts={experts} must split into n_group={groups} groups")
    if not hf_config.topk_group <= groups:
        fail(f"topk_group={hf_config.topk_group} > n_group={groups}")
    if hf_config.num_experts_per_tok > hf_config.topk_group * experts // groups:
        fail(f"num_experts_per_tok={hf_config.num_experts_per_tok} > experts in those groups")
"""
NONE_CHECK = """
for name in ("num_experts_per_tok", "first_k_dense_replace"):
    if getattr(hf_config, name) is None:
        fail(f"{name}=None is not supported (HF's model needs a value)")
"""
# the reference's group checks: from its None check up to the first check about something else
GROUP_CHECKS_START = "for name in ("
GROUP_CHECKS_END = "rope ="


class SetSoftmaxGate(Transform):
    """The Gate (deepseek_v3's sigmoid router) scores experts with a softmax, without
    correction bias as DeepSeek-V2's router, or with one (`correction_bias`, LongCat-Flash's
    `e_score_correction_bias`: it shifts the pick only, in the model's dtype as HF keeps it).

    Read from the target's modeling source (the analyzer's Features do not carry them):
    whether the router has DeepSeek-V2's `topk_method` switch (`group_limited_greedy`:
    experts only from the `topk_group` groups whose best expert scores highest; `greedy`:
    plain top-k, i.e. one group, so `from_hf_config` maps greedy to one group), and whether
    it reads `norm_topk_prob` at all (DeepSeek-V2's does not: HF never renormalises there).
    The weights are the chosen softmax scores times `route_scale`. Running it twice with
    the same parameters gives the same code.
    """

    name = "set_softmax_gate"

    def apply(
        self,
        package,
        features=None,
        *,
        grouped: bool | str = "auto",
        renormalize: bool | str = "auto",
        correction_bias: bool = False,
    ) -> None:
        if not moe_edits.has_class(package, "model.py", "Gate"):
            raise EditError("model.py has no Gate class (the deepseek_v3 router)")
        source = _router_source(features) if "auto" in (grouped, renormalize) else ""
        if grouped == "auto":
            grouped = "group_limited_greedy" in source
        if renormalize == "auto":
            renormalize = "norm_topk_prob" in source
        norm_doc = ", renormalised when norm_topk_prob" if renormalize else ""
        if grouped and correction_bias:
            raise EditError("a grouped softmax router with a correction bias: no template")
        doc = GROUPED_DOC if grouped else BIASED_DOC if correction_bias else PLAIN_DOC
        select = GROUPED_SELECT if grouped else BIASED_SELECT if correction_bias else PLAIN_SELECT
        gate = GATE.format(
            doc=doc.format(norm=norm_doc),
            bias=BIAS_INIT if correction_bias else "",
            init="\n".join(
                line for line, on in ((GROUPED_INIT, grouped), (NORM_INIT, renormalize)) if on
            ),
            select=select.strip("\n"),
            norm=NORM.strip("\n") if renormalize else "",
        )
        moe_edits.insert_before_class(package, "model.py", "Gate", _without_blank_lines(gate))
        run(package, "model.py", _RemoveSecondGate())
        if correction_bias:
            moe_edits.router_rows(package, features)
        else:
            moe_edits.drop_rows(package, "e_score_correction_bias")
            for filename in ("state_dict_adapter.py", "parallelize.py"):
                drop_prose(package, filename, r"correction bias")
        run(package, "args.py", _ReplaceFields(FIELDS), required=False)
        if grouped:
            run(package, "args.py", _SetKwargs(GROUP_KWARGS))
            if "def _grouped(" not in package.module("args.py").code:
                run(package, "args.py", _AppendToModule(GROUPED))
        checks = NONE_CHECK.strip() + ("\n" + GROUP_CHECKS.strip() if grouped else "")
        run(package, "args.py", _ReplaceRange("_check_supported", checks))


def _router_source(features) -> str:
    """The target's modeling source (its router's switches are read from it)."""
    if features is None or not getattr(features.source, "modeling", ""):
        raise ValueError("grouped/renormalize='auto' need the target's Features")
    return Path(features.source.modeling).read_text()


def _without_blank_lines(code: str) -> str:
    """Drop the lines the empty template slots left, keeping the blank line between methods."""
    lines = code.strip("\n").splitlines()
    kept = [
        line
        for index, line in enumerate(lines)
        if line.strip() or (index + 1 < len(lines) and lines[index + 1].strip().startswith("def"))
    ]
    return "\n".join(kept) + "\n"


class _RemoveSecondGate(cst.CSTTransformer):
    """The reference's Gate follows the new one: remove it."""

    def __init__(self):
        super().__init__()
        self.hits = 0
        self._seen = 0

    def leave_ClassDef(self, original, updated):
        if updated.name.value != "Gate":
            return updated
        self._seen += 1
        if self._seen == 2:
            self.hits += 1
            return cst.RemoveFromParent()
        return updated


class _ReplaceFields(cst.CSTTransformer):
    """ModelArgs fields `name: ... = ...  # comment` replaced by new lines (with comments)."""

    def __init__(self, fields: dict[str, str]):
        super().__init__()
        self.fields = {
            name: moe_edits.commented_statements(code)[0] for name, code in fields.items()
        }
        self.hits = 0

    def leave_SimpleStatementLine(self, original, updated):
        statement = updated.body[0]
        if isinstance(statement, cst.AnnAssign) and isinstance(statement.target, cst.Name):
            new = self.fields.get(statement.target.value)
            if new is not None:
                self.hits += 1
                return new.with_changes(leading_lines=updated.leading_lines)
        return updated


class _SetKwargs(cst.CSTTransformer):
    """`name=<expr>` keywords of `from_hf_config`'s `cls(...)` call get new values."""

    def __init__(self, kwargs: dict[str, str]):
        super().__init__()
        self.kwargs = {name: expression(value) for name, value in kwargs.items()}
        self.hits = 0

    def leave_Arg(self, original, updated):
        if updated.keyword is not None and updated.keyword.value in self.kwargs:
            self.hits += 1
            return updated.with_changes(value=self.kwargs[updated.keyword.value])
        return updated


class _ReplaceRange(cst.CSTTransformer):
    """In the module-level function `function`, the statements from the one starting with
    GROUP_CHECKS_START up to (not including) the one starting with GROUP_CHECKS_END."""

    def __init__(self, function: str, code: str):
        super().__init__()
        self.function, self.new = function, statements(code)
        self.hits = 0

    def leave_FunctionDef(self, original, updated):
        if updated.name.value != self.function:
            return updated
        body = list(updated.body.body)
        texts = [code_of(statement) for statement in body]
        start = next((i for i, t in enumerate(texts) if t.startswith(GROUP_CHECKS_START)), None)
        end = next((i for i, t in enumerate(texts) if t.startswith(GROUP_CHECKS_END)), None)
        if start is None or end is None or end < start:
            return updated
        self.hits += 1
        body[start:end] = self.new
        return updated.with_changes(body=updated.body.with_changes(body=body))


class _AppendToModule(cst.CSTTransformer):
    def __init__(self, code: str):
        super().__init__()
        self.new, self.hits = statements(code), 0

    def leave_Module(self, original, updated):
        self.hits += 1
        return updated.with_changes(body=[*updated.body, *self.new])
