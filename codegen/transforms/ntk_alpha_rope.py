"""A "dynamic" rope with a fixed alpha (HunYuan): the base stretched once, not per length."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms._attention_edits import insert_definition, replace_expressions
from codegen.transforms.base import Transform
from codegen.transforms.edits import code_of, expression

FUNCTION = '''
def ntk_alpha(rope: dict, head_dim: int) -> dict:
    """A "dynamic" rope that sets `{key}` stretches the base once, by {key} ** (d / (d - 2)),
    whatever the sequence length (NTK-alpha): the plain rope with that base."""
    alpha = rope.get("{key}")
    if not alpha or rope.get("rope_type", rope.get("type")) != "dynamic":
        return rope
    theta = rope["rope_theta"] * alpha ** (head_dim / (head_dim - 2))
    return {{**rope, "rope_type": "default", "rope_theta": theta}}
'''

_FROM_HF = m.Call(func=m.Attribute(value=m.Name("RopeScaling"), attr=m.Name("from_hf")))


class NtkAlphaRope(Transform):
    """`from_hf_config` hands `RopeScaling.from_hf` the rope parameters through
    `ntk_alpha(...)` (new in args.py): where a "dynamic" rope sets `key` (HunYuan's
    `alpha`), HF builds the frequencies once from theta * alpha ** (d / (d - 2)) instead of
    growing the base with the sequence; the package does the same with a default rope of
    that theta. `d` is the head dim as the package maps it (`head_dim=` of `cls(...)`)."""

    name = "ntk_alpha_rope"

    def apply(self, package, features=None, *, key: str = "alpha") -> None:
        head_dim = _head_dim(package.module("args.py"))

        def wrap(call: cst.Call) -> cst.Call:
            first = call.args[0]
            wrapped = expression(f"ntk_alpha({code_of(first.value)}, {head_dim})")
            return call.with_changes(args=[first.with_changes(value=wrapped), *call.args[1:]])

        replace_expressions(
            package,
            "args.py",
            "ModelArgs",
            "from_hf_config",
            lambda node: m.matches(node, _FROM_HF),
            wrap,
        )
        insert_definition(package, "args.py", FUNCTION.format(key=key))


def _head_dim(args: cst.Module) -> str:
    """The expression `from_hf_config` maps `head_dim` from, else `hf_config.head_dim`."""
    for arg in m.findall(args, m.Arg(keyword=m.Name("head_dim"))):
        return code_of(arg.value)
    return "hf_config.head_dim"
