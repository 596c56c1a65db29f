"""Set the q/k/v projection biases to the target's (the output projection is separate)."""

from __future__ import annotations

from codegen.transforms.base import Transform
from codegen.transforms.edits import EditDict, SetKeyword, run

_ROWS = {
    p: (f'"model.layers.{{}}.self_attn.{p}_proj.bias"', f'"layers.{{}}.attention.w{p}.bias"')
    for p in "qkv"
}


class SetQkvBias(Transform):
    """q/k/v projections get `bias=<enabled>`; the adapter maps their biases exactly then."""

    name = "set_qkv_bias"

    def apply(self, package, features=None, *, enabled: bool) -> None:
        run(
            package,
            "model.py",
            SetKeyword("Attention", "__init__", {"wq", "wk", "wv"}, "bias", str(enabled)),
        )
        set_adapter_rows(package, [_ROWS[p] for p in "qkv"], enabled)


def set_adapter_rows(package, rows: list[tuple[str, str]], present: bool) -> None:
    """Make exactly these `from_hf_map` rows present (after their weights) or absent."""
    wanted = dict(rows)

    def rewrite(key, value):
        if key in wanted:
            return []  # re-added below when present
        return [(key, value)]

    run(package, "state_dict_adapter.py", EditDict("from_hf_map", rewrite))
    if not present:
        return
    weights = {key.replace(".bias", ".weight"): key for key in wanted}

    def insert(key, value):
        entries = [(key, value)]
        if key in weights:
            bias_key = weights[key]
            entries.append((bias_key, wanted[bias_key]))
        return entries

    run(package, "state_dict_adapter.py", EditDict("from_hf_map", insert))
