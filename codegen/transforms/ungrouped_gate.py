"""Take the expert groups out of deepseek_v3's Gate: plain top-k over all experts."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms._ffn_edits import SetClassDocstring
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, ScopedTransformer, code_of, run, statements, uses

# the Gate's attributes the grouped pick reads, and the config fields they come from
GROUP_ATTRIBUTES = ("self.n_groups", "self.topk_groups")
CONFIG_FIELDS = ("n_group", "topk_group")
PICK = "indices = {choice}.topk(self.top_k, dim=-1, sorted=False)[1]"
# the grouped checks' bound on k, over all experts
TOP_K_CHECK = """
if hf_config.num_experts_per_tok > hf_config.n_routed_experts:
    fail(f"num_experts_per_tok={hf_config.num_experts_per_tok} > n_routed_experts")
"""


class UngroupedGate(Transform):
    """The Gate (deepseek_v3's sigmoid router, grouped natively) picks the top k of all
    experts, as a target whose router has no expert groups does: the group scoring, the
    group mask and the Gate's `n_groups` / `topk_groups` go, the pick is the top k of what
    the groups were cut from (the scores, with the correction bias where there is one);
    ModelArgs loses `n_expert_groups` / `n_limited_groups` and `from_hf_config` reads
    neither `n_group` nor `topk_group` (its group checks become k <= n_routed_experts).
    The scores, the weights, the renormalisation and the scaling stay as they are."""

    name = "ungrouped_gate"

    def apply(self, package, features=None) -> None:
        from codegen.scaffold.tidy import drop_unused_fields

        run(package, "model.py", _UngroupedForward())
        run(package, "model.py", _DropGroupInit())
        run(package, "model.py", SetClassDocstring("Gate", _docstring))
        run(package, "args.py", _DropGroupChecks(), required=False)
        drop_unused_fields(package)  # n_expert_groups, n_limited_groups: read no more


def _docstring(old: str | None) -> str:
    text = old or ""
    if "grouped top-k" not in text:
        raise EditError("the Gate docstring does not name its grouped top-k")
    return text.replace("grouped top-k", "top-k over all experts", 1)


def _reads_groups(node: cst.CSTNode) -> bool:
    return any(uses(name)(node) for name in GROUP_ATTRIBUTES)


class _UngroupedForward(ScopedTransformer):
    """In Gate.forward: the statements from the one viewing the choice as groups
    (`biased = (<choice>).view(tokens, self.n_groups, -1)`) to the pick (`indices = ...`)
    become one top-k of `<choice>`."""

    def __init__(self):
        super().__init__("Gate", "forward")

    def leave_FunctionDef(self, original, updated):
        if self.in_scope() and self._stack[-1] == "forward":
            updated = self._ungrouped(updated)
        return super().leave_FunctionDef(original, updated)

    def _ungrouped(self, function: cst.FunctionDef) -> cst.FunctionDef:
        body = list(function.body.body)
        start = next((i for i, s in enumerate(body) if _reads_groups(s)), None)
        if start is None:
            return function
        view = m.findall(body[start], m.Call(func=m.Attribute(attr=m.Name("view"))))
        picks = [
            i
            for i, s in enumerate(body[start:], start)
            if m.findall(s, m.AssignTarget(target=m.Name("indices")))
        ]
        if not view or not picks:
            raise EditError("Gate.forward: no grouped view of the choice before the pick")
        choice = view[0].func.value.with_changes(lpar=[], rpar=[])
        atom = isinstance(choice, (cst.Name, cst.Attribute, cst.Call, cst.Subscript))
        code = code_of(choice) if atom else f"({code_of(choice)})"
        new = statements(PICK.format(choice=code))
        new[0] = new[0].with_changes(leading_lines=body[start].leading_lines)
        body[start : picks[0] + 1] = new
        self.hits += 1
        return function.with_changes(body=function.body.with_changes(body=body))


class _DropGroupInit(ScopedTransformer):
    """In Gate.__init__: the statement setting `self.n_groups` / `self.topk_groups`."""

    def __init__(self):
        super().__init__("Gate", "__init__")

    def leave_SimpleStatementLine(self, original, updated):
        if not self.in_scope() or not m.findall(updated, m.AssignTarget()):
            return updated
        targets = [t.target for t in m.findall(updated, m.AssignTarget())]
        if not any(_reads_groups(t) for t in targets):
            return updated
        self.hits += 1
        return cst.RemoveFromParent()


def _reads_config_groups(node: cst.CSTNode) -> bool:
    return any(uses(f"hf_config.{name}")(node) for name in CONFIG_FIELDS)


class _DropGroupChecks(cst.CSTTransformer):
    """In `_check_supported`: "n_group" / "topk_group" out of the fields checked for None, and
    the checks reading them (or what was bound from them) replaced by TOP_K_CHECK."""

    def __init__(self):
        super().__init__()
        self.hits = 0

    def leave_FunctionDef(self, original, updated):
        if updated.name.value != "_check_supported":
            return updated
        body, kept, bound, at = list(updated.body.body), [], set(), None
        for statement in body:
            if _reads_config_groups(statement) or any(uses(name)(statement) for name in bound):
                bound |= _targets(statement)
                at = len(kept) if at is None else at
            else:
                kept.append(_without_group_names(statement))
        if at is not None:
            kept[at:at] = statements(TOP_K_CHECK)
        if at is None and all(a is b for a, b in zip(kept, body, strict=True)):
            return updated
        self.hits += 1
        return updated.with_changes(body=updated.body.with_changes(body=kept))


def _targets(statement: cst.CSTNode) -> set[str]:
    """The names `statement` assigns (`experts, groups = ...`)."""
    return {
        name.value
        for target in m.findall(statement, m.AssignTarget())
        for name in m.findall(target.target, m.Name())
    }


def _without_group_names(statement: cst.BaseStatement) -> cst.BaseStatement:
    """`for name in ("n_group", "topk_group", ...)`: the group fields out of the tuple."""
    if not m.matches(statement, m.For(iter=m.Tuple())):
        return statement
    quoted = {f'"{name}"' for name in CONFIG_FIELDS} | {f"'{name}'" for name in CONFIG_FIELDS}
    elements = [
        e
        for e in statement.iter.elements
        if not (isinstance(e.value, cst.SimpleString) and e.value.value in quoted)
    ]
    if len(elements) == len(statement.iter.elements):
        return statement
    last = elements[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return statement.with_changes(iter=statement.iter.with_changes(elements=[*elements[:-1], last]))
