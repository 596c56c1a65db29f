"""Give the last layer's output projection a bias (gpt_neox_japanese's `dense_bias`)."""

from __future__ import annotations

import json

from codegen.transforms.base import Transform
from codegen.transforms.edits import EditDict, EditError, InsertStatements, assigns, run

ADD = """
# only the last layer's attention output has a bias (the checkpoint's `{name}`)
self.layers[-1].attention.wo.bias = nn.Parameter(torch.zeros(args.dim))
"""
HOUSE = "layers.{}.attention.wo.bias"


class LastLayerOutputBias(Transform):
    """The target's last layer adds a bias of its own (the attention's attribute `name`) to
    the attention output; the package gives the last layer's `wo` that bias, and the
    adapter maps the checkpoint's `<attention>.{name}` to it (replacing any `wo.bias` row:
    no other layer has one)."""

    name = "last_layer_o_bias"

    def apply(self, package, features=None, *, name: str) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise EditError(f"last-layer output bias: {name!r} is not an attribute name")
        run(
            package,
            "model.py",
            InsertStatements("Model", "__init__", assigns("self.layers"), ADD.format(name=name)),
        )
        anchor = []

        def rewrite(key, value):
            house = json.loads(value) if value != "None" else None
            if house == HOUSE:
                return []
            if house == "layers.{}.attention.wo.weight":
                anchor.append(key)
                hf = json.loads(key).rsplit(".", 2)[0] + f".{name}"
                return [(key, value), (json.dumps(hf), json.dumps(HOUSE))]
            return [(key, value)]

        run(package, "state_dict_adapter.py", EditDict("from_hf_map", rewrite))
        if not anchor:
            raise EditError("state_dict_adapter.py has no row for layers.{}.attention.wo.weight")
