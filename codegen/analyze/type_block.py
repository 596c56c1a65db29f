"""Token types that open a bidirectional block in the backbone's causal mask (a prefix LM).

The backbone's forward takes an optional id tensor (HRM-Text's `token_type_ids`) and, when
it is given and a config field holds, hands transformers' mask builder
`block_sequence_ids = torch.where(ids == k, 0, -1)`: the builder lets a query see a later
key where both carry the same block id >= 0, so every token of type `k` sees every other
one both ways (an instruction read bidirectionally) while the rest stays causal. A package
that does not take the ids is HF without them; one that took and ignored them would be
another model.

Found by structure, in a forward: an `if <input> is not None ...:` (the input an optional
parameter) enclosing an `if <config>.<field>:` whose body binds `block_sequence_ids` (a
dict entry or a keyword) to `torch.where(<input> == k, g, n)`, g >= 0 and n < 0. `find`
names the input, the type, the field and the setting that opens the block; any other use
of the builder's block ids is "other".
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

FEATURE = "attention.type_block"
OTHER = "other"
# what transformers' mask builders read: tokens of equal ids >= 0 see each other
BLOCK_IDS = "block_sequence_ids"


@dataclass(frozen=True)
class Block:
    input: str  # the forward's optional id parameter ("token_type_ids")
    type: int  # the id whose tokens form the bidirectional block
    field: str  # the config field that switches it ("prefix_lm")
    on: bool  # the field's truth value that opens the block
    given: cst.If  # `if <input> is not None ...:`
    switch: cst.If  # `if <config>.<field>:`
    where: cst.CSTNode  # the binding of the block ids

    def as_feature(self) -> dict:
        return {"input": self.input, "type": self.type, "field": self.field, "on": self.on}


_FOUND: dict[int, tuple] = {}  # id(fn) -> (fn, its blocks): switches asks at every `if`


def find(fn: cst.FunctionDef) -> list[Block | str]:
    """Each binding of the builder's block ids in `fn`: a `Block`, or "other" where it
    is not the shape above."""
    held = _FOUND.get(id(fn))
    if held is None or held[0] is not fn:
        held = _FOUND[id(fn)] = (fn, _find(fn))
    return held[1]


def _find(fn: cst.FunctionDef) -> list[Block | str]:
    optional = {
        p.name.value
        for p in [*fn.params.params, *fn.params.kwonly_params]
        if m.matches(p.default, m.Name("None"))
    }
    out: list[Block | str] = []

    def visit(node: cst.CSTNode, enclosing: tuple[cst.If, ...]) -> None:
        if isinstance(node, cst.FunctionDef | cst.ClassDef) and node is not fn:
            return
        value = _binding(node)
        if value is not None:
            out.append(_block(node, value, enclosing, optional) or OTHER)
            return
        if isinstance(node, cst.If):
            for child in node.body.body:
                visit(child, (*enclosing, node))
            if node.orelse is not None:
                visit(node.orelse, enclosing)
            return
        for child in node.children:
            visit(child, enclosing)

    visit(fn.body, ())
    return out


def opens(test_if: cst.If, fn: cst.FunctionDef) -> bool:
    """`test_if` is the `if <input> is not None` of a type block of `fn`."""
    return any(isinstance(b, Block) and b.given is test_if for b in find(fn))


def switched_by(switch_if: cst.If, fn: cst.FunctionDef) -> Block | None:
    """The type block of `fn` whose config test is `switch_if`'s, if any."""
    return next((b for b in find(fn) if isinstance(b, Block) and b.switch is switch_if), None)


def _binding(node: cst.CSTNode) -> cst.BaseExpression | None:
    """The value bound to the block ids: `d["block_sequence_ids"] = v` or `block_sequence_ids=v`."""
    key = m.SimpleString(f'"{BLOCK_IDS}"') | m.SimpleString(f"'{BLOCK_IDS}'")
    if m.matches(
        node,
        m.Assign(targets=[m.AssignTarget(m.Subscript(slice=[m.SubscriptElement(m.Index(key))]))]),
    ):
        return node.value
    if m.matches(node, m.Arg(keyword=m.Name(BLOCK_IDS))):
        return node.value
    return None


