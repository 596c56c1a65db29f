"""Point `from_hf_config` at the target config's field names."""

from __future__ import annotations

import libcst as cst

from codegen.transforms.base import Transform
from codegen.transforms.edits import expression, run


class MapConfigFields(Transform):
    """Replace `hf_config.<old>` reads with the target's expression for the same value.

    `fields` maps an HF field the reference reads to the expression the target needs, e.g.
    `{"rms_norm_eps": "hf_config.layer_norm_eps"}` or `{"num_key_value_heads": "1"}`.
    """

    name = "map_config_fields"

    def apply(self, package, features=None, *, fields: dict[str, str]) -> None:
        run(package, "args.py", _ReplaceConfigReads(fields))


class _ReplaceConfigReads(cst.CSTTransformer):
    def __init__(self, fields: dict[str, str]):
        super().__init__()
        self.fields = {old: expression(new) for old, new in fields.items()}
        self.hits = 0

    def leave_Attribute(self, original, updated):
        if (
            isinstance(updated.value, cst.Name)
            and updated.value.value == "hf_config"
            and updated.attr.value in self.fields
        ):
            self.hits += 1
            return self.fields[updated.attr.value]
        return updated
