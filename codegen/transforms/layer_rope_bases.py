"""Each layer rotates with its own RoPE base, read from a config list (`rope.layer_bases`).

The HF backbone builds one rotary table per distinct nonzero entry of the list (its rope
parameters with the base swapped) and hands each layer the table of its entry; a 0 entry
hands that layer none, and its attention skips the rotation (NoPE). Here the list becomes
`args.layer_rope_bases` (None: the one base on every layer, as HF's config fills it), the
model keeps `self.rotary` for `rope` and builds one more table per other nonzero base, once
per forward, and each block hands its attention the table of its own base, or None. The NoPE
side is the `nope_layers` rule's: the attention rotates only when it is given a table.
"""

from __future__ import annotations

import libcst as cst

from codegen.transforms import _attention_edits as edits
from codegen.transforms import _rope_edits as rope_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import InsertStatements, add_import, assigns, code_of, run
from codegen.transforms.nope_layers import rotate_only_with_table

FIELD = """
# each layer's RoPE base, in rope.theta's place (0: no RoPE on that layer); None: rope.theta
layer_rope_bases: tuple[float, ...] | None = None
"""

POST_INIT = """
self.layer_rope_bases = tuple(self.layer_rope_bases or (self.rope.theta,) * self.n_layers)
if len(self.layer_rope_bases) != self.n_layers:
    raise ValueError(f"{len(self.layer_rope_bases)} layer_rope_bases for {self.n_layers} layers")
"""

# Model.__init__, after `self.rotary`: the nonzero bases other than rope.theta, a table each
OTHER_TABLES = """
self.other_bases = sorted({{b for b in args.layer_rope_bases if b}} - {{args.rope.theta}})
self.base_rotaries = nn.ModuleList(
    {rotary}
    for base in self.other_bases  # rope with that base (rope.theta's is self.rotary)
)
"""

# Model.forward, after `rope`: every base's table once; a layer picks its own base's
TABLES = """
ropes = {{self.args.rope.theta: rope, 0: None}}  # a base of 0: no RoPE on that layer
ropes.update(zip(self.other_bases, ({table} for rotary in self.base_rotaries), strict=True))
"""


class LayerRopeBases(Transform):
    """`args.layer_rope_bases` from the config list `bases["field"]`; a table per distinct
    nonzero base, and each block's attention rotates with its own base's (none for 0)."""

    name = "layer_rope_bases"

    def apply(self, package, features=None, *, bases: dict) -> None:
        field = bases["field"]
        if not bases.get("base", "").endswith("rope_theta"):
            raise ValueError(f"config:{field} replaces {bases.get('base')!r}, not the RoPE base")
        model = package.module("model.py")
        rotary = rope_edits.first_assignment(model, "Model", "__init__", "self.rotary")
        table = rope_edits.first_assignment(model, "Model", "forward", "rope")
        if rotary is None or table is None:
            raise ValueError("the model builds no `self.rotary` table to build per base")
        edits.add_args_field(
            package, FIELD, f'layer_rope_bases=getattr(hf_config, "{field}", None)'
        )
        edits.append_to_method(package, "args.py", "ModelArgs", "__post_init__", POST_INIT)

        add_import(package, "model.py", "dataclasses", "replace")
        per_base = code_of(rope_edits.rotary_over(rotary, "replace(args.rope, theta=base)"))
        build = OTHER_TABLES.format(rotary=per_base)
        run(
            package,
            "model.py",
            InsertStatements("Model", "__init__", assigns("self.rotary"), build),
        )
        computed = table.body[0].value
        per_forward = code_of(computed.with_changes(func=cst.Name("rotary")))
        run(
            package,
            "model.py",
            InsertStatements("Model", "forward", assigns("rope"), TABLES.format(table=per_forward)),
        )

        rope_edits.layers_pick_table(
            package,
            "self.rope_base = args.layer_rope_bases[{layer_id}]",
            "ropes[layer.rope_base]",
        )
        rotate_only_with_table(package, block=True)
