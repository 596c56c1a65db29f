"""DC2: a branch on ModelArgs fields that every accepted config pins to one value."""

from __future__ import annotations

import libcst.matchers as m

from codegen.quality.conditions import decisions, describe
from codegen.quality.facts import code
from codegen.quality.rule import Finding, Rule

_ARGS = """from dataclasses import dataclass


@dataclass
class ModelArgs:
    dim: int = 8
    decoder_sparse_step: int = 1
    mlp_only_layers: tuple[int, ...] = ()
    sliding_window: int | None = None
    norm_topk_prob: bool = True

    def is_moe_layer(self, layer_id: int) -> bool:
        return self.dim > 0 and (layer_id + 1) % self.decoder_sparse_step == 0

    @classmethod
    def from_hf_config(cls, hf_config):
        return cls(dim=hf_config.hidden_size{step}{passed})
"""
_STEP = ", decoder_sparse_step=hf_config.decoder_sparse_step"


def _package(model: str, passed: str = "", step: str = _STEP) -> dict[str, str]:
    return {"args.py": _ARGS.format(step=step, passed=passed), "model.py": model}


class UnreachableBranch(Rule):
    """A branch no config `from_hf_config` accepts can reach.

    A ModelArgs field is pinned when from_hf_config passes it a constant or never sets it
    and its default is a literal (a generated mixtral package keeps qwen3_moe's
    `mlp_only_layers` and `decoder_sparse_step`, which Mixtral's config has not). A
    condition that such fields decide, read directly (`args.x`, `self.args.x`) or through
    an attribute `__init__` set from one (`self.norm_topk_prob`), has a dead branch.
    """

    code = "DC2"
    VALID = [
        _package(
            "class M:\n    def __init__(self, args: ModelArgs):\n"
            "        if args.sliding_window is not None:\n            self.w = 1\n",
            passed=", sliding_window=hf_config.sliding_window",
        ),
        _package(
            "class M:\n    def __init__(self, args: ModelArgs, i: int):\n"
            "        self.moe = i in args.mlp_only_layers\n",
            passed=", mlp_only_layers=tuple(hf_config.mlp_only_layers)",
        ),
        # a pinned field used as a value, not a condition, is no dead branch
        _package("def f(args: ModelArgs):\n    return args.decoder_sparse_step * 2\n"),
        # an attribute set twice is not pinned
        _package(
            "class M:\n    def __init__(self, args: ModelArgs):\n"
            "        self.n = args.norm_topk_prob\n    def reset(self):\n        self.n = False\n"
            "    def f(self, x):\n        return x / 2 if self.n else x\n"
        ),
    ]
    INVALID = [
        _package(
            "class M:\n    def __init__(self, args: ModelArgs):\n        self.args = args\n"
            "    def forward(self, x):\n        if self.args.sliding_window is not None:\n"
            "            x = x + 1\n        return x\n"
        ),
        _package(
            "class M:\n    def __init__(self, args: ModelArgs, i: int):\n"
            "        self.moe = i not in args.mlp_only_layers and args.dim > 0\n"
        ),
        _package(
            "class M:\n    def __init__(self, args: ModelArgs):\n"
            "        self.norm = args.norm_topk_prob\n"
            "    def f(self, x):\n        return x / 2 if self.norm else x\n"
        ),
        _package("x = 1\n", step=""),  # is_moe_layer: `(layer_id + 1) % 1 == 0`
        _package(
            "def f(args: ModelArgs):\n"
            "    if args.norm_topk_prob:\n        return 1\n    return 0\n",
            passed=", norm_topk_prob=True",
        ),
    ]

    def check(self, facts):
        for filename, module_facts in facts.files.items():
            literal = {d.node for d in decisions(module_facts)}
            for decision in decisions(module_facts, facts.lookup(filename)):
                if decision.node in literal:
                    continue  # DC1's
                reads = module_facts.reads
                why = [reads[n][1] for n in m.findall(decision.node, m.Attribute()) if n in reads]
                yield Finding(
                    filename,
                    module_facts.line(decision.node),
                    self.code,
                    describe(decision, code(decision.node))
                    + (f" ({'; '.join(dict.fromkeys(why))})" if why else ""),
                )
