"""DropPinnedAttributes: before/after."""

from codegen.transforms.drop_pinned_attributes import DropPinnedAttributes
from codegen.transforms.testing import package_of

ARGS = """from dataclasses import dataclass


@dataclass
class ModelArgs:
    top_k: int = 2
    norm_topk_prob: bool = True

    @classmethod
    def from_hf_config(cls, hf_config):
        return cls(top_k=hf_config.num_experts_per_tok, norm_topk_prob=True)
"""

MODEL = """class MoE:
    def __init__(self, args: ModelArgs):
        self.top_k = args.top_k
        self.norm_topk_prob = args.norm_topk_prob
        self.scale = 2
        self.used = False
        self.gate = Linear(args.top_k)

    def forward(self, x):
        return x * self.top_k, self.used
"""

MODEL_AFTER = """class MoE:
    def __init__(self, args: ModelArgs):
        self.top_k = args.top_k
        self.used = False
        self.gate = Linear(args.top_k)

    def forward(self, x):
        return x * self.top_k, self.used
"""


def test_unread_pinned_attributes_go_and_everything_else_stays():
    """norm_topk_prob and scale are pinned and unread; top_k is not pinned, used is read,
    gate is a call (a module holding weights: never a candidate)."""
    package = package_of({"args.py": ARGS, "model.py": MODEL})
    DropPinnedAttributes().apply(package)
    assert package.render()["model.py"] == MODEL_AFTER
    assert package.render()["args.py"] == ARGS
