"""Make parallelize.py's prose say what its final `PLAN` table does.

The references describe their own plan ("Column-wise q/k/v and gate/up, row-wise o and
down, ..."). Once rules have fused q/k/v, dropped the gate, or moved the feed-forward into
routed experts, that sentence is false for the package; it is rewritten from the table.
"""

from __future__ import annotations

import ast
import re
import textwrap

import libcst as cst
import libcst.matchers as m

from codegen.transforms.base import Transform
from codegen.transforms.edits import run

_FILE = "parallelize.py"

# the references' sentence, words only (line breaks vary with the wrapping)
_REFERENCE = (
    "Column-wise q/k/v and gate/up, row-wise o and down, the embedding and the output head "
    "split over the vocabulary (logits gathered), norms replicated"
)
_SENTENCE = re.compile(r"Column-wise\s.*?norms\s+replicated", re.DOTALL)
_WIDTH = 92  # the references' docstring width

# the projections of one module (house names), as the prose calls them
_ROLES = {
    frozenset({"wq", "wk", "wv"}): "q/k/v",
    frozenset({"wqkv"}): "fused q/k/v",
    frozenset({"wo"}): "o",
    frozenset({"w1", "w3"}): "gate/up",
    frozenset({"w13"}): "fused gate/up",
    frozenset({"w1"}): "up",
    frozenset({"w2"}): "down",
    frozenset({"gate"}): "the router",
}
_COLUMN, _ROW = "colwise", "rowwise"
_EXPERTS = "experts"
_ROUTER = "gate"  # the MoE block's router, as the references name it
_VOCAB = ("vocab_embedding", "vocab_head")


class DescribeShardPlan(Transform):
    """parallelize.py's docstrings follow its `PLAN`: the reference's sentence on which
    projections split column- and row-wise is rebuilt from the table's styles. Other wording,
    the mesh dims and the MoE paragraph (`sync_shard_plan`'s) included, is left as it is."""

    name = "describe_shard_plan"

    def apply(self, package, features=None, **params) -> None:
        if _FILE not in package.files:
            return
        plan = _plan(package.module(_FILE))
        if plan is None:
            return
        run(package, _FILE, _Docstrings(plan), required=False)


def _plan(module: cst.Module) -> dict[str, str] | None:
    for statement in module.body:
        if not m.matches(
            statement, m.SimpleStatementLine([m.Assign([m.AssignTarget(m.Name("PLAN"))])])
        ):
            continue
        try:
            return ast.literal_eval(module.code_for_node(statement.body[0].value))
        except ValueError:
            return None
    return None


def describe(plan: dict[str, str]) -> str:
    """The sentence on the plan's splits: column-wise, row-wise, replicated, the vocabulary."""
    leaves = [pattern for pattern in plan if not any(p.startswith(pattern + ".") for p in plan)]
    # a plan with routed experts has its own paragraph on them and their router
    # (`sync_shard_plan`), so the sentence leaves both to it
    moe = _EXPERTS in plan.values()
    column = _named([p for p in leaves if plan[p].startswith(_COLUMN)])
    row = _named([p for p in leaves if plan[p].startswith(_ROW)])
    replicated = _named(
        [
            p
            for p in leaves
            if plan[p] == "replicate"
            and "norm" not in p.split(".")[-1]
            and not (moe and p.split(".")[-1] == _ROUTER)
        ]
    )
    parts = []
    if column:
        parts.append(f"column-wise {column}")
    if row:
        parts.append(f"row-wise {row}")
    if replicated:
        parts.append(f"{replicated} replicated")
    if all(style in plan.values() for style in _VOCAB):
        parts.append(
            "the embedding and the output head split over the vocabulary (logits gathered)"
        )
    parts.append("norms replicated")
    text = ", ".join(parts)
    return text[0].upper() + text[1:]


def _named(patterns: list[str]) -> str:
    """`layers.*.attention.wq`, `...wk`, `...wv`, `layers.*.feed_forward.w2` -> "q/k/v and
    down": the projections grouped by the module holding them, attention's first."""
    owners: dict[str, set[str]] = {}
    for pattern in patterns:
        owner, _, leaf = pattern.rpartition(".")
        owners.setdefault(owner, set()).add(leaf)
    known = list(_ROLES)
    groups = sorted(
        ((owner, frozenset(leaves)) for owner, leaves in owners.items()),
        key=lambda group: known.index(group[1]) if group[1] in _ROLES else len(known),
    )
    # a word once: the shared expert's gate/up is split as the dense MLP's
    names = list(
        dict.fromkeys(_ROLES.get(leaves) or _listed(owner, leaves) for owner, leaves in groups)
    )
    return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]


def _listed(owner: str, leaves: frozenset[str]) -> str:
    """Parts the prose has no word for, by name: "the attention's `wkv`/`wq`"."""
    named = [part for part in owner.split(".") if part not in ("", "*")]
    whose = f"the {named[-1]}'s " if named else ""
    return whose + "/".join(f"`{leaf}`" for leaf in sorted(leaves))


class _Docstrings(cst.CSTTransformer):
    def __init__(self, plan: dict[str, str]):
        super().__init__()
        self.sentence = describe(plan)
        self.hits = 0

    def leave_Module(self, original, updated):
        first = updated.body[0] if updated.body else None
        new = self._edit(first, self._module_text)
        return updated if new is None else updated.with_changes(body=[new, *updated.body[1:]])

    def _edit(self, statement, rewrite):
        if not m.matches(statement, m.SimpleStatementLine([m.Expr(m.SimpleString())])):
            return None
        doc = statement.body[0].value
        prefix, quote = doc.prefix, doc.quote
        body = doc.value[len(prefix) + len(quote) : -len(quote)]
        text = rewrite(body)
        if text == body:
            return None
        self.hits += 1
        new = doc.with_changes(value=f"{prefix}{quote}{text}{quote}")
        return statement.with_changes(body=[statement.body[0].with_changes(value=new)])

    def _module_text(self, body: str) -> str:
        found = _SENTENCE.search(body)
        if found is None or " ".join(found.group().split()) != _REFERENCE:
            return body
        if self.sentence == _REFERENCE:
            return body
        return _rewrap(body, found.start(), found.end(), self.sentence)


def _rewrap(body: str, start: int, end: int, sentence: str) -> str:
    """`body` with [start, end) replaced by `sentence`, its paragraph wrapped again."""
    before = body.rfind("\n\n", 0, start)
    after = body.find("\n\n", end)
    head = before + 2 if before >= 0 else 0
    tail = after if after >= 0 else len(body.rstrip())
    paragraph = body[head:start] + sentence + body[end:tail]
    wrapped = textwrap.fill(" ".join(paragraph.split()), _WIDTH)
    return body[:head] + wrapped + body[tail:]
