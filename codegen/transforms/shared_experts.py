"""Add an always-on shared SwiGLU expert to the MoE block."""

from __future__ import annotations

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, assigns

# where HF reads the shared expert's inner size
SIZES = {
    # qwen2_moe-style: its own config field
    "shared_expert_intermediate_size": "hf_config.shared_expert_intermediate_size",
    # deepseek-style: n_shared_experts experts fused into one wider SwiGLU
    "n_shared_experts": "hf_config.n_shared_experts * hf_config.moe_intermediate_size",
}
FIELD = "shared_hidden_dim: int = 1408  # SwiGLU inner size of the always-on shared expert"

FEED_FORWARD = '''
class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1(x)) * w3(x))."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
'''

BUILD = "self.shared_experts = FeedForward(args.dim, args.shared_hidden_dim)"
ADD = "out = out + self.shared_experts(x)"
ROUTED = assigns("out", calling="self.experts")
PROJECTIONS = (("gate_proj", "w1"), ("up_proj", "w3"), ("down_proj", "w2"))


class AddSharedExperts(Transform):
    """The MoE block adds a shared SwiGLU expert every token runs (`shared_experts`).

    `size`: the config field HF sizes it from (`shared_expert_intermediate_size`, or
    `n_shared_experts` x moe_intermediate_size as deepseek; `auto`: whichever the target's
    config class has). `hf_name`: the checkpoint's module name (`shared_experts` deepseek,
    `shared_expert` qwen2_moe).
    """

    name = "add_shared_experts"

    def apply(
        self, package, features=None, *, size: str = "auto", hf_name: str = "shared_experts"
    ) -> None:
        if size == "auto":
            size = size_field_of(features)
        if size not in SIZES:
            raise ValueError(f"size {size!r}: one of {sorted(SIZES)}")
        if not moe_edits.has_class(package, "model.py", "MoE"):
            raise EditError("model.py has no MoE class (run add_moe first)")
        moe_edits.add_args_fields(package, FIELD)
        moe_edits.add_config_kwargs(package, {"shared_hidden_dim": SIZES[size]})
        if not moe_edits.has_class(package, "model.py", "FeedForward"):
            moe_edits.insert_before_class(package, "model.py", "MoE", FEED_FORWARD)
        moe_edits.insert_statements(package, "MoE", "__init__", assigns("self.experts"), BUILD)
        moe_edits.insert_statements(package, "MoE", "forward", ROUTED, ADD)
        rows = [
            moe_edits.row(
                f"model.layers.{{}}.mlp.{hf_name}.{hf}.weight",
                f"layers.{{}}.moe.shared_experts.{w}.weight",
            )
            for hf, w in PROJECTIONS
        ]
        moe_edits.insert_rows_after(package, "layers.{}.moe.experts.w2", rows)


def size_field_of(features) -> str:
    """The config field the target's config class sizes its shared expert with."""
    if features is None or not features.model_type:
        raise ValueError("size='auto' needs the target's Features")
    from codegen.transforms.add_moe import _config_declares

    for field in SIZES:
        if _config_declares(features, field):
            return field
    config_class = features.source.config_class or features.model_type
    raise ValueError(f"{config_class} has none of {sorted(SIZES)}")
