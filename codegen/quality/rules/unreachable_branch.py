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


# a per-layer pattern normalised by __post_init__ (the sliding-window layout)
_PATTERN_ARGS = """from dataclasses import dataclass


@dataclass
class ModelArgs:
    n_layers: int = 2
    sliding_window: int | None = None
    layer_types: tuple[str, ...] | None = None

    def __post_init__(self):
        self.layer_types = tuple(self.layer_types or ("full_attention",) * self.n_layers)

    @classmethod
    def from_hf_config(cls, hf_config):
        return cls(n_layers=hf_config.num_hidden_layers, layer_types={layer_types})
"""
_SLIDING_MODEL = (
    "class M:\n    def __init__(self, args: ModelArgs):\n        self.args = args\n"
    "    def forward(self, x):\n        window = None\n"
    '        if "sliding_attention" in self.args.layer_types:\n'
    "            window = self.args.sliding_window\n        return x, window\n"
)


def _pattern(layer_types: str, model: str = _SLIDING_MODEL) -> dict[str, str]:
    return {"args.py": _PATTERN_ARGS.format(layer_types=layer_types), "model.py": model}


class UnreachableBranch(Rule):
    """A branch no config `from_hf_config` accepts can reach.

    A ModelArgs field is pinned when from_hf_config passes it a constant or never sets it
    and its default is a literal (a generated mixtral package keeps qwen3_moe's
    `mlp_only_layers` and `decoder_sparse_step`, which Mixtral's config has not). A
    condition that such fields decide, read directly (`args.x`, `self.args.x`) or through
    an attribute `__init__` set from one (`self.norm_topk_prob`), has a dead branch.
    A constant may be known entry by entry only: `["full_attention"] * n_layers`, kept so
    by `__post_init__`, has no "sliding_attention" layer (glm4 scaffolded from qwen2 kept a
    window path no Glm4Config reaches).
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
        # the config gives the pattern: any layer may slide
        _pattern("tuple(hf_config.layer_types)"),
        # known entries, unknown length: a full layer may or may not exist
        _pattern(
            '["full_attention"] * hf_config.num_hidden_layers',
            "def f(args: ModelArgs):\n"
            '    if "full_attention" in args.layer_types:\n        return 1\n    return 0\n',
        ),
        # a pattern either kind may fill
        _pattern('["full_attention", "sliding_attention"] * (hf_config.num_hidden_layers // 2)'),
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
        # every layer full whatever the length: the window path is dead (glm4 from qwen2)
        _pattern('tuple(["full_attention"] * hf_config.num_hidden_layers)'),
        _pattern(
            '["full_attention"] * hf_config.num_hidden_layers',
            "class B:\n    def __init__(self, args: ModelArgs, i: int):\n"
            '        self.sliding = args.layer_types[i] == "sliding_attention"\n'
            "    def forward(self, x):\n        return x + 1 if self.sliding else x\n",
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
