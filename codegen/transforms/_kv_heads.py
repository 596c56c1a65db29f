"""The key/value head count as the target's attention computes it, restated over `hf_config`.

Some attentions do not take their kv head count from one config field: falcon's is
`config.num_kv_heads if (new_decoder_architecture or not multi_query) else 1`. The fused
projection's size and split follow that count, so `from_hf_config` must compute it the same
way. Fields the attention reads only for this stay switches the package realises; a field
the modeling file also reads elsewhere (other layers' structure) is folded to its configured
value, so `guard_switches` refuses its other settings rather than the package getting them
half right.
"""

from __future__ import annotations

import ast
from pathlib import Path

import libcst as cst

from codegen.transforms.edits import expression, run

_COUNT_ATTRIBUTES = ("num_kv_heads", "num_key_value_heads", "n_kv_heads", "kv_heads")
_HOUSE = "n_kv_heads"


def set_kv_heads_from_source(package, features) -> str | None:
    """Rewrite `n_kv_heads=` in `from_hf_config` when the target's attention computes its
    count by an expression (not a plain config field); return that expression, else None."""
    restated = kv_heads_expression(features)
    if restated is not None:
        run(package, "args.py", _SetClsKeyword(_HOUSE, restated))
    return restated


def kv_heads_expression(features) -> str | None:
    path = getattr(getattr(features, "source", None), "modeling", "")
    if not path or not Path(path).is_file():
        return None
    tree = ast.parse(Path(path).read_text())
    configured = {s.field: s.configured for s in getattr(features, "switches", ()) or ()}
    for cls in (node for node in tree.body if isinstance(node, ast.ClassDef)):
        init = next(
            (f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None
        )
        if init is None:
            continue
        for node in ast.walk(init):
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and _self_attribute(node.targets[0]) in _COUNT_ATTRIBUTES
                and _config_field(node.value) is None  # a plain field: config alignment's job
                and (
                    any(_kv_field(f) for f in _fields_read(node.value) | _self_read(node, init))
                    # gpt_bigcode: `1 if self.multi_query else self.num_heads`
                    or isinstance(node.value, ast.IfExp)
                )
            ):
                return _restated(node.value, init, cls, tree, configured)
    return None


def _restated(value, init, cls, tree, configured) -> str | None:
    """`value` over `hf_config`: `self.x` through its `self.x = config.f`, fields read outside
    `cls` folded to their configured value; None when something else is read."""
    sources = {
        _self_attribute(n.targets[0]): _config_field(n.value)
        for n in ast.walk(init)
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and _config_field(n.value)
    }
    outside = {f for node in tree.body if node is not cls for f in _fields_read(node)}
    failed = []

    class _Rewrite(ast.NodeTransformer):
        def visit_Attribute(self, node):
            field = _config_field(node) or sources.get(_self_attribute(node))
            if field is None:
                failed.append(node)
                return node
            if field in outside:
                if field not in configured:
                    failed.append(node)
                return ast.Constant(configured.get(field))
            return ast.Attribute(ast.Name("hf_config", ast.Load()), field, ast.Load())

        def visit_Name(self, node):
            failed.append(node)
            return node

    rewritten = _Fold().visit(_Rewrite().visit(value))
    return None if failed else ast.unparse(rewritten)


class _Fold(ast.NodeTransformer):
    """Constant booleans folded out: `False or x` -> x, `not True` -> False, `a if True else b`."""

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Not) and isinstance(node.operand, ast.Constant):
            return ast.Constant(not node.operand.value)
        return node

    def visit_BoolOp(self, node):
        self.generic_visit(node)
        short = isinstance(node.op, ast.Or)  # the value that decides an `or`
        kept = []
        for operand in node.values:
            if isinstance(operand, ast.Constant):
                if bool(operand.value) is short:
                    return ast.Constant(short)
                continue
            kept.append(operand)
        if not kept:
            return ast.Constant(not short)
        return kept[0] if len(kept) == 1 else ast.BoolOp(node.op, kept)

    def visit_IfExp(self, node):
        self.generic_visit(node)
        if isinstance(node.test, ast.Constant):
            return node.body if node.test.value else node.orelse
        return node


def _kv_field(field: str) -> bool:
    """A config field holding a key/value head count."""
    return field.endswith(("kv_heads", "key_value_heads", "head_kv"))


def _self_read(assign, init) -> set[str]:
    """Config fields behind the `self.x` attributes `assign` reads (their `self.x = config.f`)."""
    sources = {
        _self_attribute(n.targets[0]): _config_field(n.value)
        for n in ast.walk(init)
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and _config_field(n.value)
    }
    return {sources[a] for n in ast.walk(assign.value) if (a := _self_attribute(n)) in sources}


def _self_attribute(node) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.attr if node.value.id == "self" else None
    return None


def _config_field(node) -> str | None:
    """`config.f` or `self.config.f` -> f."""
    if not isinstance(node, ast.Attribute):
        return None
    owner = node.value
    if isinstance(owner, ast.Name) and owner.id == "config":
        return node.attr
    if _self_attribute(owner) == "config":
        return node.attr
    return None


def _fields_read(node) -> set[str]:
    return {f for n in ast.walk(node) if (f := _config_field(n)) is not None}


class _SetClsKeyword(cst.CSTTransformer):
    """`keyword=<value>` of the `cls(...)` call in `from_hf_config` becomes `value`."""

    def __init__(self, keyword: str, value: str):
        super().__init__()
        self.keyword, self.value, self.hits = keyword, expression(value), 0

    def leave_Arg(self, original, updated):
        if updated.keyword is not None and updated.keyword.value == self.keyword:
            self.hits += 1
            return updated.with_changes(value=self.value)
        return updated
