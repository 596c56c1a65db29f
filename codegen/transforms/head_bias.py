"""Give the output head a bias (the logits projection adds one learned row per token)."""

from __future__ import annotations

from codegen.transforms._attention_edits import insert_rows_after
from codegen.transforms._ffn_edits import adapter_rows
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, SetKeyword, run

_HEAD = "output.weight"


class SetHeadBias(Transform):
    """`Model.output` is built with `bias=True`; the adapter maps the checkpoint's head
    bias (the HF key of the head weight's row, `.weight` -> `.bias`) to `output.bias`.

    Tying shares only the weight with the embedding: the bias stays the head's own.
    """

    name = "set_head_bias"

    def apply(self, package, features=None) -> None:
        run(package, "model.py", SetKeyword("Model", "__init__", {"output"}, "bias", "True"))
        rows = [hf for hf, house in adapter_rows(package) if house == _HEAD]
        if not rows:
            raise EditError(f"state_dict_adapter.py has no row for {_HEAD}")
        bias_key = rows[0].removesuffix(".weight") + ".bias"
        insert_rows_after(package, _HEAD, [(bias_key, "output.bias")])
