"""Run a routed MoE beside the dense MLP when a config switch asks for it (Gemma 4's
`enable_moe_block`).

HF's layer then feeds the residual sum `h` after the attention to both branches: the dense
MLP through the FFN's pre-norm, the experts through a pre-norm of their own, routed by a
router that reads `h` itself. Each branch's output is normed, the two are summed, and the sum
goes through the FFN's post-norm into the residual. The router norms its input without a
weight, multiplies it by a learned per-channel scale and by dim ** -0.5, projects it to one
logit per expert, takes the softmax in fp32, keeps the top k renormalised to sum to one and
multiplies each by its expert's learned scale. The experts are GeGLU with gate and up fused
in one stacked weight (gate = first half), as the checkpoint stores them.

The package keeps both settings: `TransformerBlock.__init__` builds the MoE and its three
norms only when `args.enable_moe_block` is set, and the forward adds the branch only then.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._ffn_edits import InsertClassBefore
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, ScopedTransformer, add_import, code_of, run
from codegen.transforms.norm_weight import PLAIN_RMSNORM
from codegen.transforms.per_layer_inputs import _block_norm, _ffn_activation, _resized

FIELDS = """
# a routed MoE beside the dense MLP in every layer (HF's enable_moe_block); off: dense only
enable_moe_block: bool = False
num_experts: int = 0  # routed experts per layer
top_k: int = 0  # experts each token is sent to
moe_hidden_dim: int = 0  # GeGLU inner size of one expert
"""

CLASSES = '''
class Router(nn.Module):
    """Picks each token's top_k experts from the layer's input: RMS-normed without a weight,
    times a learned per-channel scale and dim ** -0.5, projected to one logit per expert and
    softmaxed in fp32. The k picked probabilities are renormalised to sum to one, then
    multiplied by their expert's own learned scale."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.top_k = args.top_k
        self.root_dim = args.dim**-0.5
        self.norm = PlainRMSNorm(args.dim, args.norm_eps)
        self.scale = nn.Parameter(torch.ones(args.dim))
        self.proj = nn.Linear(args.dim, args.num_experts, bias=False)
        self.expert_scale = nn.Parameter(torch.ones(args.num_experts))

    def init_parameters(self, std: float) -> None:
        """Both scales start at one, as HF's init sets them."""
        nn.init.ones_(self.scale)
        nn.init.ones_(self.expert_scale)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (tokens, dim) -> every expert's fp32 probability (tokens, num_experts), for a
        load-balancing loss, and the fp32 weights and expert indices, each (tokens, top_k)."""
        x = self.norm(x) * self.scale * self.root_dim
        probs = F.softmax(self.proj(x), dim=-1, dtype=torch.float32)
        weights, indices = probs.topk(self.top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        return probs, weights * self.expert_scale[indices], indices


class Experts(nn.Module):
    """`num_experts` GeGLU experts as stacked weights: gate and up fused in w13
    [num_experts, 2 * hidden_dim, dim] (gate = first half), w2 [num_experts, dim, hidden_dim].

    Every (token, slot) pair is sorted by its expert, so each expert's rows are contiguous;
    one `grouped_mm` per projection multiplies every block by its own expert's weight
    (`offsets`: end row of each expert). The k weighted outputs of a token are summed in the
    routing weights' dtype (fp32), then cast back.
    """

    def __init__(self, num_experts: int, dim: int, hidden_dim: int):
        super().__init__()
        self.num_experts = num_experts
        self.w13 = nn.Parameter(torch.empty(num_experts, 2 * hidden_dim, dim))
        self.w2 = nn.Parameter(torch.empty(num_experts, dim, hidden_dim))

    def forward(
        self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """x (tokens, dim); indices, weights (tokens, top_k) -> (tokens, dim)."""
        top_k = indices.shape[1]
        order = indices.flatten().argsort(stable=True)
        counts = torch.bincount(indices.flatten(), minlength=self.num_experts)
        offsets = counts.cumsum(0, dtype=torch.int32)
        rows = x[order // top_k]
        gate, up = grouped_mm(rows, self.w13.mT, offs=offsets).chunk(2, dim=-1)
        hidden = {activation} * up
        out = grouped_mm(hidden, self.w2.mT, offs=offsets) * weights.flatten()[order, None]
        out = torch.empty_like(out).index_copy_(0, order, out)  # back to (token, slot) order
        return out.view(-1, top_k, x.shape[-1]).sum(dim=1).to(x.dtype)


class MoE(nn.Module):
    """Routed experts beside the dense MLP: the router reads the layer's input as it is, the
    experts take it normed."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.router = Router(args)
        self.experts = Experts(args.num_experts, args.dim, args.moe_hidden_dim)

    def forward(self, x: torch.Tensor, normed: torch.Tensor) -> torch.Tensor:
        batch, seq, dim = x.shape
        _, weights, indices = self.router(x.view(-1, dim))
        return self.experts(normed.view(-1, dim), indices, weights).view(batch, seq, dim)
