"""Load checkpoint tensors stored with two halves interleaved (transformers' `Interleave`)."""

from __future__ import annotations

import json

from codegen.transforms.base import Transform
from codegen.transforms.edits import EditDict, EditError, run
from codegen.transforms.transposed_linears import AfterFromHfMap

NOTE = (
    "# stored with its two halves alternating along the dim (gate, up, gate, up...):\n"
    "# regrouped into [first half | second half] on load, interleaved again on save\n"
)


class InterleavedTensors(Transform):
    """The adapter's `interleaved` table names the checkpoint tensors (key tails, as
    transformers matches them) whose two halves alternate along a dim, where the model
    holds them one after the other (Inkling-2's experts' `mlp.experts.w13_weight`: gate
    and up rows interleaved, the model's `w13` [gate | up]); `from_hf` regroups exactly
    those and `to_hf` interleaves them back, so the model and its shard plan keep the
    reference's layout. `tensors`: (on-disk key tail, dim) pairs; each must be read by a
    row of the key table."""

    name = "interleaved_tensors"

    def apply(self, package, features=None, *, tensors) -> None:
        if not tensors:
            raise EditError("no interleaved checkpoint tensors given")
        rows: list[str] = []

        def read(key: str, value: str):
            rows.append(json.loads(key))
            return [(key, value)]

        run(package, "state_dict_adapter.py", EditDict("from_hf_map", read))
        for tail, _ in tensors:
            if not any(row == tail or row.endswith("." + tail) for row in rows):
                raise EditError(f"no row of from_hf_map reads the interleaved {tail!r}")
        listed = ", ".join(f"{json.dumps(tail)}: {int(dim)}" for tail, dim in tensors)
        run(package, "state_dict_adapter.py", AfterFromHfMap(f"{NOTE}interleaved = {{{listed}}}"))
