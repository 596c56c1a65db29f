"""A softmax scale the config may set, `head_dim ** -0.5` where it leaves it None.

MPT's attention multiplies its scores by `attn_config.softmax_scale`, or by
1/sqrt(hidden / heads) when that is None (`codegen analyze` lists the switch with its branch
line). The package keeps both settings: ModelArgs gets `softmax_scale` (None by default),
`from_hf_config` reads it (`align_config_fields` finds it in the sub-config), and the
attention's SDPA call, or its written-out scores, use `self.scale`.
"""

from __future__ import annotations

import libcst.matchers as m

from codegen.transforms._rope_edits import add_args_field, insert_after, is_super_init
from codegen.transforms.attention_scale import UseScale
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, assigns, run

DECLARATION = "float | None = None  # scores times this; None: head_dim ** -0.5"
SCALE = "self.scale = args.{field} if args.{field} is not None else args.head_dim**-0.5"

_OWN_SCALE = m.AssignTarget(target=m.Attribute(value=m.Name("self"), attr=m.Name("scale")))


class OptionalSoftmaxScale(Transform):
    """`Attention` scales its scores by `args.<field>` when the config sets it, by
    `head_dim ** -0.5` when it is None; `field` is the HF config field's name."""

    name = "optional_softmax_scale"

    def apply(self, package, features=None, *, field: str = "softmax_scale") -> None:
        if m.findall(package.files["model.py"], _OWN_SCALE):
            raise EditError("Attention already has a scale of its own (attention_scale)")
        add_args_field(package, field, DECLARATION, f"hf_config.{field}")
        scale = SCALE.format(field=field)
        try:  # beside the other per-head sizes when the attention keeps them
            insert_after(
                package, "model.py", "Attention", "__init__", assigns("self.head_dim"), scale
            )
        except EditError:
            insert_after(package, "model.py", "Attention", "__init__", is_super_init, scale)
        run(package, "model.py", UseScale())