'''

BLOCK_INIT = """
# with enable_moe_block a routed MoE runs beside the dense MLP, each branch normed after
self.moe = MoE(args) if args.enable_moe_block else None
if self.moe is not None:
    self.moe_norm = {norm}
    self.post_dense_norm = {norm}
    self.post_moe_norm = {norm}
"""

BRANCH = """
ffn = {call}
if self.moe is not None:
    ffn = self.post_dense_norm(ffn) + self.post_moe_norm(self.moe({h}, self.moe_norm({h})))
"""

_FEED_FORWARD = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("feed_forward")))


class ParallelMoe(Transform):
    """With enable_moe_block, a routed GeGLU MoE (scaled-norm router, per-expert scales,
    fused gate/up) runs beside the dense MLP, each branch normed before and after."""

    name = "parallel_moe"

    def apply(self, package, features=None, *, parallel_moe: dict | None = None) -> None:
        found = parallel_moe
        if not found:
            raise EditError("the switched MoE was not read from the source (block.parallel_moe)")
        module = package.module("model.py")
        if any(m.findall(module, m.ClassDef(name=m.Name(name))) for name in ("MoE", "Experts")):
            raise EditError("model.py already has a MoE")
        norm = _block_norm(package)
        activation = _ffn_activation(package)
        activation = activation.with_changes(
            args=[activation.args[0].with_changes(value=cst.Name("gate")), *activation.args[1:]]
        )
        edits.add_args_field(package, FIELDS)
        fields = found["fields"]
        edits.add_hf_kwarg(package, f"enable_moe_block=hf_config.{found['field']}")
        for house, hf in (
            ("num_experts", fields["num_experts"]),
            ("top_k", fields["top_k"]),
            ("moe_hidden_dim", fields["moe_hidden"]),
        ):
            # unset (None) where the config switches the MoE off
            edits.add_hf_kwarg(package, f"{house}=hf_config.{hf} or 0")
        if not m.findall(module, m.ClassDef(name=m.Name("PlainRMSNorm"))):
            run(package, "model.py", InsertClassBefore(PLAIN_RMSNORM))
        moe_edits.insert_after_class(
            package,
            "model.py",
            "FeedForward",
            CLASSES.replace("{activation}", code_of(activation)),
        )
        add_import(package, "model.py", moe_edits.GROUPED_MM_MODULE, "grouped_mm")
        edits.append_to_method(
            package,
            "model.py",
            "TransformerBlock",
            "__init__",
            BLOCK_INIT.format(norm=_resized(norm, "args.dim")),
        )
        branch = _Branch()
        run(package, "model.py", branch)
        if branch.hits != 1:
            raise EditError("TransformerBlock.forward calls self.feed_forward(...) not once")
        _map_keys(package, features, found)


class _Branch(ScopedTransformer):
    """The statement calling `self.feed_forward(self.ffn_norm(h))` reads `ffn` instead, and
    the statements computing `ffn` (the dense MLP, plus the MoE branch when built) go before
    it."""

    def __init__(self):
        super().__init__("TransformerBlock", "forward")

    def leave_SimpleStatementLine(self, original, updated):
        if not self.in_scope():
            return updated
        calls = m.findall(updated, _FEED_FORWARD)
        if len(calls) != 1:
            return updated
        call = calls[0]
        normed = call.args[0].value if call.args else None
        if not (isinstance(normed, cst.Call) and normed.args):
            raise EditError("self.feed_forward(...) does not read a normed input")
        self.hits += 1
        h = code_of(normed.args[0].value)
        new = cst.parse_module(BRANCH.format(call=code_of(call), h=h).strip() + "\n").body
        edited = updated.deep_replace(call, cst.Name("ffn"))
        return cst.FlattenSentinel([*new, edited])


def _map_keys(package, features, found: dict) -> None:
    prefix = features.state_dict.prefix if features is not None else "model.layers"
    layer = f"{prefix}.{{}}"
    router = f"{layer}.{found['router']}"
    experts = f"{layer}.{found['experts']}"
    rows = [
        (f"{router}.{found['router_proj']}.weight", "layers.{}.moe.router.proj.weight"),
        (f"{router}.{found['router_scale']}", "layers.{}.moe.router.scale"),
        (f"{router}.{found['expert_scale']}", "layers.{}.moe.router.expert_scale"),
        (f"{experts}.{found['gate_up']}", "layers.{}.moe.experts.w13"),
        (f"{experts}.{found['down']}", "layers.{}.moe.experts.w2"),
        (f"{layer}.{found['moe_norm']}.weight", "layers.{}.moe_norm.weight"),
        (f"{layer}.{found['post_dense_norm']}.weight", "layers.{}.post_dense_norm.weight"),
        (f"{layer}.{found['post_moe_norm']}.weight", "layers.{}.post_moe_norm.weight"),
    ]
    edits.insert_after_layer_rows(package, rows)
