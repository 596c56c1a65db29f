"""The std HF's `_init_weights` starts the token embeddings at, where it is not the
`initializer_range` every other matrix uses (Youtu: `embedding_initializer_range`, else twice
`initializer_range`).

Read from the modeling file's `_init_weights`: the `normal_` call on `module.weight` in its
`isinstance(module, nn.Embedding)` branch, its `std=` restated over the config by substituting
the method's locals (each assigned once) and writing `self.config` / `config` as `hf_config`.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze.context import Ctx
from codegen.analyze.detect_init import _isinstance_of

_NORMAL = m.Call(func=m.Attribute(attr=m.Name("normal_")) | m.Name("normal_"))
_CONFIG = m.Attribute(value=m.Name("self"), attr=m.Name("config")) | m.Name("config")
_DEPTH = 6  # substitutions: a chain of locals is short in practice
# what every other matrix starts at: no feature of its own
_PLAIN = (
    "hf_config.initializer_range",
    'getattr(hf_config, "initializer_range", 0.02)',
)


def embedding_init_std(ctx: Ctx) -> str | None:
    """The embeddings' init std as an `hf_config` expression, when it is not the plain
    `initializer_range`; None otherwise (or when it cannot be restated)."""
    sf = ctx.model.modeling
    for cls in sf.classes.values():
        method = cls.methods.get("_init_weights")
        if not isinstance(method, cst.FunctionDef):
            continue
        for branch in m.findall(method, m.If()):
            if not _isinstance_of(branch.test, "Embedding"):
                continue
            for call in m.findall(branch.body, _NORMAL):
                std = next(
                    (a.value for a in call.args if m.matches(a.keyword, m.Name("std"))), None
                )
                if std is None:
                    continue
                restated = _restate(std, _locals(method))
                if restated is None or restated in _PLAIN:
                    return None
                ctx.cite("embedding.init_std", f"{sf.cite(call)} (std {restated})")
                return restated
    return None


def _locals(method: cst.FunctionDef) -> dict[str, cst.BaseExpression]:
    """Names the method assigns exactly once, to their values."""
    seen: dict[str, list] = {}
    for assign in m.findall(method, m.Assign(targets=[m.AssignTarget(target=m.Name())])):
        seen.setdefault(assign.targets[0].target.value, []).append(assign.value)
    return {name: values[0] for name, values in seen.items() if len(values) == 1}


class _Substitute(cst.CSTTransformer):
    def __init__(self, names: dict[str, cst.BaseExpression]):
        super().__init__()
        self.names, self.changed = names, False
        self._attrs: set[int] = set()  # `x.<name>`: an attribute name, never a variable

    def visit_Attribute(self, node):
        self._attrs.add(id(node.attr))

    def leave_Attribute(self, original, updated):
        if m.matches(original, _CONFIG) and not m.matches(original, m.Name()):
            self.changed = True
            return cst.Name("hf_config")
        return updated

    def leave_Name(self, original, updated):
        if id(original) in self._attrs:
            return updated
        if updated.value == "config":
            return cst.Name("hf_config")
        if updated.value in self.names:
            self.changed = True
            return _parenthesized(self.names[updated.value])
        return updated


def _parenthesized(node: cst.BaseExpression) -> cst.BaseExpression:
    if isinstance(node, cst.BinaryOperation):
        return node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    return node


def _restate(node: cst.BaseExpression, names: dict) -> str | None:
    for _ in range(_DEPTH):
        visitor = _Substitute(names)
        node = node.visit(visitor)
        if not visitor.changed:
            break
    code = " ".join(cst.Module([]).code_for_node(node).split())
    free = {n.value for n in m.findall(node, m.Name())} - {"hf_config", "getattr"}
    attrs = {n.attr.value for n in m.findall(node, m.Attribute())}
    return code if not (free - attrs) else None
