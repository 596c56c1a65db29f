"""Set the q/k/v projection biases to the target's (the output projection is separate).

`enabled` is a fixed setting (True/False) or the name of the bool config field that
switches the biases (StableLM's `use_qkv_bias`): the package then reads that field and
keeps the adapter rows, which checkpoints with the switch on carry.
"""

from __future__ import annotations

from codegen.transforms import _moe_edits as moe_edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditDict, SetKeyword, run
from codegen.transforms.guard_switches import config_reads

_ROWS = {
    p: (f'"model.layers.{{}}.self_attn.{p}_proj.bias"', f'"layers.{{}}.attention.w{p}.bias"')
    for p in "qkv"
}


class SetQkvBias(Transform):
    """q/k/v projections get `bias=<enabled>` (or `bias=args.<field>` for a config switch);
    the adapter maps their biases exactly when they can exist."""

    name = "set_qkv_bias"
    modules = ("wq", "wk", "wv")  # the house projections whose bias it sets

    def apply(self, package, features=None, *, enabled: bool | str) -> None:
        value = bias_setting(package, enabled, "q/k/v biases")
        run(
            package,
            "model.py",
            SetKeyword("Attention", "__init__", {"wq", "wk", "wv"}, "bias", value),
        )
        set_adapter_rows(package, [_ROWS[p] for p in "qkv"], bool(enabled))


def bias_setting(package, enabled: bool | str, what: str) -> str:
    """The `bias=` expression: a literal, or `args.<field>` read from the config field of
    that name (added to ModelArgs and `from_hf_config` once)."""
    if not isinstance(enabled, str):
        return str(bool(enabled))
    if enabled not in config_reads(package.files["args.py"]):
        moe_edits.add_args_fields(package, f"{enabled}: bool = False  # {what}")
        moe_edits.add_config_kwargs(package, {enabled: f"hf_config.{enabled}"})
    return f"args.{enabled}"


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
