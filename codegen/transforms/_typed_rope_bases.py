"""RoPE per layer type and a RoPE base per layer together (no Transform here).

Where the backbone builds its tables from `{**rope_parameters[<layer type>], "rope_theta":
<the layer's base>}` (`rope.layer_bases` with "types"), a layer rotates with its own type's
parameters at its own base. By the time `rope_per_layer_type` runs, `layer_rope_bases` has
built a table per base of the list over `args.rope`; these edits replace them (and
`self.rotary`, whose base may be no layer's) by one table per (layer type, base) pair some
layer has, found from the built blocks (their `sliding` and `rope_base`, read from the
config), so a base only the other type's layers use gets no table of this type; a base of
0 gets none (no RoPE there).
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _rope_edits as rope_edits
from codegen.transforms.edits import (
    InsertStatements,
    ReplaceStatements,
    assigns,
    calls,
    code_of,
    field_name,
    run,
)

# Model.__init__, after the blocks: a table per (sliding, base) pair some block has
PAIR_BUILD = """
# a table per (sliding, RoPE base) pair the layers have: their type's RoPE at that base
self.rope_pairs = sorted(
    {{(layer.sliding, layer.rope_base) for layer in self.layers if layer.rope_base}}
)
self.pair_rotaries = nn.ModuleList(
    {rotary}
    for sliding, base in self.rope_pairs
)
"""
PAIR_TABLE = "replace((args.sliding_rope or args.rope) if sliding else args.rope, theta=base)"

# Model.forward, in place of `rope = self.rotary(positions)`: every pair's table once
PAIR_TABLES = """
# each pair's table once; a layer of base 0 has no pair: None, no RoPE there
ropes = {{
    pair: {table}
    for pair, rotary in zip(self.rope_pairs, self.pair_rotaries, strict=True)
}}
"""

# the pick `layer_rope_bases` wrote into the layer call, and the per-pair one replacing it
_PICK = m.Subscript(
    value=m.Name("ropes"),
    slice=[
        m.SubscriptElement(m.Index(m.Attribute(value=m.Name("layer"), attr=m.Name("rope_base"))))
    ],
)
PER_PAIR_PICK = "ropes.get((layer.sliding, layer.rope_base))"

# ModelArgs.__post_init__: no list given, each layer's base is its own type's theta (as
# HF's configs fill it), not `rope`'s on every layer
ONE_BASE = "(self.rope.theta,) * self.n_layers"
TYPES_BASE = """(
    (self.sliding_rope or self.rope).theta if t == "{sliding}" else self.rope.theta
    for t in self.layer_types or ("full_attention",) * self.n_layers
)"""
FIELD_COMMENT = (
    "# each layer's RoPE base, in its type's theta's place (0: no RoPE there); None: its type's"
)

# the name the composed forward frees after the layer loop
FREED = "ropes"


def check(bases: dict | None, evidence: str) -> None:
    """ValueError (one line, with the source's line) where per-layer bases meet per-type
    rope parameters in a way these edits do not compute: a base swapped into the flat
    dict, or into entries picked by another list than `layer_types`."""
    if bases is None:
        return
    types = bases.get("types")
    if types == "layer_types":
        return
    where = f"{evidence}: " if evidence else ""
    if types is None:
        field, base = bases.get("field"), bases.get("base")
        why = (
            "every layer takes that one type's parameters, not its own type's: not supported"
            if "[" in str(base)
            else "there is no flat rope_theta to replace"
        )
        raise ValueError(
            f"{where}config:{field} replaces {base} while rope_parameters is nested per layer"
            f" type: {why}"
        )
    raise ValueError(
        f"{where}config:{bases.get('field')} swaps each base into the rope_parameters entry"
        f" of config:{types}, not of layer_types: per-type tables of another list are not"
        " supported"
    )


def compose(package, sliding_key: str) -> None:
    """The per-base tables `layer_rope_bases` built become one per (layer type, base) pair
    some block has, each layer call picking its own pair's, and a missing list defaults to
    each layer's type's theta (`sliding_key`: the layer type that slides); ValueError where
    `layer_rope_bases` left no per-base tables."""
    model = package.module("model.py")
    rotary = rope_edits.first_assignment(model, "Model", "__init__", "self.rotary")
    table = rope_edits.first_assignment(model, "Model", "forward", "rope")
    has_base_tables = rope_edits.first_assignment(model, "Model", "__init__", "self.base_rotaries")
    if rotary is None or table is None or has_base_tables is None:
        raise ValueError("the model picks no table per RoPE base to split per layer type")
    edits.replace_expressions(
        package,
        "args.py",
        "ModelArgs",
        "__post_init__",
        edits.is_code(ONE_BASE),
        lambda _: edits.expression(TYPES_BASE.format(sliding=sliding_key)),
    )
    run(package, "args.py", _FieldComment("layer_rope_bases", FIELD_COMMENT))

    per_pair = code_of(rope_edits.rotary_over(rotary, PAIR_TABLE))
    edits.remove_statements(
        package,
        "model.py",
        "Model",
        "__init__",
        assigns("self.rotary", "self.other_bases", "self.base_rotaries"),
    )
    build = InsertStatements("Model", "__init__", assigns("self.layers"), "")
    build.new = edits.statements(PAIR_BUILD.format(rotary=per_pair))  # with its comment
    run(package, "model.py", build)

    per_forward = table.body[0].value.with_changes(func=cst.Name("rotary"))
    edits.remove_statements(
        package,
        "model.py",
        "Model",
        "forward",
        lambda s: assigns("ropes")(s) or calls("ropes.update")(s),
    )
    tables = ReplaceStatements("Model", "forward", assigns("rope"), "")
    tables.new = edits.statements(PAIR_TABLES.format(table=code_of(per_forward)))
    run(package, "model.py", tables)

    def per_pair_pick(call: cst.Call) -> cst.Call:
        picked = edits.expression(PER_PAIR_PICK)
        args = [a.with_changes(value=picked) if m.matches(a.value, _PICK) else a for a in call.args]
        return call.with_changes(args=args)

    edits.replace_expressions(
        package, "model.py", "Model", "forward", edits.call_of("layer"), per_pair_pick
    )


class _FieldComment(cst.CSTTransformer):
    """The comment line right above ModelArgs' field `name` becomes `comment`."""

    def __init__(self, name: str, comment: str):
        super().__init__()
        self.name, self.comment = name, comment
        self.hits = 0

    def leave_SimpleStatementLine(self, original, updated):
        if field_name(updated) != self.name or not updated.leading_lines:
            return updated
        lines = list(updated.leading_lines)
        if lines[-1].comment is None:
            return updated
        self.hits += 1
        lines[-1] = lines[-1].with_changes(comment=cst.Comment(self.comment))
        return updated.with_changes(leading_lines=lines)
