"""FoldConstantBranches: before/after."""

import libcst as cst

from codegen.quality.check import check_sources
from codegen.transforms.fold_constant_branches import FoldConstantBranches
from codegen.transforms.testing import package_of

ARGS = """from dataclasses import dataclass


@dataclass
class ModelArgs:
    dim: int = 8
    mlp_only_layers: tuple[int, ...] = ()
    decoder_sparse_step: int = 1
    norm_topk_prob: bool = True
    sliding_window: int | None = None

    def is_moe_layer(self, layer_id: int) -> bool:
        return (
            layer_id not in self.mlp_only_layers
            and self.dim > 0
            and (layer_id + 1) % self.decoder_sparse_step == 0
        )

    @classmethod
    def from_hf_config(cls, hf_config):
        return cls(dim=hf_config.hidden_size, norm_topk_prob=True, mlp_only_layers=tuple(() or ()))
"""

ARGS_AFTER = ARGS.replace(
    """        return (
            layer_id not in self.mlp_only_layers
            and self.dim > 0
            and (layer_id + 1) % self.decoder_sparse_step == 0
        )""",
    """        return (
            self.dim > 0
        )""",
).replace("tuple(() or ())", "tuple(())")

MODEL = """class MoE:
    def __init__(self, args: ModelArgs):
        self.norm_topk_prob = args.norm_topk_prob
        self.args = args

    def route(self, weights):
        # renormalise
        if self.norm_topk_prob:
            weights = weights / weights.sum()
        return weights

    def forward(self, x):
        mask = None  # plain causal
        if self.args.sliding_window is not None:
            mask = make_mask(self.args.sliding_window)
        elif self.args.dim > 4:
            mask = 1
        kind = "sliding" if (None) else "full"
        while False:
            x = x + 1
        return x, mask, kind
"""

MODEL_AFTER = """class MoE:
    def __init__(self, args: ModelArgs):
        self.norm_topk_prob = args.norm_topk_prob
        self.args = args

    def route(self, weights):
        # renormalise
        weights = weights / weights.sum()
        return weights

    def forward(self, x):
        mask = None  # plain causal
        if self.args.dim > 4:
            mask = 1
        kind = "full"
        return x, mask, kind
"""


def test_pinned_and_literal_conditions_keep_only_the_live_branch():
    package = package_of({"args.py": ARGS, "model.py": MODEL})
    FoldConstantBranches().apply(package)
    rendered = package.render()
    assert rendered["model.py"] == MODEL_AFTER
    assert rendered["args.py"] == ARGS_AFTER
    assert [f for f in check_sources(rendered) if f.code in ("DC1", "DC2")] == []


def test_a_branch_taken_always_replaces_the_chain_and_an_empty_body_gets_pass():
    source = (
        "def f(x):\n    if x:\n        y = 1\n    elif True:\n        y = 2\n    else:\n"
        "        y = 3\n    return y\n\n\ndef g():\n    if None:\n        return 1\n"
    )
    package = package_of({"model.py": source})
    FoldConstantBranches().apply(package)
    assert package.render()["model.py"] == (
        "def f(x):\n    if x:\n        y = 1\n    else:\n        y = 2\n    return y\n\n\n"
        "def g():\n    pass\n"
    )


def test_parentheses_stay_where_the_folded_expression_had_them():
    package = package_of({"model.py": "y = 2 * (a if True else b + 1) + (True and c or d)\n"})
    FoldConstantBranches().apply(package)
    code = package.render()["model.py"]
    assert code == "y = 2 * (a) + (c or d)\n"
    cst.parse_module(code)


def test_live_conditions_and_values_are_left_alone():
    source = (
        "def f(args: ModelArgs, x):\n    if args.dim > 2:\n        x = x or None\n"
        "    while True:\n        break\n    return x\n"
    )
    package = package_of({"args.py": ARGS, "model.py": source})
    FoldConstantBranches().apply(package)
    assert package.render()["model.py"] == source
