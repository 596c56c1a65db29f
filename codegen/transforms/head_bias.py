"""Give the output head a bias (the logits projection adds one learned row per token)."""

from __future__ import annotations

import json

from codegen.transforms._attention_edits import insert_rows_after
from codegen.transforms._ffn_edits import adapter_rows
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditDict, EditError, SetKeyword, run

_HEAD = "output.weight"
_TIED = json.dumps("tie_word_embeddings")


class SetHeadBias(Transform):
    """`Model.output` is built with `bias=True`; the adapter maps the checkpoint's head
    bias to `output.bias`: `key` when given (the HF key the analysis read), else the HF key
    of the head weight's row, `.weight` -> `.bias`.

    Tying shares only the weight with the embedding: the bias stays the head's own. A bias
    HF keeps as a parameter of its own, tied to the projection's (`key` is not
    `<projection>.bias`: BERT's `cls.predictions.bias`, BertGeneration's `lm_head.bias`), is
    the projection's bias only when the head is tied, so the package fixes
    `tie_word_embeddings` (an untied checkpoint carries an unused copy of it)."""

    name = "set_head_bias"

    def apply(self, package, features=None, *, key: str = "", projection: str = "") -> None:
        run(package, "model.py", SetKeyword("Model", "__init__", {"output"}, "bias", "True"))
        rows = [hf for hf, house in adapter_rows(package) if house == _HEAD]
        if not rows:
            raise EditError(f"state_dict_adapter.py has no row for {_HEAD}")
        bias_key = key or rows[0].removesuffix(".weight") + ".bias"
        insert_rows_after(package, _HEAD, [(bias_key, "output.bias")])
        if key and projection and key != f"{projection}.bias":
            fix_tied_head(package)


def fix_tied_head(package) -> None:
    """FIXED_SETTINGS pins `tie_word_embeddings` to True (once)."""
    keys: list[str] = []

    def collect(key, value):
        keys.append(key)
        return [(key, value)]

    run(package, "args.py", EditDict("FIXED_SETTINGS", collect))
    if _TIED not in keys:
        run(package, "args.py", EditDict("FIXED_SETTINGS", None, [(_TIED, "True")]))
