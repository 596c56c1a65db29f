"""Drop the written-out attention's k/v repeat where every query head has its own kv head.

`make_attention_explicit` writes the grouped-query repeat (`GQA_REPEAT`: `groups = ...`,
then `k, v = k.repeat_interleave(groups, dim=1), ...`) into an attention that keeps an
`n_kv_heads` count. It runs among the rules, before `align_config_fields`, when
`from_hf_config` still reads the reference's kv-head field. A target whose config has no
kv-head count gets `n_kv_heads=` the same expression as `n_heads=` from that alignment
(`hf_config.num_attention_heads` for both): there `groups` is always 1 and the repeat only
copies k and v once each per layer, a copy the HF model does not make. After the transforms
this removes the two lines, in each class whose `__init__` takes both counts straight from
ModelArgs (a per-layer count, `layer_n_kv_heads`, may differ and keeps the repeat), when
nothing else reads `groups` and `ModelArgs` itself never resets `n_kv_heads`.
"""

from __future__ import annotations

import ast

import libcst as cst

from codegen.transforms._attention_edits import GQA_REPEAT
from codegen.transforms.base import Transform
from codegen.transforms.edits import code_of, is_statement

_TAKES_COUNTS = (
    is_statement("self.n_heads = args.n_heads"),
    is_statement("self.n_kv_heads = args.n_kv_heads"),
)
_REPEAT = tuple(is_statement(line) for line in GQA_REPEAT.strip().splitlines())


class DropKvRepeat(Transform):
    """Remove the k/v repeat of a written-out attention whose kv heads are its query heads."""

    name = "drop_kv_repeat"

    def apply(self, package, features=None) -> None:
        if "args.py" not in package.files or not _same_counts(package.module("args.py")):
            return
        package.edit("model.py", _DropRepeat())


def _same_counts(args: cst.Module) -> bool:
    """Whether `from_hf_config`'s `cls(...)` gives `n_kv_heads=` the same expression as
    `n_heads=` (compared as syntax trees) and nothing else in args.py sets `n_kv_heads`."""
    tree = ast.parse(args.code)
    given = {
        keyword.arg: ast.dump(keyword.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "cls"
        for keyword in node.keywords
        if keyword.arg in ("n_heads", "n_kv_heads")
    }
    reset = any(
        isinstance(target, ast.Attribute) and target.attr == "n_kv_heads"
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
    )
    return len(given) == 2 and given["n_heads"] == given["n_kv_heads"] and not reset


class _DropRepeat(cst.CSTTransformer):
    def leave_ClassDef(self, original, updated):
        methods = [s for s in updated.body.body if isinstance(s, cst.FunctionDef)]
        init = next((f for f in methods if f.name.value == "__init__"), None)
        if init is None or not all(any(t(s) for s in init.body.body) for t in _TAKES_COUNTS):
            return updated
        body = [_without_repeat(s) if s in methods else s for s in updated.body.body]
        return updated.with_changes(body=updated.body.with_changes(body=body))


def _without_repeat(function: cst.FunctionDef) -> cst.FunctionDef:
    statements = list(function.body.body)
    starts = [
        i
        for i in range(len(statements) - 1)
        if _REPEAT[0](statements[i]) and _REPEAT[1](statements[i + 1])
    ]
    if len(starts) != 1:
        return function
    start = starts[0]
    rest = statements[:start] + statements[start + 2 :]
    if any("groups" in _names(s) for s in rest):
        return function
    return function.with_changes(body=function.body.with_changes(body=rest))


def _names(statement: cst.CSTNode) -> set[str]:
    try:
        tree = ast.parse(code_of(statement))
    except SyntaxError:
        return set()
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
