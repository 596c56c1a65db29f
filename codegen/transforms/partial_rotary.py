"""Rotate only the leading `rotary_dim = int(head_dim * partial_rotary_factor)` dims of q/k."""

from __future__ import annotations

import libcst as cst

from codegen.transforms._rope_edits import InMethod, rewrite_expressions
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    code_of,
    expression,
    is_name,
    run,
)


class PartialRotary(Transform):
    """The rotary tables are built for `args.rope.rotary_dim(head_dim)` dims (phi / stablelm /
    glm4 / gpt_neox style); the reference's guard against a partial factor goes.

    `codegen.layers.rope.apply_rotary` already turns only the leading `cos.shape[-1]` dims and
    passes the rest, so the tables' size is the whole change in the model. The factor itself:
    transformers >= 5 moves `partial_rotary_factor` (and gpt_neox's `rotary_pct`) into
    `rope_parameters`, which `RopeScaling.from_hf` reads. A config that keeps it elsewhere
    passes `factor`, an `hf_config` expression (e.g. "hf_config.partial_rotary_factor"), and
    `from_hf_config` merges it into the rope parameters.
    """

    name = "partial_rotary"

    def apply(self, package, features=None, *, factor: str | None = None) -> None:
        rewrite_expressions(package, "model.py", "Model", "__init__", _rotary_dim)
        run(package, "args.py", _DropPartialGuard())
        if factor is not None:
            rewrite_expressions(
                package, "args.py", "ModelArgs", "from_hf_config", _with_factor(factor)
            )


def _rotary_dim(node):
    """`RotaryEmbedding(rope, dim)` -> `RotaryEmbedding(rope, rope.rotary_dim(dim))`."""
    if not (isinstance(node, cst.Call) and is_name(node.func, "RotaryEmbedding")):
        return None
    rope, dim = node.args[0], node.args[1]
    if code_of(dim.value).startswith(f"{code_of(rope.value)}.rotary_dim("):
        return None
    new_dim = expression(f"{code_of(rope.value)}.rotary_dim({code_of(dim.value)})")
    return node.with_changes(args=[rope, dim.with_changes(value=new_dim), *node.args[2:]])


def _with_factor(factor: str):
    def rewrite(node):
        if not (isinstance(node, cst.Call) and is_name(node.func, "RopeScaling.from_hf")):
            return None
        first = node.args[0]
        merged = expression(f'{{**{code_of(first.value)}, "partial_rotary_factor": {factor}}}')
        return node.with_changes(args=[first.with_changes(value=merged), *node.args[1:]])

    return rewrite


class _DropPartialGuard(InMethod):
    """Delete ModelArgs statements that refuse a partial factor (llama: `__post_init__`;
    qwen: `partial = ...` + `if partial and ...` in `from_hf_config`); an emptied method goes.
    Counts as a hit when there was nothing to drop too: a reference without the guard is fine.
    """

    def __init__(self):
        super().__init__("ModelArgs", "")
        self.hits = 1

    def leave_FunctionDef(self, original, updated):
        in_args = self._stack[:1] == ["ModelArgs"] and len(self._stack) == 2
        self._stack.pop()
        if not in_args:
            return updated
        body = [s for s in updated.body.body if not _is_guard(s)]
        if len(body) == len(updated.body.body):
            return updated
        if not body:
            return cst.RemoveFromParent()
        return updated.with_changes(body=updated.body.with_changes(body=body))


def _is_guard(statement) -> bool:
    if isinstance(statement, cst.If):
        test = code_of(statement.test)
        return "partial_rotary_factor" in test or test.startswith("partial ")
    if isinstance(statement, cst.SimpleStatementLine):
        code = code_of(statement.body[0])
        return code.startswith("partial = ") and "partial_rotary_factor" in code
    return False
