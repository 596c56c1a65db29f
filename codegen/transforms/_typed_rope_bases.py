"""RoPE per layer type and a RoPE base per layer together (no Transform here).

Where the backbone builds its tables from `{**rope_parameters[<layer type>], "rope_theta":
<the layer's base>}` (`rope.layer_bases` with "types"), a layer rotates with its own type's
parameters at its own base: one table per (layer type, base) pair, 0 still none. By the
time `rope_per_layer_type` runs, `layer_rope_bases` has given the full-attention side its
tables (`ropes`, one per base, over `args.rope`); these edits give the sliding side the
same over `args.sliding_rope` (`sliding_ropes`, built beside the window mask, only when a
layer slides), and each block picks its base's table from its own type's.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _rope_edits as rope_edits
from codegen.transforms.edits import InsertStatements, assigns, code_of, field_name, run

# Model.__init__, after `self.sliding_rotary`: a sliding table per other nonzero base
SLIDING_BUILD = """
self.sliding_bases = sorted(
    {{b for b in args.layer_rope_bases if b}} - {{(args.sliding_rope or args.rope).theta}}
)
self.sliding_base_rotaries = nn.ModuleList(
    {rotary}
    for base in self.sliding_bases  # sliding_rope at that base (its own: sliding_rotary)
)
"""

# Model.forward, after `sliding_rope`: every base's sliding table once
SLIDING_TABLES = """
sliding_ropes = {{(self.args.sliding_rope or self.args.rope).theta: sliding_rope, 0: None}}
sliding_ropes.update(
    zip(self.sliding_bases, ({table} for rotary in self.sliding_base_rotaries), strict=True)
)
"""

# the pick `layer_rope_bases` wrote into the layer call, and the per-type one replacing it
_PICK = m.Subscript(
    value=m.Name("ropes"),
    slice=[
        m.SubscriptElement(m.Index(m.Attribute(value=m.Name("layer"), attr=m.Name("rope_base"))))
    ],
)
PER_TYPE_PICK = "(sliding_ropes if layer.sliding else ropes)[layer.rope_base]"

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

# the names the composed forward frees after the layer loop
FREED = "rope, ropes, sliding_rope, sliding_ropes"


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


def sliding_build(package) -> str:
    """The statements building the other bases' sliding tables (Model.__init__)."""
    rotary = rope_edits.first_assignment(
        package.module("model.py"), "Model", "__init__", "self.rotary"
    )
    per_base = rope_edits.rotary_over(rotary, "replace(args.sliding_rope or args.rope, theta=base)")
    return SLIDING_BUILD.format(rotary=code_of(per_base))


def sliding_tables(table) -> str:
    """`rope = self.rotary(positions)` -> the statements of every base's sliding table."""
    per_forward = table.body[0].value.with_changes(func=cst.Name("rotary"))
    return SLIDING_TABLES.format(table=code_of(per_forward))


def compose(package, sliding_key: str) -> None:
    """The sliding tables per base built in __init__, each layer call picking its own
    type's table of its base, and a missing list defaulting to each layer's type's theta
    (`sliding_key`: the layer type that slides); EditError where `layer_rope_bases` left no
    per-base pick."""
    if not _has_base_tables(package):
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
    run(
        package,
        "model.py",
        InsertStatements(
            "Model", "__init__", assigns("self.sliding_rotary"), sliding_build(package)
        ),
    )

    def per_type(call: cst.Call) -> cst.Call:
        picked = edits.expression(PER_TYPE_PICK)
        args = [a.with_changes(value=picked) if m.matches(a.value, _PICK) else a for a in call.args]
        return call.with_changes(args=args)

    edits.replace_expressions(
        package, "model.py", "Model", "forward", edits.call_of("layer"), per_type
    )


def _has_base_tables(package) -> bool:
    """`layer_rope_bases` has run: Model.__init__ builds `self.base_rotaries`."""
    model = package.module("model.py")
    return rope_edits.first_assignment(model, "Model", "__init__", "self.base_rotaries") is not None


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
