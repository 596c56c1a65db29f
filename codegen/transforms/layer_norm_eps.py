"""The layer norms at the epsilon the HF code fixes (a literal or its norm class's default);
the final norm keeps the config's."""

from __future__ import annotations

import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._ffn_edits import set_field_comment
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError

_NORM_EPS = m.Attribute(value=m.Name("args"), attr=m.Name("norm_eps"))
FIELD = "layer_norm_eps: float = {eps!r}  # the layer norms' epsilon: fixed in HF's code\n"
CONFIG_EPS = "the config's: every norm but the layer norms (layer_norm_eps)"


class LayerNormEps(Transform):
    """`TransformerBlock`'s norms read `args.layer_norm_eps`, a constant (`eps`, the analysed
    `norm.layer_eps`) no config field sets, while `Model.norm` keeps `args.norm_eps`, the
    config's (CTRL builds its block norms with `eps=1e-6`, JetMoE without an epsilon; both
    build their final norm with one read from the config)."""

    name = "layer_norm_eps"

    def apply(self, package, features=None, *, eps: float) -> None:
        if not isinstance(eps, int | float) or isinstance(eps, bool) or eps <= 0:
            raise EditError(f"layer norm epsilon {eps!r} is not a positive number")
        edits.replace_expressions(
            package,
            "model.py",
            "TransformerBlock",
            "__init__",
            lambda node: m.matches(node, _NORM_EPS),
            lambda node: node.with_changes(attr=node.attr.with_changes(value="layer_norm_eps")),
        )
        edits.add_args_field(package, FIELD.format(eps=float(eps)))
        set_field_comment(package, "norm_eps", CONFIG_EPS)
