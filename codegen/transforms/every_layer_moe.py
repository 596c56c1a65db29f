"""Build the MoE block in every layer, where the target's HF code has no dense layers.

A MoE reference chooses per layer between its dense feed-forward and the MoE block
(qwen3_moe's `decoder_sparse_step` / `mlp_only_layers`, deepseek_v3's
`first_k_dense_replace`). A target whose decoder layer builds its MoE block unconditionally
(Mixtral, OLMoE: `Features.moe.layer_condition` is None) never builds the dense branch, so
the choice is dead code there: `self.is_moe` is settled to True.

Before (qwen3_moe)::

    self.is_moe = args.is_moe_layer(layer_id)
    if self.is_moe:
        self.moe = MoE(args)
    else:
        self.feed_forward = FeedForward(args.dim, args.hidden_dim)
    ...
    ffn = self.moe if self.is_moe else self.feed_forward
    return h + ffn(self.ffn_norm(h))

After::

    self.moe = MoE(args)
    ...
    return h + self.moe(self.ffn_norm(h))
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms._moe_edits import drop_rows, drop_unreferenced_classes
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, findall, run
from codegen.transforms.moe_layers import _DropMethod

_BLOCK = "TransformerBlock"
_IS_MOE = m.Attribute(value=m.Name("self"), attr=m.Name("is_moe"))
_SELF_ATTRIBUTE = m.Attribute(value=m.Name("self"), attr=m.Name())
# what `num_experts` means once every layer builds the MoE block (no 0-means-dense)
EXPERTS_COMMENT = "# routed experts in each layer's MoE block"
# parallelize.py's OPTIONAL, where no entry is left optional (as llama's reads)
OPTIONAL_COMMENT = "# entries a config switch may leave unmatched"


class EveryLayerMoe(Transform):
    """Every layer builds the MoE block: the reference's per-layer choice of a dense
    feed-forward (`self.is_moe`) goes with the dense class, its checkpoint rows and
    `ModelArgs.is_moe_layer` (tidy drops the fields only they read), and the shard plan no
    longer counts the MoE or dense entries as ones a config may leave unmatched. A block an
    earlier rule rebuilt without the choice (shortcut sublayers) is left as it is. The
    block's `layer_id`, which only the choice read, goes in tidy (`drop_unread_parameters`,
    which drops any constructor parameter left unread, whichever rule left it)."""

    name = "every_layer_moe"

    def apply(self, package, features=None) -> None:
        if not moe_edits.has_class(package, "model.py", "MoE"):
            raise EditError("model.py has no MoE class (a dense package: nothing to settle)")
        if not findall(package.module("model.py"), _IS_MOE):
            return  # an earlier rule rebuilt the block without the choice (LongCat's shortcut)
        settle = _Settled()
        run(package, "model.py", settle)
        if not settle.assigned:
            raise EditError(f"{_BLOCK} reads self.is_moe but never assigns it")
        run(package, "args.py", _DropMethod("ModelArgs", "is_moe_layer"), required=False)
        drop_unreferenced_classes(package)
        for attribute in settle.dense:
            drop_rows(package, f".{attribute}.")
        run(package, "args.py", _FieldComment("num_experts", EXPERTS_COMMENT), required=False)
        if "parallelize.py" in package.files:
            modules = settle.dense | settle.routed
            run(package, "parallelize.py", _NotOptional(modules), required=False)


def _self_attributes(statements) -> set[str]:
    """The `self.<name>` attributes the statements assign."""
    return {
        target.target.attr.value
        for statement in statements
        for target in m.findall(statement, m.AssignTarget(target=_SELF_ATTRIBUTE))
    }


class _Settled(cst.CSTTransformer):
    """Inside `TransformerBlock`: `if self.is_moe: A else: B` -> A, `x if self.is_moe else y`
    -> x, the assignment of `self.is_moe` gone, and a local bound to the settled choice
    (`ffn = self.moe`) replaced by its value where it is read. `routed` / `dense`: the
    attributes the two branches built."""

    def __init__(self):
        super().__init__()
        self.hits, self.assigned = 0, False
        self.routed: set[str] = set()
        self.dense: set[str] = set()
        self._depth = 0
        self._aliases: dict[str, cst.BaseExpression] = {}

    def visit_ClassDef(self, node):
        if node.name.value == _BLOCK:
            self._depth += 1

    def leave_ClassDef(self, original, updated):
        if original.name.value == _BLOCK:
            self._depth -= 1
        return updated

    def leave_If(self, original, updated):
        if not self._depth or not m.matches(updated.test, _IS_MOE):
            return updated
        if isinstance(updated.orelse, cst.If):
            raise EditError("an `elif` after `if self.is_moe` leaves more than two choices")
        self.hits += 1
        self.routed |= _self_attributes(updated.body.body)
        if updated.orelse is not None:
            self.dense |= _self_attributes(updated.orelse.body.body)
        return cst.FlattenSentinel(updated.body.body)

    def leave_IfExp(self, original, updated):
        if self._depth and m.matches(updated.test, _IS_MOE):
            self.hits += 1
            return updated.body
        return updated

    def leave_SimpleStatementLine(self, original, updated):
        if not self._depth or len(updated.body) != 1:
            return updated
        statement = updated.body[0]
        if m.matches(statement, m.Assign(targets=[m.AssignTarget(target=_IS_MOE)])):
            self.hits += 1
            self.assigned = True
            return cst.RemoveFromParent()
        chose = m.Assign(targets=[m.AssignTarget(target=m.Name())], value=m.IfExp(test=_IS_MOE))
        if m.matches(original.body[0], chose):
            self._aliases[statement.targets[0].target.value] = statement.value
            return cst.RemoveFromParent()
        return updated

    def leave_FunctionDef(self, original, updated):
        if not self._aliases:
            return updated
        aliases, self._aliases = self._aliases, {}
        return updated.visit(_Inline(aliases))


class _Inline(cst.CSTTransformer):
    """Each read of a name in `aliases` becomes its value."""

    def __init__(self, aliases: dict[str, cst.BaseExpression]):
        super().__init__()
        self.aliases = aliases

    def leave_Name(self, original, updated):
        return self.aliases.get(updated.value, updated)

    def leave_Attribute(self, original, updated):
        return updated.with_changes(attr=original.attr)  # `x.ffn` names no local


class _FieldComment(cst.CSTTransformer):
    """The trailing comment of the ModelArgs field `name` becomes `comment`."""

    def __init__(self, name: str, comment: str):
        super().__init__()
        self.field = m.SimpleStatementLine(body=[m.AnnAssign(target=m.Name(name))])
        self.comment, self.hits = comment, 0

    def leave_SimpleStatementLine(self, original, updated):
        if not m.matches(updated, self.field):
            return updated
        self.hits += 1
        trailing = updated.trailing_whitespace.with_changes(
            whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment(self.comment)
        )
        return updated.with_changes(trailing_whitespace=trailing)


class _NotOptional(cst.CSTTransformer):
    """`OPTIONAL` loses the entries of a layer's `modules` (`layers.*.moe.gate`,
    `layers.*.feed_forward.w1`): every layer builds the MoE block and none the dense one.
    Left empty, it is written as a reference without optional entries writes it (the
    comment above, which explained the entries, goes with them)."""

    def __init__(self, modules: set[str]):
        super().__init__()
        self.modules, self.hits = modules, 0

    def _kept(self, entry: cst.BaseElement) -> bool:
        value = entry.value
        if not isinstance(value, cst.SimpleString):
            return True
        parts = value.evaluated_value.split(".")
        return not (parts[:2] == ["layers", "*"] and parts[2:3] and parts[2] in self.modules)

    def leave_SimpleStatementLine(self, original, updated):
        optional = m.Assign(targets=[m.AssignTarget(target=m.Name("OPTIONAL"))])
        if not m.matches(updated.body[0], optional):
            return updated
        assign = updated.body[0]
        sets = m.findall(assign.value, m.Set())
        if len(sets) != 1:
            return updated
        kept = [e for e in sets[0].elements if self._kept(e)]
        if len(kept) == len(sets[0].elements):
            return updated
        self.hits += 1
        if kept:
            last = sets[0].elements[-1]
            kept[-1] = kept[-1].with_changes(comma=last.comma)
            value = assign.value.deep_replace(sets[0], sets[0].with_changes(elements=kept))
            return updated.with_changes(body=[assign.with_changes(value=value)])
        empty = cst.parse_statement(f"OPTIONAL: frozenset[str] = frozenset()  {OPTIONAL_COMMENT}")
        return empty.with_changes(leading_lines=[])
