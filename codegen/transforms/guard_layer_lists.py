"""Refuse a per-layer list for an int field the package reads as one int.

The HF code may take a field as one int or a list indexed by the layer (hunyuan_v1_moe's
`config.moe_topk if isinstance(config.moe_topk, int) else config.moe_topk[layer_idx]`, an
`int_or_list` switch). A package realises the list where a rule gives each layer its entry
(`layer_top_k`, `layer_experts`); for the other such fields it reads, a list would reach an
int's place and end in a TypeError deep in the model, so `from_hf_config` refuses it in one
line naming the package, the field and the value.
"""

from __future__ import annotations

from codegen.transforms.base import Transform
from codegen.transforms.edits import InsertStatements, calls, run
from codegen.transforms.guard_switches import config_reads

GUARD = """
if not isinstance(hf_config.{field}, int):
    raise NotImplementedError(
        f"{package}: {field}={{hf_config.{field}!r}} per layer is not supported: give one int"
    )
"""


class GuardLayerLists(Transform):
    """`from_hf_config` refuses a list for each of `fields` (config fields the HF code takes
    as an int or a per-layer list) that it reads, in one line."""

    name = "guard_layer_lists"

    def apply(self, package, features=None, *, fields: list[str]) -> None:
        reads = config_reads(package.files["args.py"])
        code = "".join(
            GUARD.format(field=field, package=package.name)
            for field in sorted(fields)
            if field in reads
        )
        if code:
            anchor = calls("require_settings")
            run(package, "args.py", InsertStatements("ModelArgs", "from_hf_config", anchor, code))
