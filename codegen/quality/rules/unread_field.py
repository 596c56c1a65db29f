"""DC3: a ModelArgs field nothing in the package reads."""

from __future__ import annotations

import libcst.matchers as m

from codegen.quality.rule import Finding, Rule

_ARGS = """from dataclasses import dataclass


@dataclass
class ModelArgs:
    dim: int = 8
    qkv_bias: bool = False  # why the field exists

    @classmethod
    def from_hf_config(cls, hf_config):
        return cls(dim=hf_config.hidden_size, qkv_bias=hf_config.qkv_bias)
"""


class UnreadField(Rule):
    """A ModelArgs field no code of the package reads: an option that changes nothing.

    Its own mapping in `from_hf_config` (`cls(x=hf_config.x)`) and reads of the HF config
    (`hf_config.x`) are not reads of the field; `args.x`, `self.args.x` or
    `getattr(args, "x")` anywhere in the package are.
    """

    code = "DC3"
    VALID = [
        {"args.py": _ARGS, "model.py": "def f(args):\n    return args.dim, args.qkv_bias\n"},
        {
            "args.py": _ARGS,
            "model.py": "def f(args):\n    return args.dim, getattr(args, 'qkv_bias', False)\n",
        },
    ]
    INVALID = [
        {"args.py": _ARGS, "model.py": "def f(args):\n    return args.dim\n"},
        # storing is not reading
        {
            "args.py": _ARGS,
            "model.py": "def f(args):\n    args.qkv_bias = True\n    return args.dim\n",
        },
    ]

    def check(self, facts):
        read: set[str] = set()
        config = m.Name(facts.hf_param or "hf_config")  # `hf_config.x` is the HF side
        for module_facts in facts.files.values():
            read.update(
                n.attr.value for n in module_facts.loads() if not m.matches(n.value, config)
            )
            read |= module_facts.getattr_names
        args = facts.files.get("args.py")
        for name, statement in facts.fields.items():
            if name not in read:
                yield Finding(
                    "args.py",
                    args.line(statement) if args else 0,
                    self.code,
                    f"ModelArgs.{name} is read nowhere in the package",
                )