def _block(node, value, enclosing, optional) -> Block | None:
    read = _where(value)
    if read is None:
        return None
    name, kind = read
    given = next((s for s in enclosing if _tests_given(s.test, name)), None)
    switches = [s for s in enclosing if _config_field(s.test) is not None]
    if given is None or name not in optional or len(switches) != 1:
        return None
    field, on = _config_field(switches[0].test)
    return Block(name, kind, field, on, given, switches[0], node)


def _where(value) -> tuple[str, int] | None:
    """(input, k) of `torch.where(input == k, g, n)` with g >= 0 > n."""
    if not (
        m.matches(value, m.Call(func=m.Attribute(m.Name("torch"), m.Name("where"))))
        and len(value.args) == 3
        and all(a.keyword is None for a in value.args)
    ):
        return None
    cond, yes, no = (a.value for a in value.args)
    if not (
        isinstance(cond, cst.Comparison)
        and len(cond.comparisons) == 1
        and isinstance(cond.comparisons[0].operator, cst.Equal)
    ):
        return None
    sides = [cond.left, cond.comparisons[0].comparator]
    names = [s.value for s in sides if isinstance(s, cst.Name)]
    kinds = [_int(s) for s in sides if _int(s) is not None]
    yes, no = _int(yes), _int(no)
    if len(names) != 1 or len(kinds) != 1 or yes is None or no is None or not yes >= 0 > no:
        return None
    return names[0], kinds[0]


def _int(node) -> int | None:
    if isinstance(node, cst.Integer):
        return int(node.value)
    if (
        isinstance(node, cst.UnaryOperation)
        and isinstance(node.operator, cst.Minus)
        and isinstance(node.expression, cst.Integer)
    ):
        return -int(node.expression.value)
    return None


def _tests_given(test, name: str) -> bool:
    """`name is not None`, alone or as a side of an `and`."""
    sides = [test]
    while isinstance(sides[0], cst.BooleanOperation) and isinstance(sides[0].operator, cst.And):
        sides = [sides[0].left, sides[0].right, *sides[1:]]
    given = m.Comparison(
        left=m.Name(name),
        comparisons=[m.ComparisonTarget(operator=m.IsNot(), comparator=m.Name("None"))],
    )
    return any(m.matches(side, given) for side in sides)


# `config.<field>`, `self.config.<field>`
_CONFIG_READ = m.Attribute(value=m.Name("config") | m.Attribute(attr=m.Name("config")))


def _config_field(test) -> tuple[str, bool] | None:
    """(field, the value that takes the body) for `<config>.<field>` or `not <config>.<field>`."""
    on = True
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        test, on = test.expression, False
    if m.matches(test, _CONFIG_READ):
        return test.attr.value, on
    return None


def detect(ctx) -> dict | str | None:
    """The backbone forward's type block ({"input", "type", "field", "on"}), "other" for
    another binding of the builder's block ids, None without one; cited either way."""
    from codegen.analyze.backbone_mask import backbone

    owner = backbone(ctx)
    found = ctx.model.project.find_method(owner.cls, "forward") if owner and owner.cls else None
    blocks = find(found[1]) if found else []
    if not blocks:
        ctx.cite(FEATURE, ctx.class_site(owner) if owner is not None else None)
        return None
    cls, fn = found
    if len(blocks) != 1 or not isinstance(blocks[0], Block):
        ctx.cite(FEATURE, cls.sf.cite(fn, cls.node, fn))
        return OTHER
    block = blocks[0]
    ctx.cite(
        FEATURE,
        f"{cls.sf.cite(block.where, cls.node, fn)} (tokens of {block.input} == {block.type} see"
        f" each other both ways; {cls.sf.cite(block.switch, cls.node, fn)}: config"
        f" {block.field} {'on' if block.on else 'off'})",
    )
    return block.as_feature()
