"""Stacked shared experts the router scores beside the routed ones (inkling)."""

from __future__ import annotations

import libcst as cst

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, assigns, code_of, run
from codegen.transforms.shared_experts import _OverHfConfig

FIELD = "n_shared: int = 2  # always-on experts the router scores beside the routed ones"

SHARED_EXPERTS = '''
class SharedExperts(nn.Module):
    """`num_experts` always-on SwiGLU experts as stacked weights [num_experts, out, in]; each
    token's output of each is scaled by its own routing weight, and they are summed in fp32.
    """

    def __init__(self, num_experts: int, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(num_experts, hidden_dim, dim))
        self.w2 = nn.Parameter(torch.empty(num_experts, dim, hidden_dim))
        self.w3 = nn.Parameter(torch.empty(num_experts, hidden_dim, dim))

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x (tokens, dim), weights (tokens, num_experts) -> (tokens, dim)."""
        stacked = x.expand(self.w1.shape[0], -1, -1)
        hidden = F.silu(torch.bmm(stacked, self.w1.mT)) * torch.bmm(stacked, self.w3.mT)
        hidden = hidden * weights.T[..., None].to(x.dtype)
        return torch.bmm(hidden, self.w2.mT).float().sum(dim=0).to(x.dtype)
'''

GATE = "self.gate = nn.Linear(args.dim, args.num_experts, bias=False)"
GATE_SCORED = """
# the last n_shared rows score the shared experts
self.gate = nn.Linear(args.dim, args.num_experts + args.n_shared, bias=False)
"""
BUILD = """
self.n_shared = args.n_shared
self.shared_experts = SharedExperts(args.n_shared, args.dim, args.moe_hidden_dim)
"""
ROUTE = '''
def route(
    self, logits: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Router logits (tokens, experts + shared) -> the routed experts' weights and indices
    (tokens, top_k) and the shared experts' weights (tokens, n_shared)."""
    logits = logits.float()
    routed, shared = logits[:, : -self.n_shared], logits[:, -self.n_shared :]
    scores = routed.sigmoid()  # each expert scored on its own
    {pick}
    # the top_k picked and the shared experts' sigmoid scores are normalised together
    chosen = F.logsigmoid(torch.cat([routed.gather(1, indices), shared], dim=-1))
    weights = (chosen - chosen.logsumexp(dim=-1, keepdim=True)).exp()
    weights = weights * self.routed_scaling
    return weights[:, : self.top_k], indices, weights[:, self.top_k :]
'''
PICK_BIASED = """# the correction bias steers which experts are picked, the weights stay unbiased
    indices = (scores + self.e_score_correction_bias).topk(self.top_k, dim=-1)[1]"""
PICK = "indices = scores.topk(self.top_k, dim=-1)[1]"
ROUTE_CALL = "weights, indices, shared_weights = self.route("
ROUTED = "out = self.experts(x, indices, weights)"
ROUTED_SHARED = "out = self.experts(x, indices, weights) + self.shared_experts(x, shared_weights)"


class ScoredSharedExperts(Transform):
    """The MoE block holds `shared_experts`, n always-on SwiGLU experts as stacked weights,
    and its router scores them with n rows past the routed experts' (`gate` grows to
    num_experts + n_shared rows). The router picks the top_k routed experts by their sigmoid
    scores (plus the correction bias where the block keeps one), then normalises the picked
    and the shared experts' sigmoid scores together (in log space, as HF does), times the
    routed scaling; each shared expert's output is scaled by its own weight and they are
    summed in fp32 (HF inkling's router and `InklingSharedExperts`).

    `shared`: the analysed `moe.scored_shared` ({"module", "count", "gate", "up", "down"}:
    the block's attribute, the config field of their number, their stacked weights). Runs
    on the block `add_moe` builds (a `route` method over the gate's logits), after the router
    rules; its `route` replaces theirs, so it refuses a router other than a sigmoid top-k.
    """

    name = "scored_shared_experts"

    def apply(self, package, features=None, *, shared: dict | None = None) -> None:
        if not shared:
            raise EditError("scored_shared_experts needs the analysed moe.scored_shared")
        if features is not None and features.get("moe.router") != "sigmoid_topk":
            raise EditError("scored shared experts are realised under a sigmoid top-k router only")
        biased = features is None or features.get("moe.router_bias") is True
        if not moe_edits.has_class(package, "model.py", "MoE"):
            raise EditError("model.py has no MoE class (run add_moe first)")
        count = cst.parse_expression(shared["count"]).visit(_OverHfConfig())
        moe_edits.add_args_fields(package, FIELD)
        moe_edits.add_config_kwargs(package, {"n_shared": code_of(count)})
        moe_edits.insert_before_class(package, "model.py", "MoE", SHARED_EXPERTS)
        moe_edits.replace_statement(package, "model.py", "MoE", "__init__", _is(GATE), GATE_SCORED)
        moe_edits.insert_statements(package, "MoE", "__init__", assigns("self.experts"), BUILD)
        route = ROUTE.replace("{pick}", PICK_BIASED if biased else PICK)
        if "self.routed_scaling =" not in package.render()["model.py"]:
            route = route.replace("    weights = weights * self.routed_scaling\n", "")
        run(package, "model.py", _ReplaceMethod("MoE", "route", route))
        run(package, "model.py", _RouteCall())
        moe_edits.replace_statement(
            package, "model.py", "MoE", "forward", _is(ROUTED), ROUTED_SHARED
        )
        hf = f"model.layers.{{}}.mlp.{shared['module']}"
        rows = [
            moe_edits.row(f"{hf}.{shared[part]}", f"layers.{{}}.moe.shared_experts.{w}")
            for part, w in (("gate", "w1"), ("up", "w3"), ("down", "w2"))
        ]
        moe_edits.insert_rows_after(package, "layers.{}.moe.experts.w2", rows)


def _is(code: str):
    """An anchor: the statement whose code is `code`."""
    target = code_of(cst.parse_statement(code)).strip()
    return lambda statement: code_of(statement).strip().split("  #")[0] == target


class _ReplaceMethod(cst.CSTTransformer):
    """`class_name.method` replaced by the function `code`."""

    def __init__(self, class_name: str, method: str, code: str):
        super().__init__()
        self.class_name, self.method = class_name, method
        self.new = cst.parse_statement(code.strip() + "\n")
        self.hits = 0
        self._class: list[str] = []

    def visit_ClassDef(self, node):
        self._class.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self._class.pop()
        return updated

    def leave_FunctionDef(self, original, updated):
        if self._class[-1:] == [self.class_name] and updated.name.value == self.method:
            self.hits += 1
            return self.new.with_changes(leading_lines=updated.leading_lines)
        return updated


class _RouteCall(cst.CSTTransformer):
    """`weights, indices = self.route(...)` in `MoE.forward` also names `shared_weights`."""

    def __init__(self):
        super().__init__()
        self.hits = 0

    def leave_Assign(self, original, updated):
        value = updated.value
        if not (
            isinstance(value, cst.Call)
            and isinstance(value.func, cst.Attribute)
            and value.func.attr.value == "route"
            and isinstance(updated.targets[0].target, cst.Tuple)
        ):
            return updated
        self.hits += 1
        target = cst.parse_expression("weights, indices, shared_weights")
        return updated.with_changes(targets=[cst.AssignTarget(target=target)])
