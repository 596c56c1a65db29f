"""Make every layer of a MoE package dense: a target with the reference's attention (MLA) and
no experts at all (MiniCPM3, Youtu)."""

from __future__ import annotations

import re

import libcst as cst
import libcst.matchers as m

from codegen.transforms._moe_edits import drop_rows, drop_unreferenced_classes
from codegen.transforms._prose_edits import drop_prose
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, code_of, run

_IS_MOE = m.Attribute(value=m.Name("self"), attr=m.Name("is_moe"))
_CHECKS = "_check_supported"  # the reference's refusals in args.py, by field
# the words of the reference's prose about its MoE layers (experts, router, the `ep` dim)
MOE_WORDS = r"[Ee]xperts?\b|[Rr]outer|\bMoE\b|`ep`"


class DropMoe(Transform):
    """`TransformerBlock` builds and calls the dense feed-forward on every layer; the MoE
    classes, their checkpoint rows and the args checks of the config fields only they read
    go (tidy then drops the ModelArgs fields nothing reads).

    The reference's choice `self.is_moe` is settled to False: `if self.is_moe: ... else:
    ...` keeps its else branch, `self.moe if self.is_moe else self.feed_forward` its else
    value, and the assignment of `self.is_moe` goes.
    """

    name = "drop_moe"

    def apply(self, package, features=None) -> None:
        before = _args_read(package.module("model.py"))
        run(package, "model.py", _Dense())
        drop_unreferenced_classes(package)
        drop_rows(package, ".moe.")
        gone = before - _args_read(package.module("model.py"))
        _drop_checks(package, _hf_fields(package.module("args.py"), gone))
        for filename in ("args.py", "state_dict_adapter.py", "parallelize.py"):
            drop_prose(package, filename, MOE_WORDS)


class _Dense(cst.CSTTransformer):
    """Inside `TransformerBlock`: `is_moe` settled to False."""

    def __init__(self):
        super().__init__()
        self.hits = 0
        self._depth = 0

    def visit_ClassDef(self, node):
        if node.name.value == "TransformerBlock":
            self._depth += 1

    def leave_ClassDef(self, original, updated):
        if original.name.value == "TransformerBlock":
            self._depth -= 1
        return updated

    def leave_If(self, original, updated):
        if not self._depth or not m.matches(updated.test, _IS_MOE):
            return updated
        self.hits += 1
        if updated.orelse is None:
            return cst.RemoveFromParent()
        if isinstance(updated.orelse, cst.If):
            raise EditError("an `elif` after `if self.is_moe` has no dense branch to keep")
        return cst.FlattenSentinel(updated.orelse.body.body)

    def leave_IfExp(self, original, updated):
        if self._depth and m.matches(updated.test, _IS_MOE):
            self.hits += 1
            return updated.orelse
        return updated

    def leave_SimpleStatementLine(self, original, updated):
        if self._depth and m.matches(
            updated.body[0], m.Assign(targets=[m.AssignTarget(target=_IS_MOE)])
        ):
            self.hits += 1
            return cst.RemoveFromParent()
        return updated


def _args_read(module: cst.Module) -> set[str]:
    """The ModelArgs fields model.py reads (`args.<field>`)."""
    return {
        node.attr.value
        for node in m.findall(module, m.Attribute(value=m.Name("args"), attr=m.Name()))
    }


def _hf_fields(args: cst.Module, fields: set[str]) -> set[str]:
    """The HF config fields `from_hf_config` maps into `fields` (`n_dense_layers=
    hf_config.first_k_dense_replace`)."""
    out = set()
    for arg in m.findall(args, m.Arg(keyword=m.Name())):
        if arg.keyword.value in fields:
            read = m.findall(arg.value, m.Attribute(value=m.Name("hf_config"), attr=m.Name()))
            out |= {node.attr.value for node in read}
    return out


def _drop_checks(package, names: set[str]) -> None:
    """Top-level statements of the args checks (`_check_supported`) that read one of `names`
    (`hf_config.<name>`, or the name quoted) go, and so do later ones reading what those
    assigned (`experts, groups = hf_config.n_routed_experts, ...`)."""
    if names:
        run(package, "args.py", _DropReads(names), required=False)


class _DropReads(cst.CSTTransformer):
    def __init__(self, names: set[str]):
        super().__init__()
        self.hits = 0
        reads = "|".join(re.escape(n) for n in sorted(names))
        self.pattern = re.compile(rf"\bhf_config\.({reads})\b|[\"']({reads})[\"']")

    def leave_FunctionDef(self, original, updated):
        if original.name.value != _CHECKS:
            return updated
        assigned: set[str] = set()
        body = []
        for statement in updated.body.body:
            text = code_of(statement)
            if self.pattern.search(text) or any(
                re.search(rf"\b{re.escape(n)}\b", text) for n in assigned
            ):
                for target in m.findall(statement, m.AssignTarget()):
                    assigned |= {n.value for n in m.findall(target.target, m.Name())}
                self.hits += 1
                continue
            body.append(statement)
        return updated.with_changes(body=updated.body.with_changes(body=body))
