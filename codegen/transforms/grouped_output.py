"""Project the attention output per group of heads first (a block each), then to `dim`."""

from __future__ import annotations

import libcst as cst

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import ReplaceStatements, expression, run, sets

GROUPED_LINEAR = '''
class GroupedLinear(nn.Linear):
    """Block-diagonal linear: the input's features cut into equal groups, each projected by
    `rank` rows of its own (the weight: one block of `rank` rows per group, stacked)."""

    def __init__(self, in_per_group: int, groups: int, rank: int):
        super().__init__(in_per_group, groups * rank, bias=False)
        self.rank = rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Each group's block written into its place in the output: no second, reordered
        copy of the output is made."""
        blocks = self.weight.view(-1, self.rank, self.in_features)  # (groups, rank, in)
        x = x.unflatten(-1, (blocks.shape[0], self.in_features))
        out = x.new_empty(*x.shape[:-1], self.rank)
        for group, block in enumerate(blocks):
            out[..., group, :] = x[..., group, :] @ block.T
        return out.flatten(-2)
'''

PROJECTIONS = (
    "# the heads' output projected per group of heads (a block each), then to dim\n"
    "self.wo_a = GroupedLinear(\n"
    "    args.n_heads * args.head_dim // args.o_groups, args.o_groups, args.o_lora_rank\n"
    ")\n"
    "self.wo_b = nn.Linear(args.o_groups * args.o_lora_rank, args.dim, bias=False)\n"
)

FIELDS = (
    "# the attention output is projected per group of heads to o_lora_rank, then to dim\n"
    "o_groups: int = 1\n"
    "o_lora_rank: int = 0\n"
)


class GroupedOutput(Transform):
    """`self.wo` -> `self.wo_b(self.wo_a(...))`: each of `o_groups` groups of heads projected
    to `o_lora_rank` by a block of its own (`GroupedLinear`), the groups' outputs mixed to
    `dim` (DeepSeek-V4's o_a_proj / o_b_proj).

    `GroupedLinear` reads the group count from its weight (`rank` rows per group), so under
    tensor parallelism a rank holding whole groups' rows (`grouped_colwise`) projects its
    own heads' groups alone. `ModelArgs` maps `o_groups` and `o_lora_rank` from the config
    fields the analysis read (`groups`, `rank`); the adapter maps the two HF projections
    (`a`, `b`) in the output projection's place.
    """

    name = "grouped_output"

    def apply(self, package, features=None, *, grouped: dict) -> None:
        edits.insert_definition(package, "model.py", GROUPED_LINEAR, before="Attention")
        run(
            package,
            "model.py",
            ReplaceStatements("Attention", "__init__", sets("self.wo"), PROJECTIONS),
        )
        edits.replace_expressions(
            package,
            "model.py",
            "Attention",
            "forward",
            edits.call_of("self.wo"),
            lambda call: cst.Call(
                func=expression("self.wo_b"),
                args=[cst.Arg(call.with_changes(func=expression("self.wo_a")))],
            ),
        )
        edits.add_args_field(package, FIELDS)
        edits.add_hf_kwarg(package, f"o_groups=hf_config.{grouped['groups']}")
        edits.add_hf_kwarg(package, f"o_lora_rank=hf_config.{grouped['rank']}")
        # the output projection's rows -> the two stages' (neither has a bias)
        edits.split_projection_rows(package, "wo", [(grouped["a"], "wo_a"), (grouped["b"], "wo_b")])
