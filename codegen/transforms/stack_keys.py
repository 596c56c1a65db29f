"""The second of two alike layer stacks gets the first one's adapter rows, under its own keys."""

from __future__ import annotations

from codegen.transforms._ffn_edits import rewrite_adapter
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError
from codegen.transforms.recurrent_stacks import stack_prefixes


class StackKeys(Transform):
    """After `align_hf_keys` named the analysed stack's layer rows (`inner.layers.{}.*` at
    the checkpoint's `<backbone>.<inner>.<layers>.{}.*`), each row gets a twin for the other
    stack: the same key tail under that stack's HF path, the same house tail under its
    house name. A naming step: the rows it copies are the checkpoint's names."""

    name = "stack_keys"

    def apply(self, package, features=None, *, stacks: dict) -> None:
        own, other = stack_prefixes(features, stacks)
        base = [stacks["backbone"]] if stacks["backbone"] else []
        hf = {
            name: ".".join([*base, stacks[name], stacks["layers"]]) + "."
            for name in ("inner", "outer")
        }
        copied = []

        def rewrite(key: str, house: str | None):
            if key.startswith(hf[own]) and (house is None or house.startswith(f"{own}.layers.")):
                twin = hf[other] + key[len(hf[own]) :]
                copied.append(twin)
                other_house = None if house is None else other + house[len(own) :]
                return [(key, house), (twin, other_house)]
            return [(key, house)]

        rewrite_adapter(package, rewrite)
        if not copied:
            raise EditError(f"the adapter has no rows under {hf[own]}")
